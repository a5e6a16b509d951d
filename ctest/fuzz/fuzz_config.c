/*
 * config_load(): the worker's configuration from its environment.
 * Input: an environment table, one "NAME=VALUE" per line (the first entry of
 * a name wins, as with getenv()). The lookup callback serves it; *_FILE
 * values never reach the file system as given: each is mapped to one of a
 * fixed set of fixture files made at start-up in a private temporary
 * directory (a good secret, CRLF ends, empty, only line ends, a NUL byte,
 * exactly 4096 bytes, 4097 bytes, a missing path, a directory).
 * Oracles:
 * - the outcome is the model's (docs/architecture.md "Configuration"):
 *   MYSQL_DATABASE, MYSQL_USER and a password required; X and X_FILE never
 *   both; integers are plain decimal digits in range; FCGI_LISTEN is
 *   host:port, [v6]:port or unix:/absolute; FCGI_WEB_SERVER_ADDRS a
 *   comma-separated list of dotted quads; LOG_LEVEL info or debug;
 * - a failure leaves nothing allocated and one terminated message;
 * - a success gives back the values set (secrets from files less their
 *   trailing line ends);
 * - the message never depends on a secret's value: loading again with every
 *   secret value replaced by another of the same length gives the same
 *   outcome and the same message.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define MAX_VARS 32

struct var {
	char	*name;
	char	*value;
};

static struct var	 table[MAX_VARS];
static size_t		 table_len;
static char		 fixture_dir[] = "/tmp/items-fuzz-config-XXXXXX";

struct fixture {
	const char	*name;
	const char	*content;	/* NULL: not created (missing, dir) */
	size_t		 len;
	const char	*secret;	/* what config_load must give back; NULL: refused */
	char		 path[96];
};

static char big[4097], exact[4096];

static struct fixture fixtures[] = {
	{ "secret", "s3cret-value\n", 13, "s3cret-value", "" },
	{ "crlf", "tok en\r\n\r\n", 10, "tok en", "" },
	{ "empty", "", 0, NULL, "" },
	{ "newlines", "\n\r\n", 3, NULL, "" },
	{ "nul", "ab\0cd", 5, NULL, "" },
	{ "exact", exact, sizeof(exact), exact, "" },
	{ "big", big, sizeof(big), NULL, "" },
	{ "missing", NULL, 0, NULL, "" },
	{ "dir", NULL, 0, NULL, "" },
};
#define NFIXTURES (sizeof(fixtures) / sizeof(fixtures[0]))

static char exact_secret[sizeof(exact) + 1];

static void
remove_fixtures(void)
{
	size_t i;

	for (i = 0; i < NFIXTURES; i++)
		if (fixtures[i].content != NULL)
			unlink(fixtures[i].path);
	rmdir(fixture_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FILE *fp;
	size_t i;

	(void)argc;
	(void)argv;
	memset(big, 'a', sizeof(big));
	memset(exact, 'b', sizeof(exact));
	memcpy(exact_secret, exact, sizeof(exact));
	fixtures[5].secret = exact_secret;
	if (mkdtemp(fixture_dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(remove_fixtures);
	for (i = 0; i < NFIXTURES; i++) {
		if (strcmp(fixtures[i].name, "dir") == 0) {
			snprintf(fixtures[i].path, sizeof(fixtures[i].path),
			    "%s", fixture_dir);
			continue;
		}
		snprintf(fixtures[i].path, sizeof(fixtures[i].path), "%s/%s",
		    fixture_dir, fixtures[i].name);
		if (fixtures[i].content == NULL)
			continue;
		fp = fopen(fixtures[i].path, "w");
		if (fp == NULL || fwrite(fixtures[i].content, 1,
		    fixtures[i].len, fp) != fixtures[i].len || fclose(fp) != 0) {
			perror(fixtures[i].path);
			abort();
		}
	}
	return 0;
}

static const struct fixture *
fixture_for(const char *value)
{
	size_t i, h = 0;

	for (i = 0; i < NFIXTURES; i++)
		if (strcmp(value, fixtures[i].name) == 0)
			return &fixtures[i];
	for (i = 0; value[i] != '\0'; i++)
		h = h * 31 + (unsigned char)value[i];
	return &fixtures[h % NFIXTURES];
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The raw value in the table (NULL when absent): the first entry wins. */
static const char *
raw(const char *name)
{
	size_t i;

	for (i = 0; i < table_len; i++)
		if (strcmp(table[i].name, name) == 0)
			return table[i].value;
	return NULL;
}

static const char *
lookup(const char *name)
{
	const char *value = raw(name);

	if (value != NULL && *value != '\0' && ends_with(name, "_FILE"))
		return fixture_for(value)->path;
	return value;
}

/* Set and not empty (compose turns VAR= into an empty string). */
static const char *
get(const char *name)
{
	const char *v = raw(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

static bool
model_integer(const char *name, long min, long max)
{
	const char *v = get(name);
	long n = 0;
	size_t i;

	if (v == NULL)
		return true;
	for (i = 0; v[i] != '\0'; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		if (n <= max)
			n = n * 10 + (v[i] - '0');
	}
	return n >= min && n <= max;
}

static bool
model_port_text(const char *s)
{
	long n = 0;
	size_t i;

	if (*s == '\0')
		return false;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (n <= 65535)
			n = n * 10 + (s[i] - '0');
	}
	return n >= 1 && n <= 65535;
}

/* NAME / NAME_FILE; *secret is what should be loaded (NULL: none). */
static bool
model_secret(const char *name, const char **secret)
{
	char file_var[64];
	const char *value, *path;

	snprintf(file_var, sizeof(file_var), "%s_FILE", name);
	value = get(name);
	path = get(file_var);
	*secret = value;
	if (value != NULL && path != NULL)
		return false;
	if (path != NULL) {
		*secret = fixture_for(path)->secret;
		return *secret != NULL;
	}
	return true;
}

/* Four decimal parts of 0..255, no leading zero: what inet_pton() takes. */
static bool
model_ipv4(const char *s, size_t len)
{
	size_t i = 0, digits;
	int parts = 0, value;

	for (;;) {
		for (digits = 0, value = 0; i < len && s[i] >= '0' &&
		    s[i] <= '9' && digits <= 3; i++, digits++)
			value = value * 10 + (s[i] - '0');
		if (digits == 0 || digits > 3 || value > 255 ||
		    (digits > 1 && s[i - digits] == '0'))
			return false;
		if (++parts == 4)
			return i == len;
		if (i == len || s[i] != '.')
			return false;
		i++;
	}
}

static bool
model_peers(void)
{
	const char *list = get("FCGI_WEB_SERVER_ADDRS"), *comma;

	while (list != NULL) {
		comma = strchr(list, ',');
		if (!model_ipv4(list, comma != NULL ? (size_t)(comma - list) :
		    strlen(list)))
			return false;
		list = comma != NULL ? comma + 1 : NULL;
	}
	return true;
}

static bool
model_ok(const char **password, const char **token)
{
	const char *listen = get("FCGI_LISTEN"), *colon, *level;

	if (!model_integer("DB_PORT", 1, 65535) || get("MYSQL_DATABASE") == NULL ||
	    get("MYSQL_USER") == NULL || !model_secret("MYSQL_PASSWORD", password) ||
	    !model_secret("API_TOKEN", token) ||
	    !model_integer("FCGI_WORKERS", 1, 256))
		return false;
	if (listen != NULL) {
		if (strncmp(listen, "unix:", 5) == 0) {
			if (listen[5] != '/')
				return false;
		} else {
			colon = strrchr(listen, ':');
			if (colon == NULL || colon == listen ||
			    !model_port_text(colon + 1))
				return false;
		}
	}
	if (*password == NULL || !model_peers())
		return false;
	level = get("LOG_LEVEL");
	return level == NULL || strcmp(level, "info") == 0 ||
	    strcmp(level, "debug") == 0;
}

static bool
same_or_default(const char *got, const char *name, const char *fallback)
{
	const char *want = get(name);

	return strcmp(got, want != NULL ? want : fallback) == 0;
}

/* Member by member: the struct has padding, memcmp() would read it. */
static bool
config_is_zero(const struct config *c)
{
	return c->db_host == NULL && c->db_port == 0 && c->db_name == NULL &&
	    c->db_user == NULL && c->db_password == NULL &&
	    c->api_token == NULL && c->workers == 0 && c->listen == NULL &&
	    c->metrics_file == NULL && !c->debug;
}

static bool
is_secret(const char *name)
{
	return strcmp(name, "MYSQL_PASSWORD") == 0 ||
	    strcmp(name, "API_TOKEN") == 0;
}

static void
parse_table(const uint8_t *data, size_t size)
{
	const uint8_t *line = data, *end = data + size, *nl, *eq;

	table_len = 0;
	while (line < end && table_len < MAX_VARS) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		eq = memchr(line, '=', (size_t)(nl - line));
		if (eq != NULL) {
			table[table_len].name = fuzz_cstring(line,
			    (size_t)(eq - line));
			table[table_len].value = fuzz_cstring(eq + 1,
			    (size_t)(nl - eq - 1));
			table_len++;
		}
		line = nl + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config config, again;
	char error[512], error2[512];	/* as in main.c */
	const char *password = NULL, *token = NULL;
	bool expected;
	size_t i, k;
	int rc, rc2;

	parse_table(data, size);
	memset(error, 'X', sizeof(error));
	rc = config_load(&config, lookup, error, sizeof(error));
	expected = model_ok(&password, &token);
	FUZZ_CHECK(rc == 0 || rc == -1, "returns 0 or -1");
	FUZZ_CHECK((rc == 0) == expected, "the model's outcome");
	if (rc == 0) {
		FUZZ_CHECK(same_or_default(config.db_host, "DB_HOST",
		    "127.0.0.1"), "DB_HOST");
		FUZZ_CHECK(same_or_default(config.db_name, "MYSQL_DATABASE",
		    ""), "MYSQL_DATABASE");
		FUZZ_CHECK(same_or_default(config.db_user, "MYSQL_USER", ""),
		    "MYSQL_USER");
		FUZZ_CHECK(same_or_default(config.listen, "FCGI_LISTEN",
		    "127.0.0.1:9000"), "FCGI_LISTEN");
		FUZZ_CHECK(config.db_password != NULL &&
		    strcmp(config.db_password, password) == 0, "the password");
		FUZZ_CHECK(token == NULL ? config.api_token == NULL :
		    config.api_token != NULL &&
		    strcmp(config.api_token, token) == 0, "the token");
		FUZZ_CHECK(config.db_port >= 1 && config.db_port <= 65535,
		    "DB_PORT in range");
		FUZZ_CHECK(config.workers >= 0 &&
		    config.workers <= CONFIG_WORKERS_MAX, "FCGI_WORKERS");
		FUZZ_CHECK(config.metrics_file != NULL, "METRICS_FILE");
		config_finish(&config);
	} else {
		FUZZ_CHECK(config_is_zero(&config),
		    "nothing left allocated on failure");
		FUZZ_CHECK(memchr(error, '\0', sizeof(error)) != NULL &&
		    error[0] != '\0', "one terminated message");
	}
	FUZZ_CHECK(config_is_zero(&config), "config_finish() clears");

	/* The same table with every secret value changed, same length. */
	for (i = 0; i < table_len; i++)
		if (is_secret(table[i].name))
			for (k = 0; table[i].value[k] != '\0'; k++)
				table[i].value[k] =
				    table[i].value[k] == 'x' ? 'y' : 'x';
	memset(error2, 'X', sizeof(error2));
	rc2 = config_load(&again, lookup, error2, sizeof(error2));
	FUZZ_CHECK(rc2 == rc, "the outcome does not depend on a secret");
	if (rc2 == 0)
		config_finish(&again);
	else
		FUZZ_CHECK(strcmp(error, error2) == 0,
		    "the message does not show a secret");

	for (i = 0; i < table_len; i++) {
		free(table[i].name);
		free(table[i].value);
	}
	return 0;
}
