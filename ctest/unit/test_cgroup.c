/*
 * cgroup.c: the value files of a cgroup (v2 and v1) and memory.stat, parsed,
 * and read from a made-up /sys/fs/cgroup tree in a temporary directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "check.h"

static char root[] = "/tmp/items-unit-cgroup.XXXXXX";

static void
put_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

static void
remove_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", root, name);
	unlink(path);
}

static void
test_parse_value(void)
{
	static const struct {
		const char	*text;
		int		 rc;
		uint64_t	 value;
	} cases[] = {
		{ "0\n", 1, 0 },
		{ "268435456\n", 1, 268435456 },
		{ "18446744073709551615\n", 1, UINT64_MAX },
		{ "max\n", 0, 0 },
		/* Not what the kernel writes: refused, never half-read. */
		{ "18446744073709551616\n", -1, 0 },
		{ "", -1, 0 },
		{ "\n", -1, 0 },
		{ "12", -1, 0 },
		{ "12\n\n", -1, 0 },
		{ "-1\n", -1, 0 },
		{ " 12\n", -1, 0 },
		{ "12 \n", -1, 0 },
		{ "maximum\n", -1, 0 },
		{ "0x10\n", -1, 0 },
	};
	uint64_t value;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i].text);
		value = 77;
		CHECK_INT_EQ(cgroup_parse_value(cases[i].text, &value),
		    cases[i].rc);
		if (cases[i].rc == 1)
			CHECK(value == cases[i].value);
		else
			CHECK(value == 77);
	}
	CHECK_CASE(NULL);
}

static void
test_stat_value(void)
{
	const char *stat = "anon 100\nfile 4096\ninactive_file_x 9\n"
	    "inactive_file 2048\nactive_file 1\nbad_line x1\nlast 7";
	uint64_t value = 0;

	CHECK_INT_EQ(cgroup_stat_value(stat, "inactive_file", &value), 1);
	CHECK(value == 2048);
	CHECK_INT_EQ(cgroup_stat_value(stat, "anon", &value), 1);
	CHECK(value == 100);
	/* The last line needs no newline. */
	CHECK_INT_EQ(cgroup_stat_value(stat, "last", &value), 1);
	CHECK(value == 7);
	/* A prefix of a key is not the key. */
	CHECK_INT_EQ(cgroup_stat_value(stat, "inactive", &value), 0);
	CHECK_INT_EQ(cgroup_stat_value(stat, "nothere", &value), 0);
	CHECK_INT_EQ(cgroup_stat_value(stat, "bad_line", &value), -1);
	CHECK_INT_EQ(cgroup_stat_value("", "anon", &value), 0);
}

static void
test_read_v2(void)
{
	struct cgroup_memory mem;

	put_file("memory.current", "10000\n");
	put_file("memory.stat", "anon 6000\ninactive_file 3000\n");
	put_file("memory.max", "268435456\n");
	cgroup_memory_read(root, &mem);
	CHECK(mem.has_usage);
	CHECK(mem.usage_bytes == 7000);
	CHECK(mem.has_limit);
	CHECK(mem.limit_bytes == 268435456);

	put_file("memory.max", "max\n");
	cgroup_memory_read(root, &mem);
	CHECK(mem.has_usage);
	CHECK(!mem.has_limit);

	/* More inactive cache than use (racy reads): never wraps around. */
	put_file("memory.stat", "inactive_file 20000\n");
	cgroup_memory_read(root, &mem);
	CHECK(mem.usage_bytes == 0);

	remove_file("memory.current");
	remove_file("memory.stat");
	remove_file("memory.max");
}

static void
test_read_v1(void)
{
	struct cgroup_memory mem;
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/memory", root);
	if (!CHECK(mkdir(dir, 0700) == 0))
		return;
	put_file("memory/memory.usage_in_bytes", "50000\n");
	put_file("memory/memory.stat", "cache 1\ntotal_inactive_file 10000\n");
	put_file("memory/memory.limit_in_bytes", "134217728\n");
	cgroup_memory_read(root, &mem);
	CHECK(mem.has_usage);
	CHECK(mem.usage_bytes == 40000);
	CHECK(mem.has_limit);
	CHECK(mem.limit_bytes == 134217728);

	/* v1's "no limit". */
	put_file("memory/memory.limit_in_bytes", "9223372036854771712\n");
	cgroup_memory_read(root, &mem);
	CHECK(mem.has_usage);
	CHECK(!mem.has_limit);

	/* No memory.stat: the usage as it is. */
	remove_file("memory/memory.stat");
	cgroup_memory_read(root, &mem);
	CHECK(mem.usage_bytes == 50000);

	remove_file("memory/memory.usage_in_bytes");
	remove_file("memory/memory.limit_in_bytes");
	rmdir(dir);
}

static void
test_read_nothing(void)
{
	struct cgroup_memory mem;

	/* No cgroup files (not in a container, or /sys not mounted). */
	cgroup_memory_read(root, &mem);
	CHECK(!mem.has_usage);
	CHECK(!mem.has_limit);
	cgroup_memory_read("/nonexistent/items-unit-cgroup", &mem);
	CHECK(!mem.has_usage);
	/* A garbled file counts as unreadable. */
	put_file("memory.current", "lots\n");
	cgroup_memory_read(root, &mem);
	CHECK(!mem.has_usage);
	remove_file("memory.current");
}

int
main(void)
{
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_parse_value();
	test_stat_value();
	test_read_v2();
	test_read_v1();
	test_read_nothing();
	rmdir(root);
	return check_finish();
}
