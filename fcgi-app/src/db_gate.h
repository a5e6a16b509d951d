/*
 * The pool-wide database gate. While the database cannot be reached, one
 * worker at a time probes it (a connect attempt) and every other worker
 * answers 503 at once, instead of each request of each worker waiting on a
 * connect of its own (up to the connect timeout when the host drops packets).
 * The state is two words in the file the pool's workers share (metrics.c maps it).
 */
#ifndef ITEMS_DB_GATE_H
#define ITEMS_DB_GATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct db_gate_state {
	_Atomic int64_t	down;		/* 1 after a failed connect, until one succeeds */
	_Atomic int64_t	next_probe_ms;	/* monotonic ms; also the probing worker's lease */
};

/*
 * May this worker try to connect now? Always while the database is not known
 * to be down; during an outage, only one worker per probe interval (it then
 * holds the probe for lease_ms). A NULL state lets every attempt through.
 */
bool	db_gate_try(struct db_gate_state *state, int64_t now_ms, int64_t lease_ms);
/* Is an outage under way? False for a NULL state. */
bool	db_gate_is_down(struct db_gate_state *state);
/* A connect succeeded: the outage, if any, is over for every worker. */
void	db_gate_opened(struct db_gate_state *state);
/* A connect failed: mark the outage and allow the next probe at now_ms + retry_ms. */
void	db_gate_failed(struct db_gate_state *state, int64_t now_ms, int64_t retry_ms);

#endif
