#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Bumped whenever the layout of struct metrics_shared changes. */
#define METRICS_MAGIC 0x32766d6d65746903ULL

static const int status_codes[METRICS_STATUS_SLOTS - 1] = {
	200, 201, 204, 304, 400, 401, 403, 404, 405, 412, 413, 415, 429, 500,
	503, 504,
};

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double bucket_bounds[METRICS_BUCKETS - 1] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5,
};

static const char *const route_labels[ROUTE_COUNT] = {
	[ROUTE_STATUS] = "/status",
	[ROUTE_ITEMS] = "/items",
	[ROUTE_ITEM] = "/items/{id}",
	[ROUTE_METRICS] = "/metrics",
	[ROUTE_UNMATCHED] = "unmatched",
};

struct metrics_shared {
	_Atomic uint64_t magic;
	_Atomic uint64_t requests[ROUTE_COUNT][HTTP_METHOD_COUNT][METRICS_STATUS_SLOTS];
	_Atomic uint64_t buckets[ROUTE_COUNT][METRICS_BUCKETS];
	_Atomic uint64_t duration_sum_us[ROUTE_COUNT];
	_Atomic uint64_t db_errors;
	_Atomic uint64_t db_reconnects;
	_Atomic uint64_t worker_starts;
	_Atomic int32_t	 worker_pids[METRICS_WORKER_SLOTS];
	struct db_gate_state db_gate;
};

/*
 * These words are shared between processes through the mapping. A type that
 * is not lock-free gets its atomicity from a lock in the C library, private
 * to each process, and the workers would race; the words must also be bare
 * (no lock stored beside the value) for every process to read the same bytes.
 * int64_t and uint64_t are long or long long, int32_t is int.
 */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2,
    "the shared counters and gate words need lock-free 64-bit atomics");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
    "the shared worker slots need lock-free 32-bit atomics");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t) &&
    sizeof(_Atomic int64_t) == sizeof(int64_t) &&
    sizeof(_Atomic int32_t) == sizeof(int32_t),
    "the shared atomics must be bare words");

struct metrics {
	struct metrics_shared	*shared;
	int			 slot;		/* -1: none claimed */
};

static bool
pid_alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* A slot is free when empty or when its worker died (kill -9 leaves no goodbye). */
static int
metrics_claim_slot(struct metrics_shared *shared)
{
	int32_t me = (int32_t)getpid(), seen;
	int i;

	for (i = 0; i < METRICS_WORKER_SLOTS; i++) {
		seen = atomic_load(&shared->worker_pids[i]);
		if (seen != 0 && pid_alive(seen))
			continue;
		if (atomic_compare_exchange_strong(&shared->worker_pids[i],
		    &seen, me))
			return i;
	}
	return -1;
}

/*
 * Opens the shared file, creating it 0600, and makes sure it holds size
 * bytes. The default path is in /tmp, where another local user may have
 * made it first: a file of theirs could hold the database gate down or feed
 * the counters, so only a regular file of our own, private to us, is taken.
 * Returns the descriptor, or -1 with the reason logged.
 */
static int
metrics_open_file(const char *path, size_t size)
{
	struct stat st;
	int fd, error;

	/* O_NONBLOCK: opening a FIFO or a device must not hang the worker. */
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
	    0600);
	if (fd == -1) {
		if (errno == ELOOP)
			log_warnx("METRICS_FILE=%s is a symbolic link: refusing "
			    "to follow it; remove it, or set METRICS_FILE to a "
			    "path in a directory that only this user can write",
			    path);
		else if (errno == EISDIR)
			log_warnx("METRICS_FILE=%s is a directory: set "
			    "METRICS_FILE to the path of a file", path);
		else
			log_warn("METRICS_FILE=%s: cannot open", path);
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("METRICS_FILE=%s: cannot stat", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("METRICS_FILE=%s is not a regular file (a FIFO, socket "
		    "or device): remove it, or set METRICS_FILE to another path",
		    path);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		log_warnx("METRICS_FILE=%s is owned by uid %lu, not by this "
		    "worker's uid %lu: another user may have made it; remove it "
		    "(items-pool does at start), or set METRICS_FILE to a path "
		    "in a directory that only this user can write", path,
		    (unsigned long)st.st_uid, (unsigned long)geteuid());
		goto fail;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		log_warnx("METRICS_FILE=%s has mode %04o: it must be 0600 (no "
		    "access for group or others); remove it and restart the "
		    "pool, which creates it 0600", path,
		    (unsigned int)(st.st_mode & 07777));
		goto fail;
	}
	/* Another name for the file would be another way in. */
	if (st.st_nlink != 1) {
		log_warnx("METRICS_FILE=%s has %lu hard links, not 1: remove "
		    "it and restart the pool", path, (unsigned long)st.st_nlink);
		goto fail;
	}
	/*
	 * Blocks allocated now, not on first touch of the mapping: on a full
	 * tmpfs that would be a SIGBUS in the middle of a request. Workers
	 * race here at start-up; allocating the same range is idempotent.
	 */
	error = posix_fallocate(fd, 0, (off_t)size);
	if (error != 0) {
		errno = error;
		log_warn("METRICS_FILE=%s: cannot allocate %zu bytes", path,
		    size);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

struct metrics *
metrics_open(const char *path)
{
	static struct metrics m;
	uint64_t expected = 0;
	void *map = MAP_FAILED;
	int fd;

	fd = metrics_open_file(path, sizeof(*m.shared));
	if (fd == -1)
		return NULL;
	map = mmap(NULL, sizeof(*m.shared), PROT_READ | PROT_WRITE, MAP_SHARED,
	    fd, 0);
	if (map == MAP_FAILED) {
		log_warn("METRICS_FILE=%s: cannot map", path);
		goto fail;
	}
	m.shared = map;
	if (!atomic_compare_exchange_strong(&m.shared->magic, &expected,
	    METRICS_MAGIC) && expected != METRICS_MAGIC) {
		log_warnx("METRICS_FILE=%s: written by another version; "
		    "remove it and restart the pool", path);
		goto fail;
	}
	m.slot = metrics_claim_slot(m.shared);
	if (m.slot == -1)
		log_warnx("METRICS_FILE=%s: no free worker slot; this worker "
		    "is not counted as alive", path);
	atomic_fetch_add(&m.shared->worker_starts, 1);
	close(fd);
	return &m;
fail:
	if (map != MAP_FAILED)
		munmap(map, sizeof(*m.shared));
	m.shared = NULL;
	close(fd);
	return NULL;
}

void
metrics_close(struct metrics *m)
{
	if (m == NULL || m->shared == NULL)
		return;
	if (m->slot >= 0)
		atomic_store(&m->shared->worker_pids[m->slot], 0);
	munmap(m->shared, sizeof(*m->shared));
	m->shared = NULL;
}

struct db_gate_state *
metrics_db_gate(struct metrics *m)
{
	return m != NULL ? &m->shared->db_gate : NULL;
}

static int
status_slot(int status)
{
	int i;

	for (i = 0; i < METRICS_STATUS_SLOTS - 1; i++)
		if (status_codes[i] == status)
			return i;
	return METRICS_STATUS_SLOTS - 1;
}

void
metrics_record_request(struct metrics *m, enum route_id route,
    enum http_method method, int status, double seconds)
{
	int b;

	if (m == NULL)
		return;
	for (b = 0; b < METRICS_BUCKETS - 1; b++)
		if (seconds <= bucket_bounds[b])
			break;
	atomic_fetch_add_explicit(
	    &m->shared->requests[route][method][status_slot(status)], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&m->shared->buckets[route][b], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&m->shared->duration_sum_us[route],
	    (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

void
metrics_record_db_error(struct metrics *m)
{
	if (m != NULL)
		atomic_fetch_add_explicit(&m->shared->db_errors, 1,
		    memory_order_relaxed);
}

void
metrics_record_db_reconnect(struct metrics *m)
{
	if (m != NULL)
		atomic_fetch_add_explicit(&m->shared->db_reconnects, 1,
		    memory_order_relaxed);
}

void
metrics_snapshot(struct metrics *m, struct metrics_snapshot *snap)
{
	struct metrics_shared *s = m->shared;
	int r, k, c, i;

	memset(snap, 0, sizeof(*snap));
	for (r = 0; r < ROUTE_COUNT; r++) {
		for (k = 0; k < HTTP_METHOD_COUNT; k++)
			for (c = 0; c < METRICS_STATUS_SLOTS; c++)
				snap->requests[r][k][c] =
				    atomic_load(&s->requests[r][k][c]);
		for (i = 0; i < METRICS_BUCKETS; i++)
			snap->buckets[r][i] = atomic_load(&s->buckets[r][i]);
		snap->duration_sum_us[r] = atomic_load(&s->duration_sum_us[r]);
	}
	snap->db_errors = atomic_load(&s->db_errors);
	snap->db_reconnects = atomic_load(&s->db_reconnects);
	snap->worker_starts = atomic_load(&s->worker_starts);
	for (i = 0; i < METRICS_WORKER_SLOTS; i++)
		if (pid_alive(atomic_load(&s->worker_pids[i])))
			snap->workers_alive++;
	snap->db_up = !db_gate_is_down(&s->db_gate);
}

static void
format_requests(const struct metrics_snapshot *snap, struct buf *out)
{
	char code[8];
	int r, k, c;

	buf_adds(out,
	    "# HELP items_http_requests_total Requests answered by the workers.\n"
	    "# TYPE items_http_requests_total counter\n");
	for (r = 0; r < ROUTE_COUNT; r++)
		for (k = 0; k < HTTP_METHOD_COUNT; k++)
			for (c = 0; c < METRICS_STATUS_SLOTS; c++) {
				if (snap->requests[r][k][c] == 0)
					continue;
				if (c == METRICS_STATUS_SLOTS - 1)
					snprintf(code, sizeof(code), "other");
				else
					snprintf(code, sizeof(code), "%d",
					    status_codes[c]);
				buf_printf(out, "items_http_requests_total"
				    "{route=\"%s\",method=\"%s\",code=\"%s\"} %llu\n",
				    route_labels[r],
				    http_method_name((enum http_method)k), code,
				    (unsigned long long)snap->requests[r][k][c]);
			}
}

static void
format_durations(const struct metrics_snapshot *snap, struct buf *out)
{
	uint64_t cumulative;
	int r, b;

	buf_adds(out,
	    "# HELP items_http_request_duration_seconds Time from the request's "
	    "arrival at the worker to its response.\n"
	    "# TYPE items_http_request_duration_seconds histogram\n");
	for (r = 0; r < ROUTE_COUNT; r++) {
		cumulative = 0;
		for (b = 0; b < METRICS_BUCKETS; b++) {
			cumulative += snap->buckets[r][b];
			if (b < METRICS_BUCKETS - 1)
				buf_printf(out,
				    "items_http_request_duration_seconds_bucket"
				    "{route=\"%s\",le=\"%g\"} %llu\n",
				    route_labels[r], bucket_bounds[b],
				    (unsigned long long)cumulative);
			else
				buf_printf(out,
				    "items_http_request_duration_seconds_bucket"
				    "{route=\"%s\",le=\"+Inf\"} %llu\n",
				    route_labels[r],
				    (unsigned long long)cumulative);
		}
		buf_printf(out, "items_http_request_duration_seconds_sum"
		    "{route=\"%s\"} %.6f\n"
		    "items_http_request_duration_seconds_count"
		    "{route=\"%s\"} %llu\n",
		    route_labels[r], (double)snap->duration_sum_us[r] / 1e6,
		    route_labels[r], (unsigned long long)cumulative);
	}
}

/* One gauge series without labels, with its HELP and TYPE lines. */
static void
format_gauge(struct buf *out, const char *name, const char *help,
    uint64_t value)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help,
	    name, name, (unsigned long long)value);
}

int
metrics_format(const struct metrics_snapshot *snap, struct buf *out)
{
	format_requests(snap, out);
	format_durations(snap, out);
	buf_printf(out,
	    "# HELP items_db_errors_total Database statements or connects that failed.\n"
	    "# TYPE items_db_errors_total counter\n"
	    "items_db_errors_total %llu\n"
	    "# HELP items_db_reconnects_total Connections re-established after a loss.\n"
	    "# TYPE items_db_reconnects_total counter\n"
	    "items_db_reconnects_total %llu\n"
	    "# HELP items_worker_starts_total Worker processes started (a restart counts).\n"
	    "# TYPE items_worker_starts_total counter\n"
	    "items_worker_starts_total %llu\n"
	    "# HELP items_workers Worker processes alive.\n"
	    "# TYPE items_workers gauge\n"
	    "items_workers %u\n",
	    (unsigned long long)snap->db_errors,
	    (unsigned long long)snap->db_reconnects,
	    (unsigned long long)snap->worker_starts, snap->workers_alive);
	format_gauge(out, "items_db_up",
	    "0 while the pool finds the database unreachable.",
	    snap->db_up ? 1 : 0);
	if (snap->workers_configured > 0)
		format_gauge(out, "items_workers_configured",
		    "The pool size: workers kept alive when all is well.",
		    snap->workers_configured);
	if (snap->memory.has_usage)
		format_gauge(out, "items_memory_bytes",
		    "Memory in use by the container (its cgroup), less the inactive file cache.",
		    snap->memory.usage_bytes);
	if (snap->memory.has_limit)
		format_gauge(out, "items_memory_limit_bytes",
		    "The container's memory limit.", snap->memory.limit_bytes);
	/* buf_* free the buffer on failure, so one check covers the series. */
	return out->failed ? -1 : 0;
}
