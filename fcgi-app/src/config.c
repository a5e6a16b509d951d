#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

#define CONFIG_SECRET_MAX 4096

#define DEFAULT_DB_HOST		"127.0.0.1"
#define DEFAULT_DB_PORT		3306
#define DEFAULT_LISTEN		"127.0.0.1:9000"
#define DEFAULT_METRICS_FILE	"/tmp/items-fcgi.metrics"

struct config_ctx {
	config_lookup_fn lookup;
	char		*error;
	size_t		 error_size;
};

static int
config_fail(struct config_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
config_fail(struct config_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->error, ctx->error_size, fmt, ap);
	va_end(ap);
	return -1;
}

/* Unset and empty are the same: compose turns "VAR=" into an empty string. */
static const char *
config_get(struct config_ctx *ctx, const char *name)
{
	const char *value = ctx->lookup(name);

	return value != NULL && *value != '\0' ? value : NULL;
}

static int
config_string(struct config_ctx *ctx, const char *name, const char *fallback,
    char **out)
{
	const char *value = config_get(ctx, name);

	if (value == NULL)
		value = fallback;
	if (value == NULL)
		return config_fail(ctx, "%s: is not set", name);
	*out = strdup(value);
	if (*out == NULL)
		return config_fail(ctx, "%s: out of memory", name);
	return 0;
}

static int
config_integer(struct config_ctx *ctx, const char *name, long min, long max,
    long fallback, long *out)
{
	const char *value = config_get(ctx, name);
	char *end;
	long n;

	if (value == NULL) {
		*out = fallback;
		return 0;
	}
	errno = 0;
	n = strtol(value, &end, 10);
	/* Digits only: strtol would also take a sign and leading white space. */
	if (value[0] < '0' || value[0] > '9' || errno != 0 || *end != '\0' ||
	    n < min || n > max)
		return config_fail(ctx,
		    "%s=%.32s: must be an integer from %ld to %ld", name, value,
		    min, max);
	*out = n;
	return 0;
}

/* The file's whole content, less trailing line ends (editors add one). */
static int
config_read_secret_file(struct config_ctx *ctx, const char *var,
    const char *path, char **out)
{
	char data[CONFIG_SECRET_MAX + 1];
	size_t len;
	FILE *fp;
	int rc = -1;

	fp = fopen(path, "re");
	if (fp == NULL)
		return config_fail(ctx, "%s=%s: cannot read: %s", var, path,
		    strerror(errno));
	len = fread(data, 1, sizeof(data), fp);
	if (ferror(fp)) {
		config_fail(ctx, "%s=%s: cannot read: %s", var, path,
		    strerror(errno));
		goto out;
	}
	if (len > CONFIG_SECRET_MAX) {
		config_fail(ctx, "%s=%s: longer than %d bytes", var, path,
		    CONFIG_SECRET_MAX);
		goto out;
	}
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	if (len == 0) {
		config_fail(ctx, "%s=%s: the file is empty", var, path);
		goto out;
	}
	if (memchr(data, '\0', len) != NULL) {
		config_fail(ctx, "%s=%s: the file holds a NUL byte", var, path);
		goto out;
	}
	*out = strndup(data, len);
	if (*out == NULL) {
		config_fail(ctx, "%s: out of memory", var);
		goto out;
	}
	rc = 0;
out:
	fclose(fp);
	return rc;
}

/* NAME or NAME_FILE, never both. *out stays NULL when neither is set. */
static int
config_secret(struct config_ctx *ctx, const char *name, char **out)
{
	char file_var[64];
	const char *value, *path;

	snprintf(file_var, sizeof(file_var), "%s_FILE", name);
	value = config_get(ctx, name);
	path = config_get(ctx, file_var);
	*out = NULL;
	if (value != NULL && path != NULL)
		return config_fail(ctx, "%s and %s: set only one of them",
		    name, file_var);
	if (path != NULL)
		return config_read_secret_file(ctx, file_var, path, out);
	if (value == NULL)
		return 0;
	*out = strdup(value);
	if (*out == NULL)
		return config_fail(ctx, "%s: out of memory", name);
	return 0;
}

/* host:port, [v6]:port or unix:/absolute/path, as spawn-fcgi will bind it. */
static int
config_check_listen(struct config_ctx *ctx, const char *listen)
{
	const char *colon;
	char *end;
	long port;

	if (strncmp(listen, "unix:", 5) == 0) {
		if (listen[5] != '/')
			return config_fail(ctx,
			    "FCGI_LISTEN=%s: a unix socket needs an absolute path",
			    listen);
		return 0;
	}
	colon = strrchr(listen, ':');
	if (colon == NULL || colon == listen)
		return config_fail(ctx,
		    "FCGI_LISTEN=%s: expected host:port, [ipv6]:port or unix:/path",
		    listen);
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	/* As in config_integer(): digits only, no sign or white space. */
	if (colon[1] < '0' || colon[1] > '9' || errno != 0 || *end != '\0' ||
	    port < 1 || port > 65535)
		return config_fail(ctx,
		    "FCGI_LISTEN=%s: the port must be from 1 to 65535", listen);
	return 0;
}

/*
 * FCGI_WEB_SERVER_ADDRS is read by libfcgi itself, which admits a TCP peer
 * only if its address is in the list, and silently never matches an entry
 * it cannot parse: every connection would then be refused. Checked here so
 * that a typo stops the pool at start, with the entry named.
 */
static int
config_check_peers(struct config_ctx *ctx)
{
	const char *list = config_get(ctx, "FCGI_WEB_SERVER_ADDRS");
	const char *entry, *end;
	uint32_t addr;

	for (entry = list; entry != NULL; entry = *end ? end + 1 : NULL) {
		end = strchr(entry, ',');
		if (end == NULL)
			end = entry + strlen(entry);
		if (netaddr_parse_ipv4(entry, (size_t)(end - entry), &addr) !=
		    NETADDR_OK)
			goto bad;
	}
	return 0;
bad:
	return config_fail(ctx, "FCGI_WEB_SERVER_ADDRS=%.64s: expected IPv4 "
	    "addresses separated by commas (the FastCGI peers admitted over "
	    "TCP), not \"%.*s\"", list, (int)(end - entry < 40 ? end - entry :
	    40), entry);
}

int
config_load(struct config *config, config_lookup_fn lookup, char *error,
    size_t error_size)
{
	struct config_ctx ctx = { lookup, error, error_size };
	const char *level;
	long port, workers;

	memset(config, 0, sizeof(*config));
	if (config_string(&ctx, "DB_HOST", DEFAULT_DB_HOST,
	    &config->db_host) == -1 ||
	    config_integer(&ctx, "DB_PORT", 1, 65535, DEFAULT_DB_PORT,
	    &port) == -1 ||
	    config_string(&ctx, "MYSQL_DATABASE", NULL,
	    &config->db_name) == -1 ||
	    config_string(&ctx, "MYSQL_USER", NULL, &config->db_user) == -1 ||
	    config_secret(&ctx, "MYSQL_PASSWORD", &config->db_password) == -1 ||
	    config_secret(&ctx, "API_TOKEN", &config->api_token) == -1 ||
	    config_integer(&ctx, "FCGI_WORKERS", 1, CONFIG_WORKERS_MAX, 0,
	    &workers) == -1 ||
	    config_string(&ctx, "FCGI_LISTEN", DEFAULT_LISTEN,
	    &config->listen) == -1 ||
	    config_check_listen(&ctx, config->listen) == -1 ||
	    config_check_peers(&ctx) == -1 ||
	    config_string(&ctx, "METRICS_FILE", DEFAULT_METRICS_FILE,
	    &config->metrics_file) == -1)
		goto fail;
	if (config->db_password == NULL) {
		config_fail(&ctx,
		    "MYSQL_PASSWORD or MYSQL_PASSWORD_FILE: one must be set");
		goto fail;
	}
	level = config_get(&ctx, "LOG_LEVEL");
	if (level != NULL && strcmp(level, "info") != 0 &&
	    strcmp(level, "debug") != 0) {
		config_fail(&ctx, "LOG_LEVEL=%.32s: must be info or debug",
		    level);
		goto fail;
	}
	config->debug = level != NULL && strcmp(level, "debug") == 0;
	config->db_port = (unsigned int)port;
	config->workers = (int)workers;
	return 0;
fail:
	config_finish(config);
	return -1;
}

void
config_finish(struct config *config)
{
	free(config->db_host);
	free(config->db_name);
	free(config->db_user);
	if (config->db_password != NULL)
		explicit_bzero(config->db_password, strlen(config->db_password));
	free(config->db_password);
	if (config->api_token != NULL)
		explicit_bzero(config->api_token, strlen(config->api_token));
	free(config->api_token);
	free(config->listen);
	free(config->metrics_file);
	memset(config, 0, sizeof(*config));
}
