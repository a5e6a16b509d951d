#include "db_gate.h"

#include <stddef.h>

bool
db_gate_try(struct db_gate_state *state, int64_t now_ms, int64_t lease_ms)
{
	int64_t next;

	if (state == NULL || atomic_load(&state->down) == 0)
		return true;
	next = atomic_load(&state->next_probe_ms);
	if (next > now_ms)
		return false;
	/* Whoever moves the probe time forward first is the one prober. */
	return atomic_compare_exchange_strong(&state->next_probe_ms, &next,
	    now_ms + lease_ms);
}

bool
db_gate_is_down(struct db_gate_state *state)
{
	return state != NULL && atomic_load(&state->down) != 0;
}

void
db_gate_opened(struct db_gate_state *state)
{
	if (state == NULL)
		return;
	atomic_store(&state->down, 0);
	atomic_store(&state->next_probe_ms, 0);
}

void
db_gate_failed(struct db_gate_state *state, int64_t now_ms, int64_t retry_ms)
{
	if (state == NULL)
		return;
	atomic_store(&state->next_probe_ms, now_ms + retry_ms);
	atomic_store(&state->down, 1);
}
