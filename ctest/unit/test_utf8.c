/* utf8.c: RFC 3629 decoding and Unicode's White_Space property. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "utf8.h"

struct decode_case {
	const char	*bytes;
	size_t		 len;		/* bytes offered to the decoder */
	size_t		 want_len;	/* 0: invalid */
	uint32_t	 want_cp;
	const char	*label;
};

static const struct decode_case decode_cases[] = {
	/* The first and last code point of each sequence length. */
	{ "\0", 1, 1, 0x0, "U+0000" },
	{ "A", 1, 1, 0x41, "U+0041" },
	{ "\x7f", 1, 1, 0x7f, "U+007F" },
	{ "\xc2\x80", 2, 2, 0x80, "U+0080" },
	{ "\xc3\xa9", 2, 2, 0xe9, "U+00E9" },
	{ "\xdf\xbf", 2, 2, 0x7ff, "U+07FF" },
	{ "\xe0\xa0\x80", 3, 3, 0x800, "U+0800" },
	{ "\xe3\x80\x80", 3, 3, 0x3000, "U+3000" },
	{ "\xed\x9f\xbf", 3, 3, 0xd7ff, "U+D7FF (below the surrogates)" },
	{ "\xee\x80\x80", 3, 3, 0xe000, "U+E000 (above the surrogates)" },
	{ "\xef\xbf\xbf", 3, 3, 0xffff, "U+FFFF" },
	{ "\xf0\x90\x80\x80", 4, 4, 0x10000, "U+10000" },
	{ "\xf0\x9f\x98\x80", 4, 4, 0x1f600, "U+1F600" },
	{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff, "U+10FFFF" },
	/* Only the first sequence is decoded. */
	{ "\xc3\xa9z", 3, 2, 0xe9, "U+00E9 then z" },
	{ "ab", 2, 1, 0x61, "a then b" },
	/* Overlong forms. */
	{ "\xc0\x80", 2, 0, 0, "overlong U+0000" },
	{ "\xc0\xaf", 2, 0, 0, "overlong /" },
	{ "\xc1\xbf", 2, 0, 0, "overlong U+007F" },
	{ "\xe0\x80\x80", 3, 0, 0, "overlong 3-byte U+0000" },
	{ "\xe0\x9f\xbf", 3, 0, 0, "overlong 3-byte U+07FF" },
	{ "\xf0\x80\x80\x80", 4, 0, 0, "overlong 4-byte U+0000" },
	{ "\xf0\x8f\xbf\xbf", 4, 0, 0, "overlong 4-byte U+FFFF" },
	/* UTF-16 surrogates are not characters. */
	{ "\xed\xa0\x80", 3, 0, 0, "U+D800" },
	{ "\xed\xaf\xbf", 3, 0, 0, "U+DBFF" },
	{ "\xed\xb0\x80", 3, 0, 0, "U+DC00" },
	{ "\xed\xbf\xbf", 3, 0, 0, "U+DFFF" },
	/* Beyond U+10FFFF, and lead bytes that never occur. */
	{ "\xf4\x90\x80\x80", 4, 0, 0, "U+110000" },
	{ "\xf5\x80\x80\x80", 4, 0, 0, "lead byte F5" },
	{ "\xf7\xbf\xbf\xbf", 4, 0, 0, "U+1FFFFF" },
	{ "\xf8\x88\x80\x80\x80", 5, 0, 0, "5-byte form" },
	{ "\xfc\x84\x80\x80\x80\x80", 6, 0, 0, "6-byte form" },
	{ "\xfe", 1, 0, 0, "byte FE" },
	{ "\xff", 1, 0, 0, "byte FF" },
	/* A continuation byte where a character should start. */
	{ "\x80", 1, 0, 0, "lone 80" },
	{ "\xbf", 1, 0, 0, "lone BF" },
	/* Truncated: by the end of the data or by a byte that does not continue. */
	{ "", 0, 0, 0, "nothing" },
	{ "\xc3", 1, 0, 0, "2-byte, 1 given" },
	{ "\xc3\xa9", 1, 0, 0, "2-byte, len 1" },
	{ "\xe2\x82", 2, 0, 0, "3-byte, 2 given" },
	{ "\xe2\x82\xac", 2, 0, 0, "3-byte, len 2" },
	{ "\xf0\x9f\x98", 3, 0, 0, "4-byte, 3 given" },
	{ "\xf0\x9f\x98\x80", 3, 0, 0, "4-byte, len 3" },
	{ "\xc3\x28", 2, 0, 0, "2-byte, bad second" },
	{ "\xc3\xc3\xa9", 3, 0, 0, "2-byte, lead as second" },
	{ "\xe2\x28\xa1", 3, 0, 0, "3-byte, bad second" },
	{ "\xe2\x82\x28", 3, 0, 0, "3-byte, bad third" },
	{ "\xf0\x9f\x28\x80", 4, 0, 0, "4-byte, bad third" },
	{ "\xf0\x9f\x98\x28", 4, 0, 0, "4-byte, bad fourth" },
};

static void
test_decode(void)
{
	const struct decode_case *c;
	uint32_t cp;
	size_t i;

	for (i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		c = &decode_cases[i];
		CHECK_CASE(c->label);
		cp = 0xdeadbeef;
		CHECK_INT_EQ(utf8_decode(c->bytes, c->len, &cp), c->want_len);
		if (c->want_len > 0)
			CHECK_INT_EQ(cp, c->want_cp);
	}
	CHECK_CASE(NULL);
}

/* Encodes cp (no checks: the test picks valid ones). */
static size_t
encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Every scalar value round-trips, and no surrogate decodes. */
static void
test_decode_all(void)
{
	uint32_t cp, got;
	size_t n, bad = 0;
	char s[4];

	for (cp = 0; cp <= 0x10ffff; cp++) {
		n = encode(cp, s);
		if (cp >= 0xd800 && cp <= 0xdfff) {
			if (utf8_decode(s, n, &got) != 0)
				bad++;
		} else if (utf8_decode(s, n, &got) != n || got != cp)
			bad++;
	}
	CHECK_INT_EQ(bad, 0);
}

/* PropList.txt (Unicode 15): White_Space holds exactly these 25 code points. */
static const uint32_t white_space[] = {
	0x0009, 0x000a, 0x000b, 0x000c, 0x000d, 0x0020, 0x0085, 0x00a0,
	0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
	0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f,
	0x3000,
};

/* Look-alikes that are not White_Space (U+180E left the set in Unicode 6.3). */
static const uint32_t not_white_space[] = {
	0x0000, 0x0008, 0x000e, 0x001f, 0x0021, 0x0041, 0x007f, 0x0084,
	0x0086, 0x00a1, 0x00ad, 0x167f, 0x1681, 0x180e, 0x1fff, 0x200b,
	0x200c, 0x200d, 0x2027, 0x202a, 0x202e, 0x2030, 0x205e, 0x2060,
	0x2fff, 0x3001, 0x3164, 0xfeff, 0xffa0, 0x10ffff,
};

static void
test_is_space(void)
{
	char label[32];
	uint32_t cp;
	size_t i, count = 0;

	for (i = 0; i < sizeof(white_space) / sizeof(white_space[0]); i++) {
		snprintf(label, sizeof(label), "U+%04X", (unsigned)white_space[i]);
		CHECK_CASE(label);
		CHECK(utf8_is_space(white_space[i]));
	}
	for (i = 0; i < sizeof(not_white_space) / sizeof(not_white_space[0]);
	    i++) {
		snprintf(label, sizeof(label), "U+%04X",
		    (unsigned)not_white_space[i]);
		CHECK_CASE(label);
		CHECK(!utf8_is_space(not_white_space[i]));
	}
	CHECK_CASE(NULL);
	for (cp = 0; cp <= 0x10ffff; cp++)
		if (utf8_is_space(cp))
			count++;
	CHECK_INT_EQ(count, sizeof(white_space) / sizeof(white_space[0]));
}

int
main(void)
{
	test_decode();
	test_decode_all();
	test_is_space();
	return check_finish();
}
