/*
 * Prometheus metrics shared by every worker of the pool. The workers are
 * separate processes (forked by multiwatch), so the counters live in a file
 * mapped by all of them (METRICS_FILE, on a tmpfs) and are updated with
 * atomic operations; any worker can render the totals. The same file holds
 * the few other words the workers share (the database gate, db_gate.h).
 */
#ifndef ITEMS_METRICS_H
#define ITEMS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cgroup.h"
#include "db_gate.h"
#include "http.h"

/* The routes of router.c, as metric labels. */
enum route_id {
	ROUTE_STATUS,
	ROUTE_ITEMS,
	ROUTE_ITEM,
	ROUTE_METRICS,
	ROUTE_UNMATCHED,
	ROUTE_COUNT
};

#define METRICS_STATUS_SLOTS	17	/* the codes we answer, plus "other" */
#define METRICS_BUCKETS		15	/* the last is +Inf */
#define METRICS_WORKER_SLOTS	256

/* A plain copy of the counters, what metrics_format() renders. */
struct metrics_snapshot {
	uint64_t	requests[ROUTE_COUNT][HTTP_METHOD_COUNT][METRICS_STATUS_SLOTS];
	uint64_t	buckets[ROUTE_COUNT][METRICS_BUCKETS];
	uint64_t	duration_sum_us[ROUTE_COUNT];
	uint64_t	db_errors;
	uint64_t	db_reconnects;
	uint64_t	worker_starts;
	unsigned int	workers_alive;
	bool		db_up;			/* false while the gate marks an outage */
	/* Filled by the caller, not from the shared file (0/false: left out). */
	unsigned int	workers_configured;	/* the pool size, FCGI_WORKERS */
	struct cgroup_memory memory;		/* the container's */
};

struct metrics;

/*
 * Maps (creating it 0600 if needed) the shared file and claims a worker slot.
 * Takes only a regular file of the effective user, with no group or other
 * access and one link, never through a symbolic link. Returns a new handle,
 * or NULL with the reason logged.
 */
struct metrics	*metrics_open(const char *path);
/* Releases the slot and unmaps; accepts NULL. */
void		 metrics_close(struct metrics *m);

/* The database gate's words, which live in the same shared file (NULL for a NULL handle). */
struct db_gate_state *metrics_db_gate(struct metrics *m);

void	metrics_record_request(struct metrics *m, enum route_id route,
	    enum http_method method, int status, double seconds);
void	metrics_record_db_error(struct metrics *m);
void	metrics_record_db_reconnect(struct metrics *m);

/* Copies the shared counters, counts the workers still alive and reads the gate. */
void	metrics_snapshot(struct metrics *m, struct metrics_snapshot *snap);

/* Renders a snapshot in the Prometheus text format 0.0.4. Returns 0 or -1 (memory). */
int	metrics_format(const struct metrics_snapshot *snap, struct buf *out);

#endif
