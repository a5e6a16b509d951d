#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

/* Room for one line; PIPE_BUF keeps concurrent writers' lines whole. */
#define LOG_LINE_MAX PIPE_BUF

struct line {
	char	data[LOG_LINE_MAX];
	size_t	len;
	bool	truncated;
};

static bool log_debug_enabled;

static const char *const level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

void
log_init(bool debug)
{
	log_debug_enabled = debug;
}

/*
 * Adds all of s or nothing, keeping LINE_RESERVE bytes for what always
 * follows (a closing quote and "}\n"), so a cut line is still valid JSON.
 */
#define LINE_RESERVE 4

static void
line_add(struct line *l, const char *s, size_t n)
{
	if (l->truncated || n > sizeof(l->data) - LINE_RESERVE - l->len) {
		l->truncated = true;
		return;
	}
	memcpy(l->data + l->len, s, n);
	l->len += n;
}

static void
line_addf(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
line_addf(struct line *l, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		line_add(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/*
 * A JSON string (RFC 8259 section 7). Bytes that are not valid UTF-8 become
 * U+FFFD so that a hostile path cannot break the line's JSON.
 */
static void
line_add_string(struct line *l, const char *s)
{
	size_t len = strlen(s), n;
	uint32_t cp;

	line_add(l, "\"", 1);
	if (l->truncated)
		return;
	while (len > 0 && !l->truncated) {
		n = utf8_decode(s, len, &cp);
		if (n == 0) {
			line_add(l, "\\ufffd", 6);
			n = 1;
		} else if (cp == '"')
			line_add(l, "\\\"", 2);
		else if (cp == '\\')
			line_add(l, "\\\\", 2);
		else if (cp < 0x20 || cp == 0x7f)
			line_addf(l, "\\u%04x", (unsigned)cp);
		else
			line_add(l, s, n);
		s += n;
		len -= n;
	}
	/* Always close the string: the reserve guarantees room for it. */
	l->data[l->len++] = '"';
}

static void
line_begin(struct line *l, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	l->len = 0;
	l->truncated = false;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	line_addf(l, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"pid\":%ld",
	    stamp, ts.tv_nsec / 1000000, level_names[level], (long)getpid());
}

static void
line_end(struct line *l)
{
	ssize_t n;

	l->data[l->len++] = '}';
	l->data[l->len++] = '\n';
	do {
		n = write(STDERR_FILENO, l->data, l->len);
	} while (n == -1 && errno == EINTR);
}

static void
log_message(enum log_level level, const char *suffix, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

static void
log_message(enum log_level level, const char *suffix, const char *fmt,
    va_list ap)
{
	char msg[LOG_LINE_MAX / 2];
	struct line l;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n >= 0 && suffix != NULL && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", suffix);
	line_begin(&l, level);
	line_add(&l, ",\"msg\":", 7);
	line_add_string(&l, msg);
	line_end(&l);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_debug_enabled)
		return;
	va_start(ap, fmt);
	log_message(LOG_LEVEL_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_message(LOG_LEVEL_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	const char *reason = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_message(LOG_LEVEL_WARN, reason, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_message(LOG_LEVEL_WARN, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	const char *reason = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_message(LOG_LEVEL_ERROR, reason, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_message(LOG_LEVEL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_access(const struct log_access *entry)
{
	struct line l;

	line_begin(&l, LOG_LEVEL_INFO);
	line_add(&l, ",\"request_id\":", 14);
	line_add_string(&l, entry->request_id);
	line_add(&l, ",\"method\":", 10);
	line_add_string(&l, entry->method);
	line_addf(&l, ",\"status\":%d,\"duration_ms\":%.3f",
	    entry->status, entry->duration_ms);
	/* Last, because it is the only field a client can make long. */
	line_add(&l, ",\"path\":", 8);
	line_add_string(&l, entry->path);
	line_end(&l);
}
