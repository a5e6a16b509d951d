/*
 * The memory use and limit of the cgroup this process runs in (its
 * container's), for /metrics: an alert on the api's memory near its limit
 * needs both, and nothing outside the container sees them without privileges.
 * cgroup v2 (memory.current, memory.max) and v1 (memory/memory.usage_in_bytes,
 * memory/memory.limit_in_bytes), as Docker mounts them at /sys/fs/cgroup.
 */
#ifndef ITEMS_CGROUP_H
#define ITEMS_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

struct cgroup_memory {
	bool		has_usage;
	uint64_t	usage_bytes;	/* in use, less the inactive file cache */
	bool		has_limit;
	uint64_t	limit_bytes;
};

/*
 * Parses a cgroup value file: a decimal number or "max", then a newline.
 * Returns 1 with *value set, 0 for "max" (no limit), -1 for anything else.
 */
int	cgroup_parse_value(const char *text, uint64_t *value);

/*
 * Finds KEY's value in a memory.stat text ("key value" lines). Returns 1
 * with *value set, 0 when KEY is absent, -1 on a malformed line for KEY.
 */
int	cgroup_stat_value(const char *text, const char *key, uint64_t *value);

/*
 * Reads the figures under ROOT (normally "/sys/fs/cgroup"). What cannot be
 * read is left out (has_usage/has_limit false); this never fails.
 */
void	cgroup_memory_read(const char *root, struct cgroup_memory *out);

#endif
