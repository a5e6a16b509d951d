/*
 * buf.c: the size-capped growable buffer. What callers rely on: the data is
 * NUL-terminated, the cap is never passed, and a failure is sticky so that
 * one check after a series of appends is enough.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"

static void
test_init_finish(void)
{
	struct buf b;

	buf_init(&b, 100);
	CHECK(b.data == NULL);
	CHECK_INT_EQ(b.len, 0);
	CHECK_INT_EQ(b.max, 100);
	CHECK_INT_EQ(b.failed, 0);
	/* Finishing a buffer that was never used, and finishing twice. */
	buf_finish(&b);
	buf_finish(&b);
	CHECK(b.data == NULL);
}

static void
test_appends(void)
{
	struct buf b;
	size_t i;
	char c;

	buf_init(&b, 1 << 20);
	CHECK_INT_EQ(buf_adds(&b, "abc"), 0);
	CHECK_STR_EQ(b.data, "abc");
	CHECK_INT_EQ(b.len, 3);
	/* Binary data, NUL included, is kept as is. */
	CHECK_INT_EQ(buf_add(&b, "x\0y", 3), 0);
	CHECK_INT_EQ(b.len, 6);
	CHECK(memcmp(b.data, "abcx\0y", 7) == 0);
	CHECK_INT_EQ(buf_add(&b, "", 0), 0);
	CHECK_INT_EQ(b.len, 6);
	buf_finish(&b);
	CHECK(b.data == NULL);
	CHECK_INT_EQ(b.len, 0);

	/* Growth one byte at a time well past the first allocation. */
	buf_init(&b, 1 << 20);
	for (i = 0; i < 5000; i++) {
		c = (char)('0' + i % 10);
		buf_add(&b, &c, 1);
	}
	CHECK_INT_EQ(b.failed, 0);
	CHECK_INT_EQ(b.len, 5000);
	CHECK_INT_EQ(strlen(b.data), 5000);
	CHECK(b.data[4999] == '9' && b.data[1234] == '4');
	buf_finish(&b);
}

static void
test_printf(void)
{
	char big[3000];
	struct buf b;

	buf_init(&b, 1 << 20);
	CHECK_INT_EQ(buf_adds(&b, "n="), 0);
	CHECK_INT_EQ(buf_printf(&b, "%d-%s-%llu", 42, "x",
	    (unsigned long long)UINT64_MAX), 0);
	CHECK_STR_EQ(b.data, "n=42-x-18446744073709551615");
	CHECK_INT_EQ(b.len, strlen("n=42-x-18446744073709551615"));
	/* Longer than whatever was reserved so far. */
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(buf_printf(&b, "[%s]", big), 0);
	CHECK_INT_EQ(b.len, 27 + 2 + sizeof(big) - 1);
	CHECK(b.data[27] == '[' && b.data[b.len - 1] == ']' &&
	    b.data[b.len] == '\0');
	/* An empty result still succeeds. */
	CHECK_INT_EQ(buf_printf(&b, "%s", ""), 0);
	buf_finish(&b);
}

static void
test_cap(void)
{
	struct buf b;
	size_t len = 99;

	/* Exactly max bytes fit; one more does not. */
	buf_init(&b, 8);
	CHECK_INT_EQ(buf_adds(&b, "1234"), 0);
	CHECK_INT_EQ(buf_printf(&b, "%d", 5678), 0);
	CHECK_STR_EQ(b.data, "12345678");
	CHECK_INT_EQ(buf_adds(&b, "9"), -1);
	CHECK(b.failed);
	/* The failure frees the contents... */
	CHECK(b.data == NULL);
	CHECK_INT_EQ(b.len, 0);
	/* ...and sticks, even for appends that would fit. */
	CHECK_INT_EQ(buf_adds(&b, ""), -1);
	CHECK_INT_EQ(buf_add(&b, "x", 1), -1);
	CHECK_INT_EQ(buf_printf(&b, "%s", ""), -1);
	CHECK(buf_steal(&b, &len) == NULL);
	buf_finish(&b);

	/* One append larger than the cap, on an empty buffer. */
	buf_init(&b, 8);
	CHECK_INT_EQ(buf_adds(&b, "123456789"), -1);
	CHECK(b.failed);
	CHECK(b.data == NULL);
	buf_finish(&b);

	/* The same through printf. */
	buf_init(&b, 5);
	CHECK_INT_EQ(buf_printf(&b, "%s", "12345"), 0);
	CHECK_INT_EQ(buf_printf(&b, "%c", 'x'), -1);
	CHECK(b.failed);
	CHECK(b.data == NULL);
	buf_finish(&b);

	/* A cap of zero: nothing but the empty string fits. */
	buf_init(&b, 0);
	CHECK_INT_EQ(buf_add(&b, "", 0), 0);
	CHECK_STR_EQ(b.data, "");
	CHECK_INT_EQ(buf_adds(&b, "x"), -1);
	buf_finish(&b);
}

static void
test_steal(void)
{
	struct buf b;
	size_t len = 99;
	char *s;

	buf_init(&b, 1 << 20);
	buf_adds(&b, "hello");
	s = buf_steal(&b, &len);
	CHECK_STR_EQ(s, "hello");
	CHECK_INT_EQ(len, 5);
	free(s);
	/* The buffer is empty and usable again. */
	CHECK(b.data == NULL);
	CHECK_INT_EQ(b.len, 0);
	CHECK_INT_EQ(buf_adds(&b, "again"), 0);
	s = buf_steal(&b, NULL);
	CHECK_STR_EQ(s, "again");
	free(s);
	buf_finish(&b);

	/*
	 * Stealing from a buffer that got nothing: the header promises a
	 * malloc'd, NUL-terminated string, so "" with length 0. meson.build
	 * runs this test with MALLOC_PERTURB_ and without the tcache so that
	 * fresh memory is never zero by luck.
	 */
	buf_init(&b, 1 << 20);
	len = 99;
	s = buf_steal(&b, &len);
	CHECK(s != NULL);
	CHECK_INT_EQ(len, 0);
	if (s != NULL)
		CHECK_INT_EQ(s[0], '\0');
	free(s);
	buf_finish(&b);
}

/* A stream's chunk buffer: emptied after each part, its memory kept. */
static void
test_clear(void)
{
	struct buf b;
	const char *kept;
	size_t cap;

	buf_init(&b, 1 << 20);
	buf_clear(&b);
	CHECK(b.data == NULL);
	CHECK_INT_EQ(b.len, 0);
	buf_adds(&b, "a first part");
	kept = b.data;
	cap = b.cap;
	buf_clear(&b);
	CHECK_INT_EQ(b.len, 0);
	CHECK(b.data == kept);
	CHECK_INT_EQ(b.cap, cap);
	CHECK_STR_EQ(b.data, "");
	CHECK_INT_EQ(buf_adds(&b, "second"), 0);
	CHECK_STR_EQ(b.data, "second");
	buf_finish(&b);

	/* A failure is not cleared: the stream must still see it. */
	buf_init(&b, 4);
	CHECK_INT_EQ(buf_adds(&b, "too long"), -1);
	buf_clear(&b);
	CHECK(b.failed);
	CHECK_INT_EQ(buf_adds(&b, "x"), -1);
	buf_finish(&b);
}

int
main(void)
{
	test_init_finish();
	test_appends();
	test_printf();
	test_cap();
	test_steal();
	test_clear();
	return check_finish();
}
