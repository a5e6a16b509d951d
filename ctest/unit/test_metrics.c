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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "metrics.h"

#define BODY_MAX ((size_t)1024 * 1024)

/* Slots of metrics_snapshot.requests[][][]: 200 comes first, "other" last (metrics.c). */
#define SLOT_200	0
#define SLOT_OTHER	(METRICS_STATUS_SLOTS - 1)

#define LOG_MAX		4096	/* what metrics_open() may log about one file */
#define TMP_PATHS	16

static char tmp_dir[] = "/tmp/items-unit-metrics.XXXXXX";
static char tmp_paths[TMP_PATHS][128];	/* everything made under tmp_dir */
static int tmp_path_count;

/* A path under tmp_dir, removed by cleanup(). */
static const char *
tmp_path(const char *name)
{
	char *path;

	if (tmp_path_count == TMP_PATHS) {
		CHECK_FAIL("more than %d temporary paths", TMP_PATHS);
		return "/nonexistent/items-unit-metrics";
	}
	path = tmp_paths[tmp_path_count++];
	snprintf(path, sizeof(tmp_paths[0]), "%s/%s", tmp_dir, name);
	return path;
}

/*
 * metrics_open() with what it logs on stderr caught in log (for the checks,
 * and to keep the test's output clean).
 */
static struct metrics *
open_logged(const char *path, char *log, size_t size)
{
	struct metrics *m;
	FILE *f;
	size_t n;
	int saved;

	log[0] = '\0';
	f = tmpfile();
	if (f == NULL) {
		CHECK_FAIL("tmpfile: %s", strerror(errno));
		return metrics_open(path);
	}
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	if (saved == -1 || dup2(fileno(f), STDERR_FILENO) == -1) {
		CHECK_FAIL("redirecting stderr: %s", strerror(errno));
		if (saved != -1)
			close(saved);
		fclose(f);
		return metrics_open(path);
	}
	m = metrics_open(path);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(log, 1, size - 1, f);
	log[n] = '\0';
	fclose(f);
	return m;
}

/*
 * A good metrics file, made by metrics_open() (so mode 0600), for the tests
 * that then spoil one property: nothing else would refuse it.
 */
static int
make_metrics_file(const char *path)
{
	struct metrics *m;
	char log[LOG_MAX];

	m = open_logged(path, log, sizeof(log));
	if (m == NULL) {
		CHECK_FAIL("metrics_open %s: %s", path, log);
		return -1;
	}
	metrics_close(m);
	return 0;
}

/* A file of mode 0600 (umask is 0 here) with some bytes in it. */
static int
make_file(const char *path)
{
	static const char junk[] = "not a metrics file, another version";
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1) {
		CHECK_FAIL("open %s: %s", path, strerror(errno));
		return -1;
	}
	if (write(fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk)) {
		CHECK_FAIL("write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

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
	CHECK_LINE(out.data, "items_db_up 0");
	/* Unknown to the caller: left out rather than reported as 0. */
	CHECK_NO_LINE_WITH(out.data, "items_workers_configured");
	CHECK_NO_LINE_WITH(out.data, "items_memory");
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
	snap.db_up = true;
	snap.workers_configured = 4;
	snap.memory.has_usage = true;
	snap.memory.usage_bytes = 123456789012ULL;

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
	CHECK_LINE(t, "# TYPE items_db_up gauge");
	CHECK_LINE(t, "items_db_up 1");
	CHECK_LINE(t, "# TYPE items_workers_configured gauge");
	CHECK_LINE(t, "items_workers_configured 4");
	CHECK_LINE(t, "items_memory_bytes 123456789012");
	/* A container without a memory limit has no limit series. */
	CHECK_NO_LINE_WITH(t, "items_memory_limit_bytes");
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
	const char *path = tmp_path("metrics");
	struct metrics_snapshot snap;
	struct metrics *m;
	struct stat st;
	char *text, log[LOG_MAX];
	pid_t pid;
	int status;

	/* A fresh path is created, private to this user (umask is 0 here). */
	m = open_logged(path, log, sizeof(log));
	if (!CHECK(m != NULL))
		return;
	CHECK_STR_EQ(log, "");
	if (CHECK(lstat(path, &st) == 0)) {
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT_EQ(st.st_mode & 07777, 0600);
		CHECK_INT_EQ(st.st_uid, geteuid());
		/* Allocated, not sparse: no SIGBUS on a full tmpfs later. */
		CHECK(st.st_size > 0);
		CHECK_MSG((long long)st.st_blocks * 512 >= (long long)st.st_size,
		    "%lld blocks of 512 bytes for %lld bytes",
		    (long long)st.st_blocks, (long long)st.st_size);
	}
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
		/* The gate of a fresh file is open. */
		CHECK_LINE(text, "items_db_up 1");
	}
	free(text);
	/* This process holds the only slot of a fresh file. */
	CHECK_INT_EQ(snap.workers_alive, 1);
	/* An outage marked by one worker shows in every worker's snapshot. */
	db_gate_failed(metrics_db_gate(m), 1000, 500);
	metrics_snapshot(m, &snap);
	CHECK(!snap.db_up);
	db_gate_opened(metrics_db_gate(m));
	metrics_snapshot(m, &snap);
	CHECK(snap.db_up);

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
	const char *path = tmp_path("foreign");
	char log[LOG_MAX];

	if (make_file(path) == -1)
		return;
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "written by another version");
}

/*
 * The default METRICS_FILE is in /tmp: what another user may have put there
 * first is refused, each with a reason naming the path and what to do.
 */
static void
test_symlink_refused(void)
{
	const char *target = tmp_path("symlink-target");
	const char *path = tmp_path("symlink");
	const char *nowhere = tmp_path("symlink-nowhere");
	const char *dangling = tmp_path("symlink-dangling");
	char log[LOG_MAX];

	/* To a good file of ours: followed, it would be taken. */
	if (make_metrics_file(target) == -1)
		return;
	if (symlink(target, path) == -1) {
		CHECK_FAIL("symlink %s: %s", path, strerror(errno));
		return;
	}
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "is a symbolic link");
	/* To nowhere: followed, O_CREAT would make the file it names. */
	if (symlink(nowhere, dangling) == -1) {
		CHECK_FAIL("symlink %s: %s", dangling, strerror(errno));
		return;
	}
	CHECK(open_logged(dangling, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, dangling);
	CHECK_STR_CONTAINS(log, "is a symbolic link");
	CHECK(access(nowhere, F_OK) == -1 && errno == ENOENT);
}

static void
test_fifo_refused(void)
{
	const char *path = tmp_path("fifo");
	char log[LOG_MAX];

	if (mkfifo(path, 0600) == -1) {
		CHECK_FAIL("mkfifo %s: %s", path, strerror(errno));
		return;
	}
	/* A hang is a failure: SIGALRM ends the test. */
	alarm(10);
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	alarm(0);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "is not a regular file");
}

static void
test_directory_refused(void)
{
	const char *path = tmp_path("directory");
	char log[LOG_MAX];

	if (mkdir(path, 0700) == -1) {
		CHECK_FAIL("mkdir %s: %s", path, strerror(errno));
		return;
	}
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "is a directory");
}

static void
test_open_mode_refused(void)
{
	const char *path = tmp_path("mode-0644");
	char log[LOG_MAX];

	if (make_metrics_file(path) == -1)
		return;
	if (chmod(path, 0644) == -1) {
		CHECK_FAIL("chmod %s: %s", path, strerror(errno));
		return;
	}
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "has mode 0644");
	CHECK_STR_CONTAINS(log, "must be 0600");
}

static void
test_foreign_owner_refused(void)
{
	const char *path = tmp_path("owned-by-65534");
	char log[LOG_MAX];

	if (geteuid() != 0) {
		printf("skipped: a file of another owner needs root (chown)\n");
		return;
	}
	if (make_metrics_file(path) == -1)
		return;
	if (chown(path, 65534, 65534) == -1) {
		CHECK_FAIL("chown %s: %s", path, strerror(errno));
		return;
	}
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "is owned by uid 65534, not by this worker's "
	    "uid 0");
}

static void
test_hard_link_refused(void)
{
	const char *path = tmp_path("linked");
	const char *other = tmp_path("linked-too");
	char log[LOG_MAX];

	if (make_metrics_file(path) == -1)
		return;
	if (link(path, other) == -1) {
		CHECK_FAIL("link %s: %s", other, strerror(errno));
		return;
	}
	CHECK(open_logged(path, log, sizeof(log)) == NULL);
	CHECK_STR_CONTAINS(log, path);
	CHECK_STR_CONTAINS(log, "has 2 hard links");
}

/* Removes what the tests made, also after a test gave up half-way. */
static void
cleanup(void)
{
	int i;

	for (i = tmp_path_count - 1; i >= 0; i--)
		if (remove(tmp_paths[i]) == -1 && errno != ENOENT)
			CHECK_FAIL("remove %s: %s", tmp_paths[i],
			    strerror(errno));
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
	/* The modes checked below are exactly those the code asks for. */
	umask(0);
	test_shared_file();
	test_foreign_file();
	test_symlink_refused();
	test_fifo_refused();
	test_directory_refused();
	test_open_mode_refused();
	test_foreign_owner_refused();
	test_hard_link_refused();
	cleanup();
	return check_finish();
}
