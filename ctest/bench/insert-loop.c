/*
 * insert-loop: MariaDB's own rate of durable single-row inserts, the
 * reference scripts/bench.sh sets beside POST /items. What a POST costs the
 * database is one prepared INSERT committed on its own (autocommit), so this
 * is the most the API could reach through the same server: the gap between
 * the two is the cost of nginx, FastCGI, JSON and the worker.
 *
 * It opens N connections (a thread each) the way a worker does: the same
 * settings from the same environment variables (DB_HOST, DB_PORT,
 * MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD_FILE or MYSQL_PASSWORD), so
 * the same transport; the same character set; the worker's own session
 * settings and INSERT statement and its random row version (db.h:
 * db_session_sql(), db_insert_sql(), db_new_version()), created_at in UTC. The password is never
 * on the command line. Each thread then executes the statement in a loop
 * until the duration is over or the count is reached, and one line is
 * printed (latencies in microseconds, as report.lua prints wrk's):
 *
 *   INSERT_LOOP connections=N inserts=K errors=E duration_us=D
 *   inserts_per_s=R p50_us=X p99_us=Y
 *
 * Exit status: 0; 1 when any connection or insert failed (the line is
 * printed all the same); 2 on a usage error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <mysql.h>

#include "db.h"


/* The row ctest/bench/post-item.lua sends: the same bytes per insert. */
#define ROW_NAME	"bench item"
#define ROW_DESCRIPTION	"written by scripts/bench.sh"

#define CONNECTIONS_MAX	1000
#define DURATION_MAX	300		/* seconds, as bench.sh's --duration */
#define COUNT_MAX	10000000	/* the latency array: 40 MB at most */
#define SECRET_MAX	4096
/* Looser than the worker's 1 s: a slow fsync should show in p99, not abort the run. */
#define IO_TIMEOUT	5		/* seconds */
#define FAILED		UINT32_MAX	/* a latency slot whose insert failed */

struct settings {
	const char	*host;
	const char	*database;
	const char	*user;
	char		*password;
	unsigned int	 port;
	unsigned int	 connections;
	unsigned int	 duration;
	uint64_t	 max_count;
};

/*
 * What the threads share. Main starts the clock once every connection is
 * open and its statement prepared (ready == started), then lets them go.
 */
struct run {
	const struct settings	*settings;
	pthread_mutex_t		 lock;
	pthread_cond_t		 changed;
	unsigned int		 ready;		/* under lock */
	int			 go;		/* under lock */
	int64_t			 deadline_ns;	/* written under lock before go */
	atomic_uint_fast64_t	 next;		/* latency slots taken */
	atomic_uint_fast64_t	 errors;
	atomic_int_fast64_t	 last_end_ns;	/* when the last thread stopped */
	uint32_t		*latency_us;	/* max_count slots */
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* created_at as a worker sends it: now, in UTC, whole seconds. */
static void
utc_now(MYSQL_TIME *t)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	*t = (MYSQL_TIME){ .year = (unsigned int)tm.tm_year + 1900,
		.month = (unsigned int)tm.tm_mon + 1,
		.day = (unsigned int)tm.tm_mday, .hour = (unsigned int)tm.tm_hour,
		.minute = (unsigned int)tm.tm_min,
		.second = (unsigned int)tm.tm_sec,
		.time_type = MYSQL_TIMESTAMP_DATETIME };
}

static void
record_error(struct run *run, MYSQL *conn, MYSQL_STMT *stmt, const char *what)
{
	/* Only the first: every thread failing the same way says nothing more. */
	if (atomic_fetch_add(&run->errors, 1) == 0)
		fprintf(stderr, "insert-loop: %s: %s\n", what,
		    stmt != NULL ? mysql_stmt_error(stmt) :
		    conn != NULL ? mysql_error(conn) : strerror(errno));
}

/* Connects as a worker does and prepares its INSERT; 0 or -1 (recorded). */
static int
open_connection(struct run *run, MYSQL **conn, MYSQL_STMT **stmt)
{
	const struct settings *s = run->settings;
	unsigned int connect_timeout = 2, io_timeout = IO_TIMEOUT;
	my_bool off = 0;

	*conn = mysql_init(NULL);
	if (*conn == NULL) {
		record_error(run, NULL, NULL, "mysql_init");
		return -1;
	}
	mysql_optionsv(*conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_optionsv(*conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_optionsv(*conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_optionsv(*conn, MYSQL_OPT_RECONNECT, &off);
	mysql_optionsv(*conn, MYSQL_OPT_LOCAL_INFILE, &off);
	mysql_optionsv(*conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(*conn, MYSQL_INIT_COMMAND, db_session_sql());
	if (mysql_real_connect(*conn, s->host, s->user, s->password,
	    s->database, s->port, NULL, CLIENT_FOUND_ROWS) == NULL) {
		record_error(run, *conn, NULL, "connect");
		return -1;
	}
	/* The server's default, made sure of: each insert is a commit of its own. */
	if (mysql_autocommit(*conn, 1) != 0) {
		record_error(run, *conn, NULL, "autocommit");
		return -1;
	}
	*stmt = mysql_stmt_init(*conn);
	if (*stmt == NULL) {
		record_error(run, *conn, NULL, "mysql_stmt_init");
		return -1;
	}
	if (mysql_stmt_prepare(*stmt, db_insert_sql(), strlen(db_insert_sql())) != 0) {
		record_error(run, *conn, *stmt, "prepare");
		return -1;
	}
	return 0;
}

/* Inserts until the deadline or the count; one latency slot per insert. */
static void
insert_until_done(struct run *run, MYSQL_STMT *stmt)
{
	unsigned long name_len = sizeof(ROW_NAME) - 1;
	unsigned long description_len = sizeof(ROW_DESCRIPTION) - 1;
	char name[] = ROW_NAME, description[] = ROW_DESCRIPTION;
	MYSQL_BIND params[4];
	MYSQL_TIME created;
	uint64_t version, slot;
	int64_t start, took_us;

	memset(params, 0, sizeof(params));
	params[0].buffer_type = MYSQL_TYPE_STRING;
	params[0].buffer = name;
	params[0].length = &name_len;
	params[1].buffer_type = MYSQL_TYPE_STRING;
	params[1].buffer = description;
	params[1].length = &description_len;
	params[2].buffer_type = MYSQL_TYPE_DATETIME;
	params[2].buffer = &created;
	params[3].buffer_type = MYSQL_TYPE_LONGLONG;
	params[3].buffer = &version;
	params[3].is_unsigned = 1;
	for (;;) {
		start = now_ns();
		if (start >= run->deadline_ns)
			break;
		slot = atomic_fetch_add(&run->next, 1);
		if (slot >= run->settings->max_count)
			break;
		/* The worker's per-request work before the statement, timed too. */
		if (db_new_version(&version) != DB_OK) {
			run->latency_us[slot] = FAILED;
			record_error(run, NULL, NULL, "getrandom");
			break;
		}
		utc_now(&created);
		if (mysql_stmt_bind_param(stmt, params) != 0 ||
		    mysql_stmt_execute(stmt) != 0) {
			run->latency_us[slot] = FAILED;
			record_error(run, NULL, stmt, "insert");
			break;
		}
		took_us = (now_ns() - start) / 1000;
		run->latency_us[slot] = took_us < FAILED ? (uint32_t)took_us :
		    FAILED - 1;
	}
}

static void *
connection_thread(void *arg)
{
	struct run *run = arg;
	MYSQL *conn = NULL;
	MYSQL_STMT *stmt = NULL;
	int_fast64_t end, last;
	int ok;

	mysql_thread_init();
	ok = open_connection(run, &conn, &stmt) == 0;
	/* Connected or not, every thread reports ready: main waits for all. */
	pthread_mutex_lock(&run->lock);
	run->ready++;
	pthread_cond_broadcast(&run->changed);
	while (!run->go)
		pthread_cond_wait(&run->changed, &run->lock);
	pthread_mutex_unlock(&run->lock);
	if (ok)
		insert_until_done(run, stmt);
	end = now_ns();
	last = atomic_load(&run->last_end_ns);
	while (end > last &&
	    !atomic_compare_exchange_weak(&run->last_end_ns, &last, end))
		;
	if (stmt != NULL)
		mysql_stmt_close(stmt);
	if (conn != NULL)
		mysql_close(conn);
	mysql_thread_end();
	return NULL;
}

static int
compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank of the sorted successes; 0 when there are none. */
static uint32_t
percentile(const uint32_t *sorted, uint64_t n, unsigned int p)
{
	uint64_t rank;

	if (n == 0)
		return 0;
	rank = (n * p + 99) / 100;
	return sorted[rank > 0 ? rank - 1 : 0];
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: insert-loop [--connections N] [--duration S]"
	    " [--max-count M]\n"
	    "  N connections [1], 1..%d; S seconds [5], 1..%d;"
	    " at most M inserts [1000000], 1..%d\n"
	    "The database: DB_HOST [127.0.0.1], DB_PORT [3306],"
	    " MYSQL_DATABASE, MYSQL_USER,\n"
	    "MYSQL_PASSWORD_FILE or MYSQL_PASSWORD (as the worker's;"
	    " never on the command line).\n",
	    CONNECTIONS_MAX, DURATION_MAX, COUNT_MAX);
}

/* A decimal in [min, max]; -1 when it is not one. */
static int
parse_number(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : fallback;
}

/* MYSQL_PASSWORD_FILE's first line (or MYSQL_PASSWORD), as the worker reads it. */
static char *
read_password(void)
{
	const char *path = env_or("MYSQL_PASSWORD_FILE", NULL);
	const char *value = env_or("MYSQL_PASSWORD", NULL);
	char *secret = NULL;
	size_t n;
	FILE *f;

	if ((path == NULL) == (value == NULL)) {
		fprintf(stderr, "insert-loop: set one of MYSQL_PASSWORD_FILE"
		    " and MYSQL_PASSWORD\n");
		return NULL;
	}
	if (value != NULL)
		return strdup(value);
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "insert-loop: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	secret = calloc(1, SECRET_MAX + 1);
	if (secret != NULL) {
		n = fread(secret, 1, SECRET_MAX, f);
		secret[strcspn(secret, "\r\n")] = '\0';
		if (n == 0 || secret[0] == '\0') {
			fprintf(stderr, "insert-loop: %s: empty\n", path);
			free(secret);
			secret = NULL;
		}
	}
	fclose(f);
	return secret;
}

/* 0; 1 after --help; 2 after a message: a usage error. */
static int
parse_settings(int argc, char **argv, struct settings *s)
{
	long long v;
	int i;

	s->connections = 1;
	s->duration = 5;
	s->max_count = 1000000;
	/* Every option takes a value, but --help. */
	for (i = 1; i < argc; i += 2) {
		if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 1;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (strcmp(argv[i], "--connections") == 0 &&
		    parse_number(argv[i + 1], 1, CONNECTIONS_MAX, &v) == 0)
			s->connections = (unsigned int)v;
		else if (strcmp(argv[i], "--duration") == 0 &&
		    parse_number(argv[i + 1], 1, DURATION_MAX, &v) == 0)
			s->duration = (unsigned int)v;
		else if (strcmp(argv[i], "--max-count") == 0 &&
		    parse_number(argv[i + 1], 1, COUNT_MAX, &v) == 0)
			s->max_count = (uint64_t)v;
		else {
			fprintf(stderr, "insert-loop: bad option or value: %s %s\n",
			    argv[i], argv[i + 1]);
			return 2;
		}
	}
	s->host = env_or("DB_HOST", "127.0.0.1");
	s->database = env_or("MYSQL_DATABASE", NULL);
	s->user = env_or("MYSQL_USER", NULL);
	if (parse_number(env_or("DB_PORT", "3306"), 1, 65535, &v) == -1 ||
	    s->database == NULL || s->user == NULL) {
		fprintf(stderr, "insert-loop: DB_PORT must be 1..65535;"
		    " MYSQL_DATABASE and MYSQL_USER must be set\n");
		return 2;
	}
	s->port = (unsigned int)v;
	s->password = read_password();
	return s->password != NULL ? 0 : 2;
}

/* Runs the threads and prints the line; 0 or 1 (any failure). */
static int
run_loop(struct run *run, pthread_t *threads)
{
	const struct settings *s = run->settings;
	unsigned int i, started = 0;
	uint64_t used, ok, errors;
	int64_t start, duration_us;

	for (i = 0; i < s->connections; i++) {
		if (pthread_create(&threads[i], NULL, connection_thread, run) != 0) {
			fprintf(stderr, "insert-loop: pthread_create failed after"
			    " %u threads\n", started);
			atomic_fetch_add(&run->errors, 1);
			break;
		}
		started++;
	}
	pthread_mutex_lock(&run->lock);
	while (run->ready < started)
		pthread_cond_wait(&run->changed, &run->lock);
	/* Every connection is open and its statement prepared: the clock starts. */
	start = now_ns();
	/* With a thread missing, those started stop at once: no figure. */
	run->deadline_ns = start + (started == s->connections ?
	    (int64_t)s->duration * 1000000000 : 0);
	run->go = 1;
	pthread_cond_broadcast(&run->changed);
	pthread_mutex_unlock(&run->lock);
	for (i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	used = atomic_load(&run->next);
	if (used > s->max_count)
		used = s->max_count;
	/* Failed slots sort last (FAILED is the largest value): successes first. */
	qsort(run->latency_us, (size_t)used, sizeof(*run->latency_us),
	    compare_u32);
	for (ok = 0; ok < used && run->latency_us[ok] != FAILED; ok++)
		;
	errors = atomic_load(&run->errors);
	duration_us = (atomic_load(&run->last_end_ns) - start) / 1000;
	if (duration_us < 1)
		duration_us = 1;
	printf("INSERT_LOOP connections=%u inserts=%llu errors=%llu"
	    " duration_us=%lld inserts_per_s=%.0f p50_us=%u p99_us=%u\n",
	    s->connections, (unsigned long long)ok,
	    (unsigned long long)errors, (long long)duration_us,
	    (double)ok * 1e6 / (double)duration_us,
	    percentile(run->latency_us, ok, 50),
	    percentile(run->latency_us, ok, 99));
	return errors == 0 && ok > 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	struct settings settings = { 0 };
	struct run run = { 0 };
	pthread_t *threads = NULL;
	int library = 0, lock = 0, changed = 0, rc;

	rc = parse_settings(argc, argv, &settings);
	if (rc != 0) {
		/* --help asked for the text: not an error. */
		rc = rc == 1 ? 0 : 2;
		goto done;
	}
	rc = 1;
	run.settings = &settings;
	atomic_init(&run.next, 0);
	atomic_init(&run.errors, 0);
	atomic_init(&run.last_end_ns, 0);
	run.latency_us = calloc(settings.max_count, sizeof(*run.latency_us));
	threads = calloc(settings.connections, sizeof(*threads));
	if (run.latency_us == NULL || threads == NULL) {
		fprintf(stderr, "insert-loop: out of memory\n");
		goto done;
	}
	/* Before any thread: Connector/C's global set-up is not thread-safe. */
	library = mysql_library_init(0, NULL, NULL) == 0;
	lock = pthread_mutex_init(&run.lock, NULL) == 0;
	changed = pthread_cond_init(&run.changed, NULL) == 0;
	if (!library || !lock || !changed) {
		fprintf(stderr, "insert-loop: cannot initialise the library,"
		    " a mutex or a condition variable\n");
		goto done;
	}
	rc = run_loop(&run, threads);
done:
	if (changed)
		pthread_cond_destroy(&run.changed);
	if (lock)
		pthread_mutex_destroy(&run.lock);
	if (library)
		mysql_library_end();
	if (settings.password != NULL) {
		explicit_bzero(settings.password, strlen(settings.password));
		free(settings.password);
	}
	free(threads);
	free(run.latency_us);
	return rc;
}
