/*
 * Logging: one JSON object per line on stderr, so that the access log and the
 * operational messages of every worker can be read by the same tools.
 * Each line is written with a single write(2): lines from concurrent workers
 * sharing one pipe do not interleave (a line is capped at PIPE_BUF bytes).
 */
#ifndef ITEMS_LOG_H
#define ITEMS_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

/* What the router knows of a finished request. Strings are borrowed. */
struct log_access {
	const char	*request_id;
	const char	*method;
	const char	*path;
	int		 status;
	double		 duration_ms;
};

void	log_init(bool debug);
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends strerror(errno); log_warnx does not. */
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Start-up failures only: log at error level and exit(1). Never on the request path. */
void	fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	log_access(const struct log_access *entry);

#endif
