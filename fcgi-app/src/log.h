/*
 * Logging: one JSON object per line on stderr, so that the access log and the
 * operational messages of every worker can be read by the same tools.
 * Each line is written with a single write(2): lines from concurrent workers
 * sharing one pipe do not interleave (a line is capped at PIPE_BUF bytes).
 */
#ifndef ITEMS_LOG_H
#define ITEMS_LOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The longest line, its newline included. */
#define LOG_LINE_MAX		PIPE_BUF

/*
 * Bounds of the access line's fields that a client controls, in bytes of
 * their JSON form (escapes included, quotes not): a longer value is cut on
 * a character boundary and ends in LOG_CUT_MARKER, and its line has
 * "truncated":true. Request id: nginx's $request_id has 32 characters.
 * Method: the longest method in IANA's registry has 17. Path: every API path
 * is short, and 1 KiB still shows what a client probed. With every field at
 * its bound an access line stays far below LOG_LINE_MAX (a static assertion
 * in log.c), so an access line itself is never cut.
 */
#define LOG_REQUEST_ID_MAX	64
#define LOG_METHOD_MAX		32
#define LOG_PATH_MAX		1024
#define LOG_CUT_MARKER		"..."

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

/* When and by whom a line is written: a parameter, so that tests are deterministic. */
struct log_stamp {
	struct timespec	 time;		/* CLOCK_REALTIME */
	long		 pid;
};

/* Also remembers the process id for every later line: call it after any fork. */
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
/* Writes the access line of a finished request. */
void	log_access(const struct log_access *entry);

/*
 * The line builders, pure functions: format one line into out[0..size), a
 * JSON object ending in "}\n", not NUL-terminated, and return its length
 * (at most size). Nothing is written at or past out[size]. A value that does
 * not fit (its bound, or what is left of the line) is cut as described above,
 * or left out if even its key does not fit; the line then has
 * "truncated":true. Strings are borrowed; NULL reads as "". Return 0 when
 * size cannot hold the line's fixed part (time, level, pid and its end).
 */
size_t	log_format_access(char *out, size_t size,
	    const struct log_stamp *stamp, const struct log_access *entry);
/* An operational line: the fields above and "msg" (cut only by the line's size). */
size_t	log_format_message(char *out, size_t size,
	    const struct log_stamp *stamp, enum log_level level, const char *msg);

#endif
