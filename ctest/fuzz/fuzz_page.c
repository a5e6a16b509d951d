/*
 * params_parse_page(): the query string of GET /items (limit, after).
 * Oracle: docs/api.md "Pagination", modelled per parameter rather than in
 * one pass over the query like params.c: for each of "limit" and "after",
 * the model lists the fields (split on '&') whose name, percent-decoded
 * ('+' is a space), is exactly that name, byte for byte; fields with any
 * other name, or whose name has a bad escape, are other parameters and
 * ignored. The parameter is at fault at its first field when that field
 * has no '=', a bad escape in its value, or a decoded value that fuzz.h's
 * integer rule refuses (limit 1..1000, after 0..INT64_MAX), else at its
 * second field (given twice). The query is refused (400) when either
 * parameter is at fault, and the reason starts with the name of the one at
 * fault first in the query; accepted, each value prints as the digits sent
 * (or the default: limit 100, after 0). Decoded values longer than 63 bytes
 * are refused (params.c's cap; no valid value needs that many digits unless
 * padded with zeros).
 */
#include <ctype.h>

#include "fuzz.h"
#include "json.h"
#include "params.h"

#define MODEL_VALUE_MAX	63
#define NO_FAULT	((size_t)-1)

/*
 * Decodes s[0..len) into out (room for len + 1 bytes), NUL-terminated;
 * -1 when a '%' is not followed by two hex digits (RFC 3986 section 2.1).
 */
static int
form_decode(const char *s, size_t len, char *out, size_t *out_len)
{
	static const char hex[16] = "0123456789abcdef";	/* no NUL */
	const char *hi, *lo;
	size_t i = 0, n = 0;

	while (i < len) {
		if (s[i] != '%') {
			if (s[i] == '+')
				out[n++] = ' ';
			else
				out[n++] = s[i];
			i++;
			continue;
		}
		if (i + 2 >= len)
			return -1;
		hi = memchr(hex, tolower((unsigned char)s[i + 1]), sizeof(hex));
		lo = memchr(hex, tolower((unsigned char)s[i + 2]), sizeof(hex));
		if (hi == NULL || lo == NULL)
			return -1;
		out[n++] = (char)((hi - hex) << 4 | (lo - hex));
		i += 3;
	}
	out[n] = '\0';
	*out_len = n;
	return 0;
}

struct model_param {
	const char	*name;
	const char	*min, *max;	/* decimal texts */
	char		 digits[MODEL_VALUE_MAX + 1];	/* value as sent */
	size_t		 fault;		/* field index, or NO_FAULT */
};

/*
 * Sets p->fault to the index of the field where the contract first refuses
 * p->name in query, or NO_FAULT; p->digits to the value's significant
 * digits when it was given once and valid. buf: room for the query.
 */
static void
model_param(const char *query, struct model_param *p, char *buf)
{
	const char *field = query, *end, *eq, *digits;
	size_t k, len, ndigits, seen = 0, name_len = strlen(p->name);

	p->fault = NO_FAULT;
	for (k = 0;; k++) {
		end = strchr(field, '&');
		if (end == NULL)
			end = field + strlen(field);
		eq = memchr(field, '=', (size_t)(end - field));
		if (eq == NULL)
			eq = end;
		/* Each byte decoded comes from 1 or 3 bytes: skip the others. */
		if ((size_t)(eq - field) >= name_len &&
		    (size_t)(eq - field) <= 3 * name_len &&
		    form_decode(field, (size_t)(eq - field), buf, &len) == 0 &&
		    len == name_len && memcmp(buf, p->name, len) == 0) {
			if (seen++ > 0 || eq == end ||
			    form_decode(eq + 1, (size_t)(end - eq - 1), buf,
			    &len) == -1 || len > MODEL_VALUE_MAX ||
			    !fuzz_decimal_in_range(buf, len, p->min, p->max,
			    &digits, &ndigits)) {
				p->fault = k;
				return;
			}
			memcpy(p->digits, digits, ndigits);
			p->digits[ndigits] = '\0';
		}
		if (*end == '\0')
			return;
		field = end + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *query = fuzz_cstring(data, size), *body, *buf;
	char reason[128];	/* as in handler_items.c */
	struct model_param limit = { "limit", "1", "1000", "100", NO_FAULT };
	struct model_param after = { "after", "0", "9223372036854775807", "0",
	    NO_FAULT };
	struct page page = { -1, -1 };
	const char *bad;
	int rc;

	buf = calloc(strlen(query) + 1, 1);
	if (buf == NULL)
		abort();
	memset(reason, 'X', sizeof(reason));
	rc = params_parse_page(query, &page, reason, sizeof(reason));
	model_param(query, &limit, buf);
	model_param(query, &after, buf);
	FUZZ_CHECK(rc == 0 || rc == -1, "returns 0 or -1");
	FUZZ_CHECK((rc == 0) == (limit.fault == NO_FAULT &&
	    after.fault == NO_FAULT), "accepts exactly what the contract accepts");
	if (rc == 0) {
		FUZZ_CHECK(fuzz_prints_as(page.limit, limit.digits,
		    strlen(limit.digits)), "limit as sent");
		FUZZ_CHECK(fuzz_prints_as(page.after, after.digits,
		    strlen(after.digits)), "after as sent");
	} else {
		bad = limit.fault < after.fault ? limit.name : after.name;
		FUZZ_CHECK(memchr(reason, '\0', sizeof(reason)) != NULL,
		    "reason terminated");
		FUZZ_CHECK(strncmp(reason, bad, strlen(bad)) == 0 &&
		    reason[strlen(bad)] == ':', "reason names the parameter");
		body = json_encode_error(reason);
		FUZZ_CHECK(body != NULL, "reason encodes as a JSON error body");
		free(body);
	}
	free(buf);
	free(query);
	return 0;
}
