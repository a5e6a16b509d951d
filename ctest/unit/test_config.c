/*
 * config.c: configuration from the environment, read here from a table
 * instead of getenv(). The contract: missing or invalid configuration stops
 * start-up with one message naming the variable; every secret can come
 * from a *_FILE; no token configured means writes are disabled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

#define ENV_MAX		32
#define FILES_MAX	16

/* The environment config_load() sees. */
static const char	*env_names[ENV_MAX];
static const char	*env_values[ENV_MAX];
static size_t		 env_count;

/* Secret files made under tmp_dir, removed at the end. */
static char		 tmp_dir[] = "/tmp/items-unit-config.XXXXXX";
static char		 tmp_files[FILES_MAX][64];
static size_t		 tmp_count;

static const char *
env_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < env_count; i++)
		if (strcmp(env_names[i], name) == 0)
			return env_values[i];
	return NULL;
}

/* Sets, replaces, or (value NULL) removes a variable. */
static void
env_set(const char *name, const char *value)
{
	size_t i;

	for (i = 0; i < env_count; i++)
		if (strcmp(env_names[i], name) == 0)
			break;
	if (value == NULL) {
		if (i < env_count) {
			env_names[i] = env_names[env_count - 1];
			env_values[i] = env_values[env_count - 1];
			env_count--;
		}
		return;
	}
	if (i == env_count) {
		if (env_count == ENV_MAX) {
			CHECK_FAIL("env_set: table full");
			return;
		}
		env_count++;
	}
	env_names[i] = name;
	env_values[i] = value;
}

/* The smallest valid environment: what has no default. */
static void
env_minimal(void)
{
	env_count = 0;
	env_set("MYSQL_DATABASE", "items");
	env_set("MYSQL_USER", "items");
	env_set("MYSQL_PASSWORD", "pw");
}

/* Writes len bytes to a new file under tmp_dir; returns its path (static storage). */
static const char *
tmp_file(const char *data, size_t len)
{
	char *path;
	int fd;

	if (tmp_count == FILES_MAX) {
		CHECK_FAIL("tmp_file: too many files");
		return "/nonexistent";
	}
	path = tmp_files[tmp_count];
	snprintf(path, sizeof(tmp_files[0]), "%s/secret.XXXXXX", tmp_dir);
	fd = mkstemp(path);
	if (fd == -1) {
		CHECK_FAIL("mkstemp %s: %s", path, strerror(errno));
		return "/nonexistent";
	}
	tmp_count++;
	if (write(fd, data, len) != (ssize_t)len)
		CHECK_FAIL("write %s: %s", path, strerror(errno));
	close(fd);
	return path;
}

/* The struct holds nothing to free (config.h: after a failure). */
static void
check_empty(const struct config *c)
{
	CHECK(c->db_host == NULL);
	CHECK(c->db_name == NULL);
	CHECK(c->db_user == NULL);
	CHECK(c->db_password == NULL);
	CHECK(c->api_token == NULL);
	CHECK(c->listen == NULL);
	CHECK(c->metrics_file == NULL);
}

/* Loads the current table, expecting success. */
static int
load_ok(struct config *c)
{
	char error[256] = "";

	if (CHECK_INT_EQ(config_load(c, env_lookup, error, sizeof(error)), 0))
		return 1;
	fprintf(stderr, "\terror: %s\n", error);
	return 0;
}

/* Loads the current table, expecting a failure whose message names what. */
static void
load_fails(const char *what)
{
	struct config c;
	char error[256] = "";

	if (!CHECK_INT_EQ(config_load(&c, env_lookup, error, sizeof(error)),
	    -1)) {
		config_finish(&c);
		return;
	}
	CHECK_STR_CONTAINS(error, what);
	check_empty(&c);
	config_finish(&c);
}

static void
test_defaults(void)
{
	struct config c;

	env_minimal();
	if (!load_ok(&c))
		return;
	CHECK_STR_EQ(c.db_host, "127.0.0.1");
	CHECK_INT_EQ(c.db_port, 3306);
	CHECK_STR_EQ(c.db_name, "items");
	CHECK_STR_EQ(c.db_user, "items");
	CHECK_STR_EQ(c.db_password, "pw");
	/* No token: writes are disabled. */
	CHECK(c.api_token == NULL);
	/* 0 lets the launcher pick nproc. */
	CHECK_INT_EQ(c.workers, 0);
	CHECK_STR_EQ(c.listen, "127.0.0.1:9000");
	CHECK(c.metrics_file != NULL && c.metrics_file[0] == '/');
	CHECK(!c.debug);
	config_finish(&c);
	/* A finished struct is zeroed, so finishing twice is harmless. */
	check_empty(&c);
	config_finish(&c);
}

static void
test_everything_set(void)
{
	struct config c;

	env_minimal();
	env_set("DB_HOST", "db.internal");
	env_set("DB_PORT", "3307");
	env_set("API_TOKEN", "t0ken");
	env_set("FCGI_WORKERS", "4");
	env_set("FCGI_LISTEN", "unix:/run/items/fcgi.sock");
	env_set("METRICS_FILE", "/dev/shm/items.metrics");
	env_set("LOG_LEVEL", "debug");
	if (!load_ok(&c))
		return;
	CHECK_STR_EQ(c.db_host, "db.internal");
	CHECK_INT_EQ(c.db_port, 3307);
	CHECK_STR_EQ(c.api_token, "t0ken");
	CHECK_INT_EQ(c.workers, 4);
	CHECK_STR_EQ(c.listen, "unix:/run/items/fcgi.sock");
	CHECK_STR_EQ(c.metrics_file, "/dev/shm/items.metrics");
	CHECK(c.debug);
	config_finish(&c);
}

static void
test_required(void)
{
	static const char *const required[] = {
		"MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD",
	};
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		CHECK_CASE(required[i]);
		env_minimal();
		env_set(required[i], NULL);
		load_fails(required[i]);
		/* compose turns "VAR=" into an empty string: the same as unset. */
		env_minimal();
		env_set(required[i], "");
		load_fails(required[i]);
	}
	CHECK_CASE(NULL);
	/* Empty optional values fall back to their defaults. */
	env_minimal();
	env_set("API_TOKEN", "");
	env_set("DB_PORT", "");
	if (load_ok(&c)) {
		CHECK(c.api_token == NULL);
		CHECK_INT_EQ(c.db_port, 3306);
		config_finish(&c);
	}
}

static void
test_both_set(void)
{
	const char *path = tmp_file("from-file\n", 10);
	char error[256] = "";
	struct config c;

	env_minimal();
	env_set("MYSQL_PASSWORD_FILE", path);
	load_fails("MYSQL_PASSWORD_FILE");
	env_minimal();
	env_set("API_TOKEN", "very-secret-value");
	env_set("API_TOKEN_FILE", path);
	load_fails("API_TOKEN_FILE");
	/* Both names, and never the secret itself. */
	config_load(&c, env_lookup, error, sizeof(error));
	CHECK_STR_CONTAINS(error, "API_TOKEN ");
	CHECK(strstr(error, "very-secret-value") == NULL);
	CHECK(strstr(error, "from-file") == NULL);
	config_finish(&c);
}

static void
test_secret_files(void)
{
	static const struct {
		const char	*content;
		const char	*want;
	} cases[] = {
		/* Editors end a file with a line end; it is not the secret's. */
		{ "s3cret\n", "s3cret" },
		{ "s3cret\r\n", "s3cret" },
		{ "s3cret\n\n", "s3cret" },
		{ "s3cret", "s3cret" },
		/* Inside, everything is kept, spaces included. */
		{ " s3 cret \n", " s3 cret " },
		{ "a\nb\n", "a\nb" },
	};
	struct config c;
	const char *path;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i].content);
		path = tmp_file(cases[i].content, strlen(cases[i].content));
		env_minimal();
		env_set("API_TOKEN_FILE", path);
		if (load_ok(&c)) {
			CHECK_STR_EQ(c.api_token, cases[i].want);
			config_finish(&c);
		}
		env_minimal();
		env_set("MYSQL_PASSWORD", NULL);
		env_set("MYSQL_PASSWORD_FILE", path);
		if (load_ok(&c)) {
			CHECK_STR_EQ(c.db_password, cases[i].want);
			config_finish(&c);
		}
	}
	CHECK_CASE(NULL);
}

static void
test_bad_secret_files(void)
{
	char missing[128];

	CHECK_CASE("empty file");
	env_minimal();
	env_set("API_TOKEN_FILE", tmp_file("", 0));
	load_fails("API_TOKEN_FILE");

	CHECK_CASE("only a line end");
	env_set("API_TOKEN_FILE", tmp_file("\n", 1));
	load_fails("API_TOKEN_FILE");

	CHECK_CASE("a NUL byte");
	env_set("API_TOKEN_FILE", tmp_file("ab\0cd\n", 6));
	load_fails("API_TOKEN_FILE");

	CHECK_CASE("no such file");
	snprintf(missing, sizeof(missing), "%s/no-such-file", tmp_dir);
	env_set("API_TOKEN_FILE", missing);
	load_fails("API_TOKEN_FILE");

	/* Root reads any mode, so a directory stands in for "unreadable". */
	CHECK_CASE("a directory");
	env_set("API_TOKEN_FILE", tmp_dir);
	load_fails("API_TOKEN_FILE");

	CHECK_CASE("password file missing");
	env_minimal();
	env_set("MYSQL_PASSWORD", NULL);
	env_set("MYSQL_PASSWORD_FILE", missing);
	load_fails("MYSQL_PASSWORD_FILE");
	CHECK_CASE(NULL);
}

struct value_case {
	const char	*name;
	const char	*value;
	int		 ok;
};

static const struct value_case value_cases[] = {
	{ "DB_PORT", "1", 1 },
	{ "DB_PORT", "65535", 1 },
	{ "DB_PORT", "0", 0 },
	{ "DB_PORT", "65536", 0 },
	{ "DB_PORT", "-1", 0 },
	{ "DB_PORT", "+3306", 0 },
	{ "DB_PORT", " 3306", 0 },
	{ "DB_PORT", "\t3306", 0 },
	{ "DB_PORT", "\n3306", 0 },
	{ "DB_PORT", "3306 ", 0 },
	{ "DB_PORT", "33o6", 0 },
	{ "DB_PORT", "0x10", 0 },
	{ "DB_PORT", "3306.0", 0 },
	{ "DB_PORT", "99999999999999999999", 0 },
	{ "DB_PORT", "mysql", 0 },
	{ "FCGI_WORKERS", "1", 1 },
	{ "FCGI_WORKERS", "256", 1 },
	{ "FCGI_WORKERS", "0", 0 },
	{ "FCGI_WORKERS", "257", 0 },
	{ "FCGI_WORKERS", "-4", 0 },
	{ "FCGI_WORKERS", "4x", 0 },
	{ "FCGI_WORKERS", "four", 0 },
	{ "FCGI_LISTEN", "127.0.0.1:9000", 1 },
	{ "FCGI_LISTEN", "localhost:1", 1 },
	{ "FCGI_LISTEN", "0.0.0.0:65535", 1 },
	{ "FCGI_LISTEN", "[::1]:9000", 1 },
	{ "FCGI_LISTEN", "unix:/run/items/fcgi.sock", 1 },
	{ "FCGI_LISTEN", "9000", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "172.31.253.20", 1 },
	{ "FCGI_WEB_SERVER_ADDRS", "172.31.253.20,172.31.253.10", 1 },
	{ "FCGI_WEB_SERVER_ADDRS", "", 1 },
	{ "FCGI_WEB_SERVER_ADDRS", "front", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "::1", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "10.0.0.1,", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", ",10.0.0.1", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "10.0.0.1 ,10.0.0.2", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "10.0.0.256", 0 },
	{ "FCGI_WEB_SERVER_ADDRS", "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,x", 0 },
	{ "FCGI_LISTEN", ":9000", 0 },
	{ "FCGI_LISTEN", "localhost", 0 },
	{ "FCGI_LISTEN", "localhost:", 0 },
	{ "FCGI_LISTEN", "localhost:0", 0 },
	{ "FCGI_LISTEN", "localhost:65536", 0 },
	{ "FCGI_LISTEN", "localhost:http", 0 },
	{ "FCGI_LISTEN", "localhost:9000x", 0 },
	{ "FCGI_LISTEN", "unix:", 0 },
	{ "FCGI_LISTEN", "unix:fcgi.sock", 0 },
	{ "LOG_LEVEL", "info", 1 },
	{ "LOG_LEVEL", "debug", 1 },
	{ "LOG_LEVEL", "DEBUG", 0 },
	{ "LOG_LEVEL", "warn", 0 },
	{ "LOG_LEVEL", "verbose", 0 },
	{ "LOG_LEVEL", "debug ", 0 },
};

static void
test_values(void)
{
	const struct value_case *v;
	struct config c;
	char label[96];
	size_t i;

	for (i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
		v = &value_cases[i];
		snprintf(label, sizeof(label), "%s=\"%s\"", v->name, v->value);
		CHECK_CASE(label);
		env_minimal();
		env_set(v->name, v->value);
		if (!v->ok)
			load_fails(v->name);
		else if (load_ok(&c))
			config_finish(&c);
	}
	CHECK_CASE(NULL);
}

static void
test_log_level(void)
{
	struct config c;

	env_minimal();
	env_set("LOG_LEVEL", "info");
	if (load_ok(&c)) {
		CHECK(!c.debug);
		config_finish(&c);
	}
}

static void
cleanup(void)
{
	size_t i;

	for (i = 0; i < tmp_count; i++)
		if (unlink(tmp_files[i]) == -1)
			CHECK_FAIL("unlink %s: %s", tmp_files[i], strerror(errno));
	if (rmdir(tmp_dir) == -1)
		CHECK_FAIL("rmdir %s: %s", tmp_dir, strerror(errno));
}

int
main(void)
{
	if (mkdtemp(tmp_dir) == NULL) {
		CHECK_FAIL("mkdtemp %s: %s", tmp_dir, strerror(errno));
		return check_finish();
	}
	test_defaults();
	test_everything_set();
	test_required();
	test_both_set();
	test_secret_files();
	test_bad_secret_files();
	test_values();
	test_log_level();
	cleanup();
	return check_finish();
}
