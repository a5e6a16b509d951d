/*
 * A tiny header-only test harness. Each test executable is one file that
 * includes this once: the counters are file-scope statics.
 *
 * A failed check prints file:line and what was compared on stderr, and the
 * run goes on, so that one run shows every failure. check_finish() prints
 * "N checks, M failed" and gives main() its exit status (meson: 0 pass,
 * 77 skip, anything else fail).
 */
#ifndef ITEMS_CHECK_H
#define ITEMS_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Long strings (a 64 KiB description) are shown cut to this many bytes. */
#define CHECK_SHOW_MAX 120

static int		 check_count;
static int		 check_failed;
static const char	*check_case;	/* named in failures; NULL for none */

/* Names the table row or data-file line that the following checks are about. */
#define CHECK_CASE(name)	(check_case = (name))

#define CHECK(cond)							\
	check_true((cond) ? 1 : 0, __FILE__, __LINE__, #cond)
#define CHECK_INT_EQ(got, want)						\
	check_int_eq((long long)(got), (long long)(want), __FILE__,	\
	    __LINE__, #got)
#define CHECK_STR_EQ(got, want)						\
	check_str_eq((got), (want), __FILE__, __LINE__, #got)
/* Substring test; the usual way to check a human-readable reason. */
#define CHECK_STR_CONTAINS(haystack, needle)				\
	check_str_contains((haystack), (needle), __FILE__, __LINE__,	\
	    #haystack)

/*
 * s with bytes that would garble the terminal written as \xHH (and, inside
 * quotes, '"' and '\\' escaped), cut at CHECK_SHOW_MAX bytes.
 */
static inline void
check_put_escaped(const char *s, int quoted)
{
	size_t i, len = strlen(s);

	for (i = 0; i < len && i < CHECK_SHOW_MAX; i++) {
		if (quoted && (s[i] == '"' || s[i] == '\\'))
			fprintf(stderr, "\\%c", s[i]);
		else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			fprintf(stderr, "\\x%02x", (unsigned char)s[i]);
		else
			fputc(s[i], stderr);
	}
	if (len > CHECK_SHOW_MAX)
		fprintf(stderr, "... (%zu bytes)", len);
}

static inline void
check_where(const char *file, int line)
{
	check_failed++;
	fprintf(stderr, "%s:%d: ", file, line);
	if (check_case != NULL) {
		fputc('[', stderr);
		check_put_escaped(check_case, 0);
		fputs("] ", stderr);
	}
}

static inline void
check_show(const char *s)
{
	if (s == NULL) {
		fputs("NULL", stderr);
		return;
	}
	fputc('"', stderr);
	check_put_escaped(s, 1);
	fputc('"', stderr);
}

static inline int
check_true(int ok, const char *file, int line, const char *expr)
{
	check_count++;
	if (ok)
		return 1;
	check_where(file, line);
	fprintf(stderr, "CHECK(%s) failed\n", expr);
	return 0;
}

static inline int
check_int_eq(long long got, long long want, const char *file, int line,
    const char *expr)
{
	check_count++;
	if (got == want)
		return 1;
	check_where(file, line);
	fprintf(stderr, "%s is %lld, want %lld\n", expr, got, want);
	return 0;
}

static inline int
check_str_eq(const char *got, const char *want, const char *file, int line,
    const char *expr)
{
	check_count++;
	if (got == want || (got != NULL && want != NULL &&
	    strcmp(got, want) == 0))
		return 1;
	check_where(file, line);
	fprintf(stderr, "%s is ", expr);
	check_show(got);
	fputs(", want ", stderr);
	check_show(want);
	fputc('\n', stderr);
	return 0;
}

static inline int
check_str_contains(const char *haystack, const char *needle, const char *file,
    int line, const char *expr)
{
	check_count++;
	if (haystack != NULL && strstr(haystack, needle) != NULL)
		return 1;
	check_where(file, line);
	fprintf(stderr, "%s is ", expr);
	check_show(haystack);
	fputs(", want it to contain ", stderr);
	check_show(needle);
	fputc('\n', stderr);
	return 0;
}

/* A check that explains itself with a printf-style message. */
static inline int
check_msg(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline int
check_msg(int ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	check_count++;
	if (ok)
		return 1;
	check_where(file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 0;
}

#define CHECK_MSG(cond, ...)						\
	check_msg((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
/* For set-up that cannot go on (a temp file that cannot be made). */
#define CHECK_FAIL(...)		check_msg(0, __FILE__, __LINE__, __VA_ARGS__)

/* The closing line, and main()'s return value. */
static inline int
check_finish(void)
{
	printf("%d checks, %d failed\n", check_count, check_failed);
	return check_failed == 0 ? 0 : 1;
}

#endif
