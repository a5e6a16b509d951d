/* A growable, size-capped byte buffer (after curl's dynbuf). */
#ifndef ITEMS_BUF_H
#define ITEMS_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char	*data;		/* NUL-terminated once anything was added */
	size_t	 len;
	size_t	 cap;
	size_t	 max;		/* growth beyond this fails */
	int	 failed;	/* sticky: every later append fails too */
};

/* Prepares caller-provided storage; nothing is allocated until data is added. */
void	buf_init(struct buf *b, size_t max);

/* Frees the contents; accepts a buffer that was never used. */
void	buf_finish(struct buf *b);

/*
 * Append data. Returns 0, or -1 when memory runs out or the cap would be passed.
 * A failure frees the contents and is sticky (later appends fail and
 * buf_steal() returns NULL), so one check after a series of appends is enough.
 */
int	buf_add(struct buf *b, const void *data, size_t len);
int	buf_adds(struct buf *b, const char *s);
int	buf_printf(struct buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
int	buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	    __attribute__((format(printf, 2, 0)));

/* Empties the buffer, keeping its memory for what is added next (a failure stays). */
void	buf_clear(struct buf *b);

/* Hands the contents (malloc'd, NUL-terminated) to the caller; NULL after a failure. */
char	*buf_steal(struct buf *b, size_t *len);

#endif
