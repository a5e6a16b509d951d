#include "params.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Longer values are refused before decoding; no valid value comes close. */
#define PARAM_VALUE_MAX 64

/* Decimal digits only: no sign, no space, no exponent. */
static int
parse_decimal(const char *s, size_t len, int64_t max, int64_t *out)
{
	int64_t value = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (value > (max - (s[i] - '0')) / 10)
			return -1;
		value = value * 10 + (s[i] - '0');
	}
	*out = value;
	return 0;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes application/x-www-form-urlencoded text; -1 on a bad escape or overflow. */
static int
url_decode(const char *s, size_t len, char *out, size_t out_size,
    size_t *out_len)
{
	size_t i, n = 0;
	int hi, lo;

	for (i = 0; i < len; i++) {
		if (n + 1 >= out_size)
			return -1;
		if (s[i] == '+')
			out[n++] = ' ';
		else if (s[i] == '%') {
			if (len - i < 3)
				return -1;
			hi = hex_value(s[i + 1]);
			lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[n++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			out[n++] = s[i];
	}
	out[n] = '\0';
	*out_len = n;
	return 0;
}

struct page_param {
	const char	*name;
	int64_t		 min;
	int64_t		 max;
	bool		 seen;
	int64_t		 value;
};

int
params_parse_page(const char *query, struct page *page, char *reason,
    size_t reason_size)
{
	struct page_param params[] = {
		{ "limit", 1, PAGE_LIMIT_MAX, false, PAGE_LIMIT_DEFAULT },
		{ "after", 0, INT64_MAX, false, 0 },
	};
	char name[16], value[PARAM_VALUE_MAX];
	const char *field, *end, *eq;
	size_t name_len, value_len, i;
	struct page_param *p;

	for (field = query; *field != '\0'; field = *end ? end + 1 : end) {
		end = field + strcspn(field, "&");
		if (end == field)
			continue;
		eq = memchr(field, '=', (size_t)(end - field));
		if (eq == NULL)
			eq = end;
		if (url_decode(field, (size_t)(eq - field), name, sizeof(name),
		    &name_len) == -1)
			continue;	/* not one of ours: too long or malformed */
		p = NULL;
		/* The length too: "limit%00x" decodes to another name. */
		for (i = 0; i < sizeof(params) / sizeof(params[0]); i++)
			if (name_len == strlen(params[i].name) &&
			    memcmp(name, params[i].name, name_len) == 0)
				p = &params[i];
		if (p == NULL)
			continue;
		if (p->seen) {
			snprintf(reason, reason_size,
			    "%s: given more than once", p->name);
			return -1;
		}
		p->seen = true;
		if (eq == end || url_decode(eq + 1, (size_t)(end - eq - 1),
		    value, sizeof(value), &value_len) == -1 ||
		    parse_decimal(value, value_len, p->max, &p->value) == -1 ||
		    p->value < p->min) {
			snprintf(reason, reason_size,
			    "%s: must be a decimal integer from %lld to %lld",
			    p->name, (long long)p->min, (long long)p->max);
			return -1;
		}
	}
	page->limit = (int)params[0].value;
	page->after = params[1].value;
	return 0;
}

int
params_parse_id(const char *segment, int32_t *id)
{
	int64_t value;

	if (parse_decimal(segment, strlen(segment), INT32_MAX, &value) == -1 ||
	    value < 1)
		return -1;
	*id = (int32_t)value;
	return 0;
}
