#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* memory.stat is a few dozen lines; the files of one value are one line. */
#define CGROUP_FILE_MAX 8192

/*
 * cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit
 * value (9223372036854771712); anything this large is no limit either.
 */
#define CGROUP_V1_UNLIMITED ((uint64_t)1 << 62)

/* Reads PATH whole into BUF (NUL-terminated). Returns 0 or -1. */
static int
read_small_file(const char *path, char *buf, size_t size)
{
	ssize_t n;
	size_t len = 0;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	for (;;) {
		n = read(fd, buf + len, size - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto out;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == size - 1)
			goto out;	/* larger than any file we read: not ours */
	}
	buf[len] = '\0';
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Parses digits up to END (exclusive). Returns 0 or -1 (empty, not digits, overflow). */
static int
parse_u64(const char *start, const char *end, uint64_t *value)
{
	uint64_t v = 0;
	const char *p;

	if (start == end)
		return -1;
	for (p = start; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*value = v;
	return 0;
}

int
cgroup_parse_value(const char *text, uint64_t *value)
{
	const char *end = strchr(text, '\n');

	if (end == NULL || end[1] != '\0')
		return -1;
	if (end - text == 3 && memcmp(text, "max", 3) == 0)
		return 0;
	return parse_u64(text, end, value) == 0 ? 1 : -1;
}

int
cgroup_stat_value(const char *text, const char *key, uint64_t *value)
{
	size_t key_len = strlen(key);
	const char *line = text, *end;

	while (*line != '\0') {
		end = strchr(line, '\n');
		if (end == NULL)
			end = line + strlen(line);
		if ((size_t)(end - line) > key_len && line[key_len] == ' ' &&
		    memcmp(line, key, key_len) == 0)
			return parse_u64(line + key_len + 1, end, value) == 0 ?
			    1 : -1;
		line = *end == '\n' ? end + 1 : end;
	}
	return 0;
}

/* Reads ROOT/NAME whole into BUF (NUL-terminated). Returns 0 or -1. */
static int
read_file_at(const char *root, const char *name, char *buf, size_t size)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, name) >=
	    sizeof(path))
		return -1;
	return read_small_file(path, buf, size);
}

/* Reads the one-value file ROOT/NAME. Returns what cgroup_parse_value returns; -1 when unreadable. */
static int
read_value(const char *root, const char *name, uint64_t *value)
{
	char text[64];

	if (read_file_at(root, name, text, sizeof(text)) == -1)
		return -1;
	return cgroup_parse_value(text, value);
}

/* The inactive file cache under KEY of ROOT/NAME (memory.stat), or 0. */
static uint64_t
read_inactive_file(const char *root, const char *name, const char *key)
{
	char text[CGROUP_FILE_MAX];
	uint64_t value = 0;

	if (read_file_at(root, name, text, sizeof(text)) == -1 ||
	    cgroup_stat_value(text, key, &value) != 1)
		return 0;
	return value;
}

void
cgroup_memory_read(const char *root, struct cgroup_memory *out)
{
	uint64_t usage, limit, inactive;
	int v2, limit_rc;

	memset(out, 0, sizeof(*out));
	/* The working set, as the kernel's OOM killer and `docker stats` see
	 * it: the inactive file cache can be reclaimed before a kill. */
	v2 = read_value(root, "memory.current", &usage) == 1;
	if (v2) {
		inactive = read_inactive_file(root, "memory.stat",
		    "inactive_file");
		limit_rc = read_value(root, "memory.max", &limit);
	} else {
		if (read_value(root, "memory/memory.usage_in_bytes", &usage) != 1)
			return;
		inactive = read_inactive_file(root, "memory/memory.stat",
		    "total_inactive_file");
		limit_rc = read_value(root, "memory/memory.limit_in_bytes",
		    &limit);
		if (limit_rc == 1 && limit >= CGROUP_V1_UNLIMITED)
			limit_rc = 0;
	}
	out->has_usage = true;
	out->usage_bytes = usage > inactive ? usage - inactive : 0;
	if (limit_rc == 1) {
		out->has_limit = true;
		out->limit_bytes = limit;
	}
}
