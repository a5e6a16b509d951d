/*
 * auth.c: Authorization: Bearer <token> (RFC 6750 section 2.1).
 * No token configured: writes are disabled (403). No usable header: 401.
 * A token that differs anywhere, including by length: 401.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "check.h"

struct auth_case {
	const char		*configured;
	const char		*header;
	enum auth_result	 want;
};

static const struct auth_case auth_cases[] = {
	/* Nothing configured wins over whatever the client sends. */
	{ NULL, NULL, AUTH_DISABLED },
	{ NULL, "", AUTH_DISABLED },
	{ NULL, "Bearer s3cret", AUTH_DISABLED },
	/* No usable header. */
	{ "s3cret", NULL, AUTH_MISSING },
	{ "s3cret", "", AUTH_MISSING },
	{ "s3cret", "s3cret", AUTH_MISSING },
	{ "s3cret", "Basic czNjcmV0", AUTH_MISSING },
	{ "s3cret", "Token s3cret", AUTH_MISSING },
	{ "s3cret", "Bearer", AUTH_MISSING },
	{ "s3cret", "Bearer ", AUTH_MISSING },
	{ "s3cret", "Bearer     ", AUTH_MISSING },
	{ "s3cret", "Bearers3cret", AUTH_MISSING },
	/* credentials = auth-scheme 1*SP token68 (RFC 9110 section 11.4). */
	{ "s3cret", "Bearer\ts3cret", AUTH_MISSING },
	/* The scheme is case-insensitive (RFC 9110 section 11.1). */
	{ "s3cret", "Bearer s3cret", AUTH_OK },
	{ "s3cret", "bearer s3cret", AUTH_OK },
	{ "s3cret", "BEARER s3cret", AUTH_OK },
	{ "s3cret", "bEaReR s3cret", AUTH_OK },
	/* More than one space after the scheme. */
	{ "s3cret", "Bearer   s3cret", AUTH_OK },
	/* The token itself is compared exactly. */
	{ "s3cret", "Bearer S3CRET", AUTH_WRONG },
	{ "s3cret", "Bearer x", AUTH_WRONG },
	{ "s3cret", "Bearer s3cre", AUTH_WRONG },
	{ "s3cret", "Bearer s", AUTH_WRONG },
	{ "s3cret", "Bearer 3cret", AUTH_WRONG },
	{ "s3cret", "Bearer s3cret!", AUTH_WRONG },
	{ "s3cret", "Bearer s3crets3cret", AUTH_WRONG },
	{ "s3cret", "Bearer s3cret s3cret", AUTH_WRONG },
	{ "s3cret", "Bearer xs3cret", AUTH_WRONG },
	{ "s3cret", "Bearer s3creT", AUTH_WRONG },
	/* The secret's first byte stands in for missing ones: no false match. */
	{ "aaaa", "Bearer a", AUTH_WRONG },
	{ "aaaa", "Bearer aaa", AUTH_WRONG },
	{ "a", "Bearer aa", AUTH_WRONG },
	{ "a", "Bearer a", AUTH_OK },
};

static const char *
result_name(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:		return "AUTH_OK";
	case AUTH_DISABLED:	return "AUTH_DISABLED";
	case AUTH_MISSING:	return "AUTH_MISSING";
	case AUTH_WRONG:	return "AUTH_WRONG";
	}
	return "?";
}

static void
test_table(void)
{
	const struct auth_case *c;
	char label[128];
	size_t i;

	for (i = 0; i < sizeof(auth_cases) / sizeof(auth_cases[0]); i++) {
		c = &auth_cases[i];
		snprintf(label, sizeof(label), "configured %s%s%s, header %s%s%s",
		    c->configured ? "\"" : "", c->configured ? c->configured :
		    "NULL", c->configured ? "\"" : "", c->header ? "\"" : "",
		    c->header ? c->header : "NULL", c->header ? "\"" : "");
		CHECK_CASE(label);
		CHECK_STR_EQ(result_name(auth_check(c->configured, c->header)),
		    result_name(c->want));
	}
	CHECK_CASE(NULL);
}

/* A token as long as a generated one (openssl rand -hex 32) and longer. */
static void
test_long_tokens(void)
{
	char token[4097], header[4200];

	memset(token, 'k', sizeof(token) - 1);
	token[sizeof(token) - 1] = '\0';
	snprintf(header, sizeof(header), "Bearer %s", token);
	CHECK_INT_EQ(auth_check(token, header), AUTH_OK);
	/* Differs in the last byte only. */
	header[strlen(header) - 1] = 'j';
	CHECK_INT_EQ(auth_check(token, header), AUTH_WRONG);
	/* One byte short. */
	header[strlen(header) - 1] = '\0';
	CHECK_INT_EQ(auth_check(token, header), AUTH_WRONG);
}

int
main(void)
{
	test_table();
	test_long_tokens();
	return check_finish();
}
