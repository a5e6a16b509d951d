/*
 * Configuration from the environment. Every secret can also come from a file
 * named by the same variable with a _FILE suffix (Docker and compose secrets).
 */
#ifndef ITEMS_CONFIG_H
#define ITEMS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_WORKERS_MAX 256

struct config {
	char		*db_host;	/* all strings owned */
	unsigned int	 db_port;
	char		*db_name;
	char		*db_user;
	char		*db_password;
	char		*api_token;	/* NULL: writes are disabled */
	int		 workers;	/* 0: not set (the launcher picks nproc) */
	char		*listen;	/* host:port, [v6]:port or unix:/path */
	char		*metrics_file;
	bool		 debug;
};

/* Reads a variable; getenv() in production, a table in the unit tests. */
typedef const char *(*config_lookup_fn)(const char *name);

/*
 * Fills *config from lookup. Returns 0, or -1 with one message naming the
 * variable and what is wrong in error[] (values of secrets are never shown);
 * *config then holds nothing to free.
 */
int	config_load(struct config *config, config_lookup_fn lookup,
	    char *error, size_t error_size);

/* Frees what config_load() stored; accepts a zeroed struct. */
void	config_finish(struct config *config);

#endif
