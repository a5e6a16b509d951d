/*
 * etag.c: entity-tags and the If-Match / If-None-Match field values.
 * The contract (RFC 9110 sections 8.8.3, 13.1.1, 13.1.2): a tag is
 * "opaque" or W/"opaque"; a field value is "*" alone, or a comma-separated
 * list of tags with OWS around the commas and empty elements allowed; "*"
 * matches any existing resource; a tag matches weakly when the opaque parts
 * are equal, strongly when, in addition, neither is weak. Anything else is
 * malformed, and matches nothing.
 *
 * Every field is passed at the very end of a malloc'd buffer of exactly its
 * length, so that ASan reports any read past it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "etag.h"

/* What a call must return: no match, a match, or ETAG_MALFORMED. */
enum want {
	NO,
	YES,
	BAD,
};

#define CUR	"\"0123456789abcdef\""	/* as etag_format(0x0123456789abcdef) */

/* etag_list_match() on a copy of field[0..len) that ends where the heap block does. */
static enum want
list_match(const char *field, size_t len, const char *current,
    enum etag_compare cmp)
{
	char *block, *copy;
	enum etag_status st;
	bool matched = true;

	block = malloc(len > 0 ? len : 1);
	if (block == NULL) {
		CHECK_FAIL("out of memory");
		return BAD;
	}
	copy = block + (len > 0 ? 0 : 1);	/* len 0: one past the end */
	if (len > 0)
		memcpy(copy, field, len);
	st = etag_list_match(copy, len, current, cmp, &matched);
	free(block);
	if (st == ETAG_MALFORMED) {
		CHECK_MSG(!matched, "ETAG_MALFORMED with *matched true");
		return BAD;
	}
	CHECK_MSG(st == ETAG_OK, "status %d is neither OK nor MALFORMED",
	    (int)st);
	return matched ? YES : NO;
}

static void
test_format(void)
{
	static const struct {
		uint64_t	 version;
		const char	*tag;
	} cases[] = {
		{ 0, "\"0000000000000000\"" },
		{ 1, "\"0000000000000001\"" },
		{ 0xa, "\"000000000000000a\"" },
		{ 0x0123456789abcdefULL, CUR },
		{ 0xfedcba9876543210ULL, "\"fedcba9876543210\"" },
		{ INT64_MAX, "\"7fffffffffffffff\"" },
		{ UINT64_MAX, "\"ffffffffffffffff\"" },
	};
	char buf[ETAG_BUF_SIZE + 8];
	size_t i, k;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i].tag);
		memset(buf, 'x', sizeof(buf));
		etag_format(cases[i].version, buf);
		CHECK_STR_EQ(buf, cases[i].tag);
		CHECK_INT_EQ(strlen(buf), ETAG_BUF_SIZE - 1);
		/* Not a byte past ETAG_BUF_SIZE. */
		for (k = ETAG_BUF_SIZE; k < sizeof(buf); k++)
			CHECK_INT_EQ(buf[k], 'x');
		/* What it writes is a tag that matches itself, both ways. */
		CHECK_INT_EQ(list_match(buf, strlen(buf), buf, ETAG_STRONG),
		    YES);
		CHECK_INT_EQ(list_match(buf, strlen(buf), buf, ETAG_WEAK),
		    YES);
	}
	CHECK_CASE(NULL);
}

struct list_case {
	const char	*field;
	size_t		 len;
	const char	*current;	/* NULL: the resource does not exist */
	enum want	 strong;	/* If-Match */
	enum want	 weak;		/* If-None-Match */
};

/* A field given as a literal, NULs included. */
#define F(s)	(s), sizeof(s) - 1

static const struct list_case list_cases[] = {
	/* One tag: strong and weak comparison (section 8.8.3.2). */
	{ F(CUR), CUR, YES, YES },
	{ F("W/" CUR), CUR, NO, YES },
	{ F(CUR), "W/" CUR, NO, YES },
	{ F("W/" CUR), "W/" CUR, NO, YES },
	{ F("\"0123456789abcdee\""), CUR, NO, NO },
	{ F("W/\"0123456789abcdee\""), CUR, NO, NO },
	{ F("\"0123456789ABCDEF\""), CUR, NO, NO },	/* opaque: byte for byte */
	{ F("\"0123456789abcde\""), CUR, NO, NO },	/* a prefix */
	{ F("\"0123456789abcdef0\""), CUR, NO, NO },	/* longer */
	{ F("\"\""), CUR, NO, NO },
	{ F("\"\""), "\"\"", YES, YES },
	{ F("W/\"\""), "\"\"", NO, YES },
	{ F("\"a\""), "\"a\"", YES, YES },
	/* The resource does not exist: no tag matches, "*" neither. */
	{ F(CUR), NULL, NO, NO },
	{ F("W/" CUR), NULL, NO, NO },
	{ F("*"), NULL, NO, NO },
	{ F(" * "), NULL, NO, NO },
	/* "*" alone, with or without white space around it. */
	{ F("*"), CUR, YES, YES },
	{ F("*"), "W/" CUR, YES, YES },
	{ F("  *\t"), CUR, YES, YES },
	/* Lists: OWS around commas, empty elements (section 5.6.1.2). */
	{ F("\"a\", " CUR), CUR, YES, YES },
	{ F(CUR ", \"a\""), CUR, YES, YES },
	{ F("\"a\",\"b\""), CUR, NO, NO },
	{ F("\"a\", ,W/\"b\""), "\"b\"", NO, YES },
	{ F("\"a\", ,W/\"b\""), "\"a\"", YES, YES },
	{ F("\"a\" ,\t, ,, W/" CUR " , \"c\""), CUR, NO, YES },
	{ F("W/" CUR ", " CUR), CUR, YES, YES },
	{ F(",\"a\""), "\"a\"", YES, YES },
	{ F(",,, \"a\""), "\"a\"", YES, YES },
	{ F("\"a\","), "\"a\"", YES, YES },
	{ F("\"a\" , , "), "\"a\"", YES, YES },
	{ F(" \t\"a\"\t "), "\"a\"", YES, YES },
	{ F("\"a\"\t,\t\"b\""), "\"b\"", YES, YES },
	/* The opaque part: '!', '#'..'~', obs-text; commas and "W/" inside it. */
	{ F("\"a,b\""), "\"a,b\"", YES, YES },
	{ F("\"a,b\""), "\"a\"", NO, NO },
	{ F("\"a\",\"b\""), "\"a,b\"", NO, NO },
	{ F("\"W/a\""), "\"W/a\"", YES, YES },
	{ F("\"*\""), "\"*\"", YES, YES },
	{ F("\"*\""), CUR, NO, NO },
	{ F("\"!#~\""), "\"!#~\"", YES, YES },
	{ F("\"\x80\xff\xc3\xa9\""), "\"\x80\xff\xc3\xa9\"", YES, YES },
	{ F("\"a\\b\""), "\"a\\b\"", YES, YES },
	/* A current tag that is not a valid entity-tag matches no listed tag. */
	{ F("\"a\""), "a", NO, NO },
	{ F("\"a\""), "", NO, NO },
	{ F("\"a\""), "\"a", NO, NO },
	{ F("\"a\""), "\"a\" ", NO, NO },
	{ F("\"a\""), "w/\"a\"", NO, NO },
	{ F("*"), "garbage", YES, YES },	/* "*": any current */

	/* Malformed: empty, white space, commas only. */
	{ F(""), CUR, BAD, BAD },
	{ F(""), NULL, BAD, BAD },
	{ F(" "), CUR, BAD, BAD },
	{ F("\t \t"), CUR, BAD, BAD },
	{ F(","), CUR, BAD, BAD },
	{ F(" , ,\t,"), CUR, BAD, BAD },
	/* "*" with anything else. */
	{ F("*,"), CUR, BAD, BAD },
	{ F(",*"), CUR, BAD, BAD },
	{ F("*, " CUR), CUR, BAD, BAD },
	{ F(CUR ", *"), CUR, BAD, BAD },
	{ F("**"), CUR, BAD, BAD },
	{ F("* *"), CUR, BAD, BAD },
	{ F("*a"), CUR, BAD, BAD },
	{ F("W/*"), CUR, BAD, BAD },
	{ F("\"*"), CUR, BAD, BAD },
	/* Quotes: missing, stray, extra. */
	{ F("0123456789abcdef"), CUR, BAD, BAD },
	{ F("\"0123456789abcdef"), CUR, BAD, BAD },
	{ F("0123456789abcdef\""), CUR, BAD, BAD },
	{ F("\""), CUR, BAD, BAD },
	{ F("\"\"\""), CUR, BAD, BAD },
	{ F("\"a\"\"b\""), CUR, BAD, BAD },
	{ F("\"a\"b"), CUR, BAD, BAD },
	{ F("a\"b\""), CUR, BAD, BAD },
	{ F("'a'"), CUR, BAD, BAD },
	{ F("\"a\", \"b"), "\"a\"", BAD, BAD },
	{ F("\"a, \"b\""), "\"a\"", BAD, BAD },
	/* Bytes outside opaque: SP, HTAB, CTLs, DEL, NUL. */
	{ F("\"a b\""), "\"a b\"", BAD, BAD },
	{ F("\"a\tb\""), CUR, BAD, BAD },
	{ F("\"a\rb\""), CUR, BAD, BAD },
	{ F("\"a\nb\""), CUR, BAD, BAD },
	{ F("\"a\x01\""), CUR, BAD, BAD },
	{ F("\"a\x1f\""), CUR, BAD, BAD },
	{ F("\"a\x7f\""), CUR, BAD, BAD },
	{ F("\"a\0b\""), "\"a\"", BAD, BAD },
	{ F("\"a\"\0"), "\"a\"", BAD, BAD },
	{ F("\0\"a\""), "\"a\"", BAD, BAD },
	{ F("\0"), CUR, BAD, BAD },
	{ F("*\0"), CUR, BAD, BAD },
	{ F(CUR "\0"), CUR, BAD, BAD },
	/* White space other than OWS around the list or the commas. */
	{ F("\r\n\"a\""), "\"a\"", BAD, BAD },
	{ F("\"a\"\r\n"), "\"a\"", BAD, BAD },
	{ F("\"a\",\n\"b\""), "\"a\"", BAD, BAD },
	{ F("\v\"a\""), "\"a\"", BAD, BAD },
	{ F("\"a\"\f"), "\"a\"", BAD, BAD },
	/* The weak indicator: "W/" exactly, right before the quote. */
	{ F("W/"), CUR, BAD, BAD },
	{ F("W"), CUR, BAD, BAD },
	{ F("W/\""), CUR, BAD, BAD },
	{ F("W/" "0123456789abcdef"), CUR, BAD, BAD },
	{ F("w/" CUR), CUR, BAD, BAD },
	{ F("W\\" CUR), CUR, BAD, BAD },
	{ F("W " CUR), CUR, BAD, BAD },
	{ F("W/ " CUR), CUR, BAD, BAD },
	{ F("W /" CUR), CUR, BAD, BAD },
	{ F("W//" CUR), CUR, BAD, BAD },
	{ F("W/W/" CUR), CUR, BAD, BAD },
	{ F("/" CUR), CUR, BAD, BAD },
	{ F("X/" CUR), CUR, BAD, BAD },
	{ F(CUR "W/"), CUR, BAD, BAD },
	{ F(CUR ", W/"), CUR, BAD, BAD },
	/* Junk after a tag, or two tags without a comma. */
	{ F(CUR "x"), CUR, BAD, BAD },
	{ F(CUR " x"), CUR, BAD, BAD },
	{ F(CUR " " CUR), CUR, BAD, BAD },
	{ F(CUR ";" CUR), CUR, BAD, BAD },
	{ F(CUR "; " CUR), CUR, BAD, BAD },
	{ F("\"a\" \"b\", \"c\""), "\"c\"", BAD, BAD },
	{ F(CUR ", x"), CUR, BAD, BAD },
	{ F("x, " CUR), CUR, BAD, BAD },
	/* Malformed past a match: the whole list is checked. */
	{ F(CUR ", \"b"), CUR, BAD, BAD },
	{ F(CUR ", ,, junk"), CUR, BAD, BAD },
	/* The same, the resource absent. */
	{ F("\"a"), NULL, BAD, BAD },
	{ F("*, \"a\""), NULL, BAD, BAD },
};

static void
test_list(void)
{
	const struct list_case *c;
	char label[160];
	size_t i, k, n;

	for (i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		c = &list_cases[i];
		/* The field, NULs shown as \0, and the current tag. */
		n = (size_t)snprintf(label, sizeof(label), "#%zu `", i);
		for (k = 0; k < c->len && n + 4 < sizeof(label); k++) {
			if (c->field[k] == '\0') {
				label[n++] = '\\';
				label[n++] = '0';
			} else
				label[n++] = c->field[k];
		}
		snprintf(label + n, sizeof(label) - n, "` current %s",
		    c->current != NULL ? c->current : "NULL");
		CHECK_CASE(label);
		CHECK_INT_EQ(list_match(c->field, c->len, c->current,
		    ETAG_STRONG), c->strong);
		CHECK_INT_EQ(list_match(c->field, c->len, c->current,
		    ETAG_WEAK), c->weak);
	}
	CHECK_CASE(NULL);
}

/* A NULL field is malformed; the length given is what counts, not a NUL. */
static void
test_bounds(void)
{
	bool matched = true;

	CHECK_INT_EQ(etag_list_match(NULL, 0, CUR, ETAG_WEAK, &matched),
	    ETAG_MALFORMED);
	CHECK(!matched);
	/* Only the first 3 bytes of "\"a\"junk" are the field. */
	CHECK_INT_EQ(list_match("\"a\"junk", 3, "\"a\"", ETAG_STRONG), YES);
	CHECK_INT_EQ(list_match("\"a\"junk", 2, "\"a\"", ETAG_STRONG), BAD);
	CHECK_INT_EQ(list_match("*, \"a\"", 1, CUR, ETAG_STRONG), YES);
}

#define SWEEP_MAX	300

/* The byte of padding at position i: a mix of spaces, tabs and commas. */
static char
pad_at(size_t i)
{
	static const char pad[] = " ,\t, ,, \t";

	return pad[i % (sizeof(pad) - 1)];
}

/*
 * Every length 0..SWEEP_MAX: padding alone (malformed), and one tag at
 * every offset within the padding (a match as the tag says).
 */
static void
test_sweep_padding(void)
{
	static const struct {
		const char	*tag;
		enum want	 strong, weak;
	} tags[] = {
		{ CUR, YES, YES },
		{ "W/" CUR, NO, YES },
		{ "\"0123456789abcdee\"", NO, NO },
		{ "\"\"", NO, NO },
	};
	char field[SWEEP_MAX], label[64];
	size_t len, off, t, i, tlen;
	int bad_before = check_failed;

	for (len = 0; len <= SWEEP_MAX; len++) {
		for (i = 0; i < len; i++)
			field[i] = pad_at(i);
		snprintf(label, sizeof(label), "padding only, length %zu", len);
		CHECK_CASE(label);
		CHECK_INT_EQ(list_match(field, len, CUR, ETAG_STRONG), BAD);
		CHECK_INT_EQ(list_match(field, len, NULL, ETAG_WEAK), BAD);
		for (t = 0; t < sizeof(tags) / sizeof(tags[0]); t++) {
			tlen = strlen(tags[t].tag);
			for (off = 0; off + tlen <= len; off++) {
				for (i = 0; i < len; i++)
					field[i] = pad_at(i);
				memcpy(field + off, tags[t].tag, tlen);
				snprintf(label, sizeof(label),
				    "tag %zu at %zu, length %zu", t, off, len);
				CHECK_CASE(label);
				CHECK_INT_EQ(list_match(field, len, CUR,
				    ETAG_STRONG), tags[t].strong);
				CHECK_INT_EQ(list_match(field, len, CUR,
				    ETAG_WEAK), tags[t].weak);
				CHECK_INT_EQ(list_match(field, len, NULL,
				    ETAG_WEAK), NO);
				if (check_failed > bad_before + 20)
					return;	/* enough to see what is wrong */
			}
		}
	}
	CHECK_CASE(NULL);
}

/*
 * A valid list cut after every byte: malformed when the cut falls inside a
 * tag (no proper prefix of a tag is a tag) or leaves no tag; else a match
 * exactly when one of the whole tags before the cut matches.
 */
static void
test_sweep_truncated(void)
{
	static const struct {
		const char	*text;	/* a tag, or separators */
		bool		 tag;
		enum want	 strong, weak;	/* against CUR, for tags */
	} parts[] = {
		{ " \t", false, NO, NO },
		{ "W/\"x,y\"", true, NO, NO },
		{ " ,\t", false, NO, NO },
		{ "\"0123456789abcde\"", true, NO, NO },
		{ " , ,, ", false, NO, NO },
		{ "W/" CUR, true, NO, YES },
		{ "\t,", false, NO, NO },
		{ "\"\"", true, NO, NO },
		{ ",", false, NO, NO },
		{ CUR, true, YES, YES },
		{ " , ", false, NO, NO },
		{ "W/\"\xc3\xa9!#\"", true, NO, NO },
		{ " ,", false, NO, NO },
	};
	size_t starts[sizeof(parts) / sizeof(parts[0])];
	size_t ends[sizeof(parts) / sizeof(parts[0])];
	char field[256], label[64];
	size_t len = 0, n, p, tags;
	enum want strong, weak;
	bool inside;

	for (p = 0; p < sizeof(parts) / sizeof(parts[0]); p++) {
		n = strlen(parts[p].text);
		starts[p] = len;
		memcpy(field + len, parts[p].text, n);
		len += n;
		ends[p] = len;
	}
	for (n = 0; n <= len; n++) {
		inside = false;
		tags = 0;
		strong = weak = NO;
		for (p = 0; p < sizeof(parts) / sizeof(parts[0]); p++) {
			if (!parts[p].tag)
				continue;
			if (n > starts[p] && n < ends[p])
				inside = true;
			if (n >= ends[p]) {
				tags++;
				if (parts[p].strong == YES)
					strong = YES;
				if (parts[p].weak == YES)
					weak = YES;
			}
		}
		if (inside || tags == 0)
			strong = weak = BAD;
		snprintf(label, sizeof(label), "list cut at %zu of %zu", n, len);
		CHECK_CASE(label);
		CHECK_INT_EQ(list_match(field, n, CUR, ETAG_STRONG), strong);
		CHECK_INT_EQ(list_match(field, n, CUR, ETAG_WEAK), weak);
		CHECK_INT_EQ(list_match(field, n, NULL, ETAG_WEAK),
		    strong == BAD ? BAD : NO);
		CHECK_INT_EQ(list_match(field, n, NULL, ETAG_STRONG),
		    strong == BAD ? BAD : NO);
	}
	CHECK_CASE(NULL);
}

int
main(void)
{
	test_format();
	test_list();
	test_bounds();
	test_sweep_padding();
	test_sweep_truncated();
	return check_finish();
}
