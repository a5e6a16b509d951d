/*
 * params_parse_page(): the query string of GET /items (limit, after).
 * Oracle: a direct model of docs/api.md "Pagination": fields split on '&',
 * names and values percent-decoded ('+' is a space); only the names "limit"
 * and "after" (exactly, byte for byte) count, others are ignored; a counted
 * name given twice, without '=', with an empty value, with a bad escape, or
 * with anything but decimal digits in range is a 400 whose reason starts with
 * the parameter's name. Decoded values longer than 63 bytes are refused (the
 * parser's documented cap; no valid value needs that many digits unless
 * padded with zeros).
 */
#include <stdbool.h>

#include "fuzz.h"
#include "json.h"
#include "params.h"

#define MODEL_VALUE_MAX 63

struct model_param {
	const char	*name;
	const char	*max;		/* decimal text of the maximum */
	int64_t		 min;
	bool		 seen;
	int64_t		 value;
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s[0..len) into out (room for len bytes); -1 on a bad escape. */
static int
decode(const char *s, size_t len, char *out, size_t *out_len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			if (len - i < 3 || hexval(s[i + 1]) < 0 ||
			    hexval(s[i + 2]) < 0)
				return -1;
			out[n++] = (char)(hexval(s[i + 1]) * 16 +
			    hexval(s[i + 2]));
			i += 2;
		} else if (s[i] == '+')
			out[n++] = ' ';
		else
			out[n++] = s[i];
	}
	*out_len = n;
	return 0;
}

/* Digits only, compared as text against max (no overflow possible). */
static int
model_number(const char *s, size_t len, const struct model_param *p,
    int64_t *out)
{
	size_t i, max_len = strlen(p->max);
	int64_t v = 0;

	if (len == 0 || len > MODEL_VALUE_MAX)
		return -1;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	while (len > 1 && s[0] == '0') {
		s++;
		len--;
	}
	if (len > max_len || (len == max_len && memcmp(s, p->max, len) > 0))
		return -1;
	for (i = 0; i < len; i++)
		v = v * 10 + (s[i] - '0');
	if (v < p->min)
		return -1;
	*out = v;
	return 0;
}

/* Returns 0, or -1 with *bad set to the name of the parameter at fault. */
static int
model_page(const char *query, int *limit, int64_t *after, const char **bad)
{
	struct model_param params[2] = {
		{ "limit", "1000", 1, false, 100 },
		{ "after", "9223372036854775807", 0, false, 0 },
	};
	size_t qlen = strlen(query), name_len, value_len, i;
	char *name = calloc(qlen + 1, 1), *value = calloc(qlen + 1, 1);
	const char *field = query, *end, *eq;
	struct model_param *p;
	int rc = -1;

	if (name == NULL || value == NULL)
		abort();
	for (;;) {
		end = field + strcspn(field, "&");
		eq = memchr(field, '=', (size_t)(end - field));
		if (eq == NULL)
			eq = end;
		p = NULL;
		if (end > field && decode(field, (size_t)(eq - field), name,
		    &name_len) == 0)
			for (i = 0; i < 2; i++)
				if (name_len == strlen(params[i].name) &&
				    memcmp(name, params[i].name, name_len) == 0)
					p = &params[i];
		if (p != NULL) {
			*bad = p->name;
			if (p->seen || eq == end ||
			    decode(eq + 1, (size_t)(end - eq - 1), value,
			    &value_len) == -1 ||
			    model_number(value, value_len, p, &p->value) == -1)
				goto out;
			p->seen = true;
		}
		if (*end == '\0')
			break;
		field = end + 1;
	}
	*limit = (int)params[0].value;
	*after = params[1].value;
	rc = 0;
out:
	free(name);
	free(value);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *query = fuzz_cstring(data, size), *body;
	char reason[128];	/* as in handler_items.c */
	struct page page = { -1, -1 };
	const char *bad = NULL;
	int64_t after = 0;
	int limit = 0, rc, expected;

	memset(reason, 'X', sizeof(reason));
	rc = params_parse_page(query, &page, reason, sizeof(reason));
	expected = model_page(query, &limit, &after, &bad);
	FUZZ_CHECK(rc == 0 || rc == -1, "returns 0 or -1");
	FUZZ_CHECK(rc == expected, "accepts exactly what the contract accepts");
	if (rc == 0) {
		FUZZ_CHECK(page.limit == limit, "limit as sent");
		FUZZ_CHECK(page.after == after, "after as sent");
		FUZZ_CHECK(page.limit >= 1 && page.limit <= PAGE_LIMIT_MAX,
		    "limit in range");
		FUZZ_CHECK(page.after >= 0, "after in range");
	} else {
		FUZZ_CHECK(memchr(reason, '\0', sizeof(reason)) != NULL,
		    "reason terminated");
		FUZZ_CHECK(strncmp(reason, bad, strlen(bad)) == 0 &&
		    reason[strlen(bad)] == ':', "reason names the parameter");
		body = json_encode_error(reason);
		FUZZ_CHECK(body != NULL, "reason encodes as a JSON error body");
		free(body);
	}
	free(query);
	return 0;
}
