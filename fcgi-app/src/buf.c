#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 256

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	/* Half the address space at most, so that doubling cannot overflow. */
	b->max = max < SIZE_MAX / 2 ? max : SIZE_MAX / 2;
	b->failed = 0;
}

void
buf_finish(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

static int
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *data;

	if (b->failed || extra > b->max || b->len > b->max - extra)
		goto fail;
	need = b->len + extra + 1;
	if (need <= b->cap && b->data != NULL)
		return 0;
	/* Double (amortised appends), but never past the cap nor below need. */
	cap = b->cap > BUF_MIN_CAP ? b->cap : BUF_MIN_CAP;
	while (cap < need && cap <= b->max / 2)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	if (cap < need)
		cap = need;
	data = realloc(b->data, cap);
	if (data == NULL)
		goto fail;
	b->data = data;
	b->cap = cap;
	return 0;
fail:
	buf_finish(b);
	b->failed = 1;
	return -1;
}

int
buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len) == -1)
		return -1;
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list copy;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0) {
		buf_finish(b);
		b->failed = 1;
		return -1;
	}
	if (buf_reserve(b, (size_t)n) == -1)
		return -1;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void
buf_clear(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

char *
buf_steal(struct buf *b, size_t *len)
{
	char *data;

	/* Room for the terminator, even in a buffer that never got data. */
	if (buf_reserve(b, 0) == -1)
		return NULL;
	b->data[b->len] = '\0';
	data = b->data;
	if (len != NULL)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return data;
}
