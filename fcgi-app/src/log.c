#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utf8.h"

/*
 * How every line ends: ,"truncated":true when a value was cut or left out,
 * then }\n. Values never use the last LINE_TAIL_MAX bytes of the buffer, so
 * the end always fits.
 */
#define LINE_TRUNCATED	",\"truncated\":true"
#define LINE_END	"}\n"
#define LINE_TAIL_MAX	(sizeof(LINE_TRUNCATED) - 1 + sizeof(LINE_END) - 1)
#define MARKER_LEN	(sizeof(LOG_CUT_MARKER) - 1)

/* Each key with the opening quote of its string value. */
#define KEY_REQUEST_ID	",\"request_id\":\""
#define KEY_METHOD	",\"method\":\""
#define KEY_PATH	",\"path\":\""
#define KEY_MSG		",\"msg\":\""

/* Sizes of the buffers the head and each number are formatted in. */
#define HEAD_MAX	128
#define NUMBER_MAX	64

/*
 * An access line with every field at its bound fits in a line (sizeof of a
 * key counts its NUL: room for the closing quote), so only a caller's smaller
 * buffer can make log_format_access() cut or drop a field.
 */
_Static_assert(HEAD_MAX + sizeof(KEY_REQUEST_ID) + LOG_REQUEST_ID_MAX +
    sizeof(KEY_METHOD) + LOG_METHOD_MAX + 2 * (size_t)NUMBER_MAX +
    sizeof(KEY_PATH) + LOG_PATH_MAX + LINE_TAIL_MAX <= LOG_LINE_MAX,
    "an access line at its bounds must fit in LOG_LINE_MAX");

/* A line being built in a caller's buffer. */
struct line {
	char	*data;
	size_t	 size;		/* of data, at least LINE_TAIL_MAX */
	size_t	 len;		/* bytes used */
	bool	 truncated;	/* a value was cut or left out */
};

static bool log_debug_enabled;
/* This process's id, asked once: a getpid(2) per line was one syscall a request. */
static long log_pid;

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
	log_pid = (long)getpid();
}

/*
 * The only function that writes into a line: all of s[0..n) if it ends at
 * or before offset end, else nothing. No subtraction can wrap: len <= end
 * is known before end - len is taken.
 */
static int
line_put(struct line *l, size_t end, const char *s, size_t n)
{
	if (end > l->size || l->len > end || n > end - l->len)
		return -1;
	memcpy(l->data + l->len, s, n);
	l->len += n;
	return 0;
}

/* Where values must end: the rest is kept for line_finish(). */
static size_t
line_values_end(const struct line *l)
{
	return l->size - LINE_TAIL_MAX;
}

/* Adds all of s, or marks the line truncated. */
static void
line_add(struct line *l, const char *s, size_t n)
{
	if (line_put(l, line_values_end(l), s, n) == -1)
		l->truncated = true;
}

/* A number or a literal: whole or not at all (a cut number still parses, as a wrong one). */
static void
line_addf(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
line_addf(struct line *l, const char *fmt, ...)
{
	char tmp[NUMBER_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		l->truncated = true;
		return;
	}
	line_add(l, tmp, (size_t)n);
}

/*
 * The JSON form (RFC 8259 section 7) of the character at s[0..len) in
 * out; returns its length (1..6) and stores in *used the bytes of s it
 * stands for. A byte that does not start valid UTF-8 becomes U+FFFD, so that
 * a hostile value cannot break the line's JSON.
 */
static size_t
json_char(const char *s, size_t len, char out[6], size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	static const char replacement[6] = { '\\', 'u', 'f', 'f', 'f', 'd' };
	uint32_t cp;
	size_t n;

	n = utf8_decode(s, len, &cp);
	if (n == 0) {
		*used = 1;
		memcpy(out, replacement, sizeof(replacement));
		return sizeof(replacement);
	}
	*used = n;
	if (cp == '"' || cp == '\\') {
		out[0] = '\\';
		out[1] = (char)cp;
		return 2;
	}
	if (cp < 0x20 || cp == 0x7f) {
		out[0] = '\\';
		out[1] = 'u';
		out[2] = '0';
		out[3] = '0';
		out[4] = hex[cp >> 4];
		out[5] = hex[cp & 0xf];
		return 6;
	}
	memcpy(out, s, n);
	return n;
}

/*
 * Adds key (which ends with the value's opening quote) and the JSON form of
 * value, in at most max bytes and what the line has left. A value that does
 * not fit keeps the characters that do, followed by LOG_CUT_MARKER: it is
 * cut between characters, never inside a UTF-8 sequence or an escape. When
 * not even the key, the marker and the closing quote fit, the field is left
 * out. Either way the line is marked truncated.
 */
static void
line_add_string(struct line *l, const char *key, const char *value,
    size_t max)
{
	size_t mark = l->len, end, keep, len, n, used;
	bool can_cut;
	char buf[6];

	if (value == NULL)
		value = "";
	/*
	 * end: where the value must stop, leaving room for its closing quote
	 * (not below 0: line_begin() put the head before line_values_end()).
	 */
	end = line_values_end(l) - 1;
	if (line_put(l, end, key, strlen(key)) == -1)
		goto drop;
	if (max < end - l->len)
		end = l->len + max;
	can_cut = end - l->len >= MARKER_LEN;
	keep = l->len;
	len = strlen(value);
	while (len > 0) {
		n = json_char(value, len, buf, &used);
		if (line_put(l, end, buf, n) == -1)
			break;
		/* The last character boundary that leaves room for the marker. */
		if (end - l->len >= MARKER_LEN)
			keep = l->len;
		value += used;
		len -= used;
	}
	if (len > 0) {
		if (!can_cut)
			goto drop;
		l->len = keep;
		if (line_put(l, end, LOG_CUT_MARKER, MARKER_LEN) == -1)
			goto drop;
		l->truncated = true;
	}
	if (line_put(l, line_values_end(l), "\"", 1) == -1)
		goto drop;
	return;
drop:
	l->len = mark;
	l->truncated = true;
}

/* Starts a line in out[0..size) with its time, level and pid. */
static int
line_begin(struct line *l, char *out, size_t size,
    const struct log_stamp *stamp, enum log_level level)
{
	char head[HEAD_MAX], when[32];
	const char *name = "error";
	struct tm tm;
	long ms = 0;
	int n;

	l->data = out;
	l->size = size;
	l->len = 0;
	l->truncated = false;
	if (size < LINE_TAIL_MAX)
		return -1;
	/* Cannot fail for a clock's time; a nonsense stamp still gives JSON. */
	if (gmtime_r(&stamp->time.tv_sec, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(when, sizeof(when), "0000-00-00T00:00:00");
	if (stamp->time.tv_nsec >= 0 && stamp->time.tv_nsec < 1000000000L)
		ms = stamp->time.tv_nsec / 1000000;
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		name = level_names[level];
	n = snprintf(head, sizeof(head),
	    "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"pid\":%ld",
	    when, ms, name, stamp->pid);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	return line_put(l, line_values_end(l), head, (size_t)n);
}

/* Ends the line in the room kept for it; returns its length. */
static size_t
line_finish(struct line *l)
{
	if (l->truncated && line_put(l, l->size - (sizeof(LINE_END) - 1),
	    LINE_TRUNCATED, sizeof(LINE_TRUNCATED) - 1) == -1)
		return 0;
	if (line_put(l, l->size, LINE_END, sizeof(LINE_END) - 1) == -1)
		return 0;
	return l->len;
}

size_t
log_format_access(char *out, size_t size, const struct log_stamp *stamp,
    const struct log_access *entry)
{
	struct line l;
	double ms = entry->duration_ms;

	if (line_begin(&l, out, size, stamp, LOG_LEVEL_INFO) == -1)
		return 0;
	line_add_string(&l, KEY_REQUEST_ID, entry->request_id,
	    LOG_REQUEST_ID_MAX);
	line_add_string(&l, KEY_METHOD, entry->method, LOG_METHOD_MAX);
	line_addf(&l, ",\"status\":%d", entry->status);
	/* JSON has no NaN or infinity; a huge value would not fit NUMBER_MAX. */
	if (isfinite(ms) && ms >= 0 && ms < 1e15)
		line_addf(&l, ",\"duration_ms\":%.3f", ms);
	else
		line_addf(&l, ",\"duration_ms\":null");
	line_add_string(&l, KEY_PATH, entry->path, LOG_PATH_MAX);
	return line_finish(&l);
}

size_t
log_format_message(char *out, size_t size, const struct log_stamp *stamp,
    enum log_level level, const char *msg)
{
	struct line l;

	if (line_begin(&l, out, size, stamp, level) == -1)
		return 0;
	line_add_string(&l, KEY_MSG, msg, SIZE_MAX);
	return line_finish(&l);
}

static void
log_stamp_now(struct log_stamp *stamp)
{
	clock_gettime(CLOCK_REALTIME, &stamp->time);
	stamp->pid = log_pid != 0 ? log_pid : (long)getpid();
}

/*
 * One write(2) per line: appended to a file or a pipe, lines of concurrent
 * workers stay whole. errno is kept for the caller, as a log call should.
 */
static void
log_write(const char *line, size_t len)
{
	int saved_errno = errno;
	ssize_t n;

	if (len == 0)
		return;
	do {
		n = write(STDERR_FILENO, line, len);
	} while (n == -1 && errno == EINTR);
	errno = saved_errno;
}

static void
log_message(enum log_level level, const char *suffix, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

/*
 * msg holds as much as a line: a longer message is cut by the line builder,
 * which marks it, instead of silently by vsnprintf.
 */
static void
log_message(enum log_level level, const char *suffix, const char *fmt,
    va_list ap)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX];
	struct log_stamp stamp;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0) {
		n = 0;
		msg[0] = '\0';
	}
	if (suffix != NULL && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", suffix);
	log_stamp_now(&stamp);
	log_write(line, log_format_message(line, sizeof(line), &stamp, level,
	    msg));
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
	char line[LOG_LINE_MAX];
	struct log_stamp stamp;

	log_stamp_now(&stamp);
	log_write(line, log_format_access(line, sizeof(line), &stamp, entry));
}
