/*
 * metrics.c: the Prometheus text format (0.0.4) of a snapshot, and the
 * shared counter file that every worker of the pool maps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "metrics.h"

#define BODY_MAX ((size_t)1024 * 1024)

/* Slots of metrics_snapshot.requests[][][]: 200 comes first, "other" last (metrics.c). */
#define SLOT_200	0
#define SLOT_OTHER	(METRICS_STATUS_SLOTS - 1)

static char tmp_dir[] = "/tmp/items-unit-metrics.XXXXXX";
static char shared_path[128];	/* the worker's METRICS_FILE */
static char foreign_path[128];	/* a file of another layout */

/* True when text holds line as a whole line. */
static int
has_line(const char *text, const char *line)
{
	size_t len = strlen(line);
	const char *p = text;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, line, len) == 0 &&
		    (p[len] == '\n' || p[len] == '\0'))
			return 1;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return 0;
}

#define CHECK_LINE(text, line)						\
	CHECK_MSG(has_line((text), (line)), "missing line: %s", (line))
#define CHECK_NO_LINE_WITH(text, part)					\
	CHECK_MSG(strstr((text), (part)) == NULL, "unexpected: %s", (part))

/*
 * Every line is a comment or "name[{labels}] value" with a number as the
 * value, and the text ends with a line end (the exposition format's rules).
 */
static void
check_exposition(const char *text)
{
	const char *line, *end, *space, *p;
	char value[64], *stop;
	size_t len, bad = 0;

	CHECK(text[0] != '\0' && text[strlen(text) - 1] == '\n');
	for (line = text; *line != '\0'; line = end + 1) {
		end = strchr(line, '\n');
		if (end == NULL)
			break;
		if (strncmp(line, "# HELP ", 7) == 0 ||
		    strncmp(line, "# TYPE ", 7) == 0)
			continue;
		space = NULL;
		for (p = line; p < end; p++)
			if (*p == ' ')
				space = p;
		len = space != NULL ? (size_t)(end - space - 1) : 0;
		if (space == NULL || len == 0 || len >= sizeof(value) ||
		    !((*line >= 'a' && *line <= 'z') || *line == '_')) {
			bad++;
			continue;
		}
		memcpy(value, space + 1, len);
		value[len] = '\0';
		strtod(value, &stop);
		if (*stop != '\0')
			bad++;
	}
	CHECK_INT_EQ(bad, 0);
}

static void
test_format_empty(void)
{
	struct metrics_snapshot snap;
	struct buf out;

	memset(&snap, 0, sizeof(snap));
	buf_init(&out, BODY_MAX);
	CHECK_INT_EQ(metrics_format(&snap, &out), 0);
	if (!CHECK(out.data != NULL))
		return;
	check_exposition(out.data);
	CHECK_LINE(out.data, "# TYPE items_http_requests_total counter");
	/* No series for a count of zero... */
	CHECK_NO_LINE_WITH(out.data, "items_http_requests_total{");
	/* ...but every route has its histogram, at zero. */
	CHECK_LINE(out.data, "items_http_request_duration_seconds_bucket"
	    "{route=\"/status\",le=\"+Inf\"} 0");
	CHECK_LINE(out.data, "items_http_request_duration_seconds_count"
	    "{route=\"unmatched\"} 0");
	CHECK_LINE(out.data, "items_http_request_duration_seconds_sum"
	    "{route=\"/metrics\"} 0.000000");
	CHECK_LINE(out.data, "items_db_errors_total 0");
	CHECK_LINE(out.data, "items_workers 0");
	buf_finish(&out);
}

static void
test_format(void)
{
	struct metrics_snapshot snap;
	struct buf out;
	const char *t;

	memset(&snap, 0, sizeof(snap));
	snap.requests[ROUTE_ITEMS][HTTP_GET][SLOT_200] = 3;
	snap.requests[ROUTE_ITEMS][HTTP_HEAD][SLOT_200] = 1;
	snap.requests[ROUTE_ITEM][HTTP_PUT][SLOT_200] = 12345678901234ULL;
	/* A status outside the list, e.g. 502, is counted as "other". */
	snap.requests[ROUTE_UNMATCHED][HTTP_METHOD_OTHER][SLOT_OTHER] = 2;
	/* /items: 1 request <= 0.1 ms, 2 <= 1 ms, 1 above 2.5 s; 3.5 s in all. */
	snap.buckets[ROUTE_ITEMS][0] = 1;
	snap.buckets[ROUTE_ITEMS][3] = 2;
	snap.buckets[ROUTE_ITEMS][METRICS_BUCKETS - 1] = 1;
	snap.duration_sum_us[ROUTE_ITEMS] = 3500250;
	snap.db_errors = 4;
	snap.db_reconnects = 2;
	snap.worker_starts = 5;
	snap.workers_alive = 3;

	buf_init(&out, BODY_MAX);
	CHECK_INT_EQ(metrics_format(&snap, &out), 0);
	if (!CHECK(out.data != NULL))
		return;
	t = out.data;
	check_exposition(t);

	CHECK_LINE(t, "# TYPE items_http_requests_total counter");
	CHECK_LINE(t, "items_http_requests_total"
	    "{route=\"/items\",method=\"GET\",code=\"200\"} 3");
	CHECK_LINE(t, "items_http_requests_total"
	    "{route=\"/items\",method=\"HEAD\",code=\"200\"} 1");
	CHECK_LINE(t, "items_http_requests_total"
	    "{route=\"/items/{id}\",method=\"PUT\",code=\"200\"} 12345678901234");
	CHECK_LINE(t, "items_http_requests_total"
	    "{route=\"unmatched\",method=\"OTHER\",code=\"other\"} 2");
	CHECK_NO_LINE_WITH(t, "method=\"POST\"");

	/* Cumulative buckets (le = "less than or equal"), +Inf = count. */
	CHECK_LINE(t, "# TYPE items_http_request_duration_seconds histogram");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"0.0001\"} 1");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"0.00025\"} 1");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"0.0005\"} 1");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"0.001\"} 3");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"1\"} 3");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"2.5\"} 3");
	CHECK_LINE(t, "items_http_request_duration_seconds_bucket"
	    "{route=\"/items\",le=\"+Inf\"} 4");
	CHECK_LINE(t, "items_http_request_duration_seconds_sum"
	    "{route=\"/items\"} 3.500250");
	CHECK_LINE(t, "items_http_request_duration_seconds_count"
	    "{route=\"/items\"} 4");
	/* Other routes are untouched. */
	CHECK_LINE(t, "items_http_request_duration_seconds_count"
	    "{route=\"/items/{id}\"} 0");

	CHECK_LINE(t, "# TYPE items_db_errors_total counter");
	CHECK_LINE(t, "items_db_errors_total 4");
	CHECK_LINE(t, "# TYPE items_db_reconnects_total counter");
	CHECK_LINE(t, "items_db_reconnects_total 2");
	CHECK_LINE(t, "items_worker_starts_total 5");
	CHECK_LINE(t, "# TYPE items_workers gauge");
	CHECK_LINE(t, "items_workers 3");
	buf_finish(&out);
}

/* A body that does not fit its buffer is an error, not a cut text. */
static void
test_format_cap(void)
{
	struct metrics_snapshot snap;
	struct buf out;

	memset(&snap, 0, sizeof(snap));
	buf_init(&out, 100);
	CHECK_INT_EQ(metrics_format(&snap, &out), -1);
	buf_finish(&out);
}

/* Formats the live counters of m into a malloc'd string. */
static char *
format_live(struct metrics *m, struct metrics_snapshot *snap)
{
	struct buf out;

	metrics_snapshot(m, snap);
	buf_init(&out, BODY_MAX);
	if (metrics_format(snap, &out) == -1)
		return NULL;
	return buf_steal(&out, NULL);
}

static void
test_shared_file(void)
{
	const char *path = shared_path;
	struct metrics_snapshot snap;
	struct metrics *m;
	char *text;
	pid_t pid;
	int status;

	m = metrics_open(path);
	if (!CHECK(m != NULL))
		return;
	/* Durations exact in binary, so the sum is exact; 0.25 sits on a bound. */
	metrics_record_request(m, ROUTE_ITEM, HTTP_GET, 404, 0.25);
	metrics_record_request(m, ROUTE_ITEM, HTTP_GET, 404, 0.0625);
	metrics_record_request(m, ROUTE_ITEMS, HTTP_POST, 201, 3.0);
	metrics_record_db_error(m);
	metrics_record_db_reconnect(m);
	CHECK(metrics_db_gate(m) != NULL);
	text = format_live(m, &snap);
	if (CHECK(text != NULL)) {
		check_exposition(text);
		CHECK_LINE(text, "items_http_requests_total"
		    "{route=\"/items/{id}\",method=\"GET\",code=\"404\"} 2");
		CHECK_LINE(text, "items_http_requests_total"
		    "{route=\"/items\",method=\"POST\",code=\"201\"} 1");
		CHECK_LINE(text, "items_http_request_duration_seconds_bucket"
		    "{route=\"/items/{id}\",le=\"0.05\"} 0");
		CHECK_LINE(text, "items_http_request_duration_seconds_bucket"
		    "{route=\"/items/{id}\",le=\"0.1\"} 1");
		CHECK_LINE(text, "items_http_request_duration_seconds_bucket"
		    "{route=\"/items/{id}\",le=\"0.25\"} 2");
		CHECK_LINE(text, "items_http_request_duration_seconds_sum"
		    "{route=\"/items/{id}\"} 0.312500");
		CHECK_LINE(text, "items_http_request_duration_seconds_count"
		    "{route=\"/items/{id}\"} 2");
		CHECK_LINE(text, "items_http_request_duration_seconds_bucket"
		    "{route=\"/items\",le=\"2.5\"} 0");
		CHECK_LINE(text, "items_http_request_duration_seconds_bucket"
		    "{route=\"/items\",le=\"+Inf\"} 1");
		CHECK_LINE(text, "items_db_errors_total 1");
		CHECK_LINE(text, "items_db_reconnects_total 1");
		CHECK_LINE(text, "items_worker_starts_total 1");
	}
	free(text);
	/* This process holds the only slot of a fresh file. */
	CHECK_INT_EQ(snap.workers_alive, 1);

	/*
	 * A worker killed with -9 never releases its slot: it must not be
	 * counted once gone. The child claims a slot and exits without
	 * metrics_close().
	 */
	pid = fork();
	if (pid == -1)
		CHECK_FAIL("fork: %s", strerror(errno));
	else if (pid == 0)
		_exit(metrics_open(path) != NULL ? 0 : 1);
	else if (CHECK(waitpid(pid, &status, 0) == pid) &&
	    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		metrics_snapshot(m, &snap);
		CHECK_INT_EQ(snap.worker_starts, 2);
		CHECK_INT_EQ(snap.workers_alive, 1);
	}

	metrics_close(m);
	metrics_close(NULL);

	/* The counters live in the file: a new worker sees the totals. */
	m = metrics_open(path);
	if (!CHECK(m != NULL))
		return;
	metrics_snapshot(m, &snap);
	CHECK_INT_EQ(snap.worker_starts, 3);
	CHECK_INT_EQ(snap.workers_alive, 1);
	CHECK_INT_EQ(snap.db_errors, 1);
	metrics_close(m);
}

/* The router calls these with NULL when the metrics file could not be opened. */
static void
test_null_handle(void)
{
	metrics_record_request(NULL, ROUTE_STATUS, HTTP_GET, 200, 0.001);
	metrics_record_db_error(NULL);
	metrics_record_db_reconnect(NULL);
	/* db.c then runs without the pool-wide gate. */
	CHECK(metrics_db_gate(NULL) == NULL);
}

/* A file of another layout is refused rather than misread. */
static void
test_foreign_file(void)
{
	static const char junk[] = "not a metrics file, another version";
	const char *path = foreign_path;
	int fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1) {
		CHECK_FAIL("open %s: %s", path, strerror(errno));
		return;
	}
	if (write(fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk))
		CHECK_FAIL("write %s: %s", path, strerror(errno));
	close(fd);
	/* metrics_open() logs why on stderr; keep the test's output clean. */
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open("/dev/null", O_WRONLY);
	if (saved != -1 && fd != -1)
		dup2(fd, STDERR_FILENO);
	CHECK(metrics_open(path) == NULL);
	if (saved != -1) {
		dup2(saved, STDERR_FILENO);
		close(saved);
	}
	if (fd != -1)
		close(fd);
}

/* Removes what the tests made, also after a test gave up half-way. */
static void
cleanup(void)
{
	if (unlink(shared_path) == -1 && errno != ENOENT)
		CHECK_FAIL("unlink %s: %s", shared_path, strerror(errno));
	if (unlink(foreign_path) == -1 && errno != ENOENT)
		CHECK_FAIL("unlink %s: %s", foreign_path, strerror(errno));
	if (rmdir(tmp_dir) == -1)
		CHECK_FAIL("rmdir %s: %s", tmp_dir, strerror(errno));
}

int
main(void)
{
	test_format_empty();
	test_format();
	test_format_cap();
	test_null_handle();
	if (mkdtemp(tmp_dir) == NULL) {
		CHECK_FAIL("mkdtemp %s: %s", tmp_dir, strerror(errno));
		return check_finish();
	}
	snprintf(shared_path, sizeof(shared_path), "%s/metrics", tmp_dir);
	snprintf(foreign_path, sizeof(foreign_path), "%s/foreign", tmp_dir);
	test_shared_file();
	test_foreign_file();
	cleanup();
	return check_finish();
}
