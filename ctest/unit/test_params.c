/*
 * params.c: the query of GET /items and the {id} path segment.
 * The contract: limit is a decimal integer 1..1000 (default 100), after a
 * decimal integer >= 0 (default 0); any other value, or the same parameter
 * twice, is a 400; other parameters are ignored. {id} is a decimal integer
 * in 1..2147483647, else 404.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "params.h"

#define OK	1
#define BAD	0

struct page_case {
	const char	*query;
	int		 ok;
	int		 limit;		/* when ok */
	int64_t		 after;		/* when ok */
	const char	*reason;	/* when !ok: a substring of the reason */
};

static const struct page_case page_cases[] = {
	/* Defaults and bounds. */
	{ "", OK, 100, 0, NULL },
	{ "limit=1", OK, 1, 0, NULL },
	{ "limit=1000", OK, 1000, 0, NULL },
	{ "limit=0", BAD, 0, 0, "limit" },
	{ "limit=1001", BAD, 0, 0, "limit" },
	{ "after=0", OK, 100, 0, NULL },
	{ "after=2147483647", OK, 100, 2147483647, NULL },
	{ "after=9223372036854775807", OK, 100, INT64_MAX, NULL },
	{ "limit=5&after=10", OK, 5, 10, NULL },
	{ "after=10&limit=5", OK, 5, 10, NULL },
	/* Overflow is out of range, not wrapped around. */
	{ "after=9223372036854775808", BAD, 0, 0, "after" },
	{ "after=99999999999999999999999", BAD, 0, 0, "after" },
	{ "limit=4294967297", BAD, 0, 0, "limit" },
	{ "limit=18446744073709551617", BAD, 0, 0, "limit" },
	/* The same parameter twice, even with the same value. */
	{ "limit=5&limit=5", BAD, 0, 0, "more than once" },
	{ "limit=5&limit=6", BAD, 0, 0, "limit" },
	{ "after=1&limit=2&after=1", BAD, 0, 0, "after" },
	{ "after=1&after", BAD, 0, 0, "after" },
	/* Empty values. */
	{ "limit=", BAD, 0, 0, "limit" },
	{ "limit", BAD, 0, 0, "limit" },
	{ "after=", BAD, 0, 0, "after" },
	/* Signs: '+' is a space in a query, %2B a real plus; neither is a digit. */
	{ "limit=-5", BAD, 0, 0, "limit" },
	{ "limit=+5", BAD, 0, 0, "limit" },
	{ "limit=%2B5", BAD, 0, 0, "limit" },
	{ "after=-0", BAD, 0, 0, "after" },
	{ "after=-1", BAD, 0, 0, "after" },
	/* Spaces, raw or encoded, before or after. */
	{ "limit= 5", BAD, 0, 0, "limit" },
	{ "limit=5 ", BAD, 0, 0, "limit" },
	{ "limit=%205", BAD, 0, 0, "limit" },
	{ "limit=5%20", BAD, 0, 0, "limit" },
	{ "limit=5+", BAD, 0, 0, "limit" },
	{ "limit=%095", BAD, 0, 0, "limit" },
	/* Other notations of numbers. */
	{ "limit=0x10", BAD, 0, 0, "limit" },
	{ "limit=1e2", BAD, 0, 0, "limit" },
	{ "limit=1E2", BAD, 0, 0, "limit" },
	{ "limit=10.0", BAD, 0, 0, "limit" },
	{ "limit=10abc", BAD, 0, 0, "limit" },
	{ "limit=abc", BAD, 0, 0, "limit" },
	{ "after=5%00", BAD, 0, 0, "after" },
	{ "limit=5;after=3", BAD, 0, 0, "limit" },
	/* Leading zeros still spell a decimal integer. */
	{ "limit=007", OK, 7, 0, NULL },
	/* Percent-escapes are decoded first (RFC 3986 section 2.1), in names too. */
	{ "limit=%31%30", OK, 10, 0, NULL },
	{ "%6Cimit=7", OK, 7, 0, NULL },
	{ "%61fter=3", OK, 100, 3, NULL },
	{ "limit=%3", BAD, 0, 0, "limit" },
	{ "limit=%zz", BAD, 0, 0, "limit" },
	{ "limit=%", BAD, 0, 0, "limit" },
	/* Anything else is ignored, malformed or repeated. */
	{ "foo=bar&limit=3", OK, 3, 0, NULL },
	{ "foo&bar=&limit=3&x=%zz&%zz=1", OK, 3, 0, NULL },
	{ "foo=1&foo=2", OK, 100, 0, NULL },
	{ "&&limit=2&&", OK, 2, 0, NULL },
	{ "LIMIT=5", OK, 100, 0, NULL },
	{ "limitx=5&xlimit=5&after_=5", OK, 100, 0, NULL },
	{ "a_rather_long_parameter_name_that_is_not_ours=1&limit=9", OK, 9, 0,
	    NULL },
	/* "limit%00x" decodes to "limit", NUL, "x": another name, so ignored. */
	{ "limit%00x=abc", OK, 100, 0, NULL },
};

static void
test_page(void)
{
	const struct page_case *c;
	struct page page;
	char reason[128];
	char label[160];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(page_cases) / sizeof(page_cases[0]); i++) {
		c = &page_cases[i];
		snprintf(label, sizeof(label), "query \"%s\"", c->query);
		CHECK_CASE(label);
		page.limit = -1;
		page.after = -1;
		reason[0] = '\0';
		rc = params_parse_page(c->query, &page, reason, sizeof(reason));
		if (c->ok) {
			CHECK_INT_EQ(rc, 0);
			CHECK_INT_EQ(page.limit, c->limit);
			CHECK_INT_EQ(page.after, c->after);
		} else {
			CHECK_INT_EQ(rc, -1);
			CHECK_STR_CONTAINS(reason, c->reason);
		}
	}
	CHECK_CASE(NULL);
}

/* A reason that does not fit is cut, not overflowed. */
static void
test_page_short_reason(void)
{
	char reason[8];
	struct page page;

	memset(reason, 'x', sizeof(reason));
	CHECK_INT_EQ(params_parse_page("limit=0", &page, reason,
	    sizeof(reason)), -1);
	CHECK(memchr(reason, '\0', sizeof(reason)) != NULL);
}

struct id_case {
	const char	*segment;
	int		 ok;
	int32_t		 id;
};

static const struct id_case id_cases[] = {
	{ "1", OK, 1 },
	{ "42", OK, 42 },
	{ "2147483647", OK, INT32_MAX },
	{ "007", OK, 7 },
	{ "0", BAD, 0 },
	{ "00", BAD, 0 },
	{ "2147483648", BAD, 0 },
	{ "4294967297", BAD, 0 },
	{ "99999999999999999999", BAD, 0 },
	{ "", BAD, 0 },
	{ "+1", BAD, 0 },
	{ "-1", BAD, 0 },
	{ "-0", BAD, 0 },
	{ " 1", BAD, 0 },
	{ "1 ", BAD, 0 },
	{ "1a", BAD, 0 },
	{ "1/", BAD, 0 },
	{ "1/2", BAD, 0 },
	{ "0x1", BAD, 0 },
	{ "1e3", BAD, 0 },
	{ "1.0", BAD, 0 },
	{ "abc", BAD, 0 },
	{ "%31", BAD, 0 },
};

static void
test_id(void)
{
	const struct id_case *c;
	char label[64];
	int32_t id;
	size_t i;

	for (i = 0; i < sizeof(id_cases) / sizeof(id_cases[0]); i++) {
		c = &id_cases[i];
		snprintf(label, sizeof(label), "id \"%s\"", c->segment);
		CHECK_CASE(label);
		id = -7;
		if (c->ok) {
			CHECK_INT_EQ(params_parse_id(c->segment, &id), 0);
			CHECK_INT_EQ(id, c->id);
		} else {
			CHECK_INT_EQ(params_parse_id(c->segment, &id), -1);
			/* Nothing is stored on failure. */
			CHECK_INT_EQ(id, -7);
		}
	}
	CHECK_CASE(NULL);
}

int
main(void)
{
	test_page();
	test_page_short_reason();
	test_id();
	return check_finish();
}
