/*
 * Shared by the libFuzzer harnesses of ctest/fuzz/. Each harness feeds one
 * parser of fcgi-app/src with outside input and checks, besides "no crash and
 * no sanitizer report", an oracle: what the contract (docs/api.md) says the
 * parser must decide, computed by a small independent model in the harness.
 * A broken oracle aborts, so libFuzzer keeps the input as a crash.
 */
#ifndef ITEMS_FUZZ_H
#define ITEMS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int	LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, what) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "oracle failed: %s (%s) at %s:%d\n",	\
		    (what), #cond, __FILE__, __LINE__);			\
		abort();						\
	}								\
} while (0)

/*
 * A malloc'd copy of the input up to its first NUL, NUL-terminated: what
 * the worker gets from a FastCGI parameter (a C string). Sized exactly, so
 * that ASan sees any read past the end.
 */
static inline char *
fuzz_cstring(const uint8_t *data, size_t size)
{
	const void *nul = memchr(data, '\0', size);
	size_t len = nul != NULL ? (size_t)((const uint8_t *)nul - data) : size;
	char *s = calloc(len + 1, 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, data, len);
	return s;
}

/* Compares the decimal texts a[0..alen) and b (no leading zeros), as numbers. */
static inline int
fuzz_decimal_cmp(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/*
 * The contract's integer rule (docs/api.md: "{id}" and "Pagination"), the
 * one model the id and page harnesses share. Written as a pattern and a
 * comparison of texts, not as params.c's digit-by-digit arithmetic: s[0..len)
 * must match ^0*([0-9]+)$ (plain ASCII digits: no sign, space, exponent or
 * NUL; leading zeros allowed), and the significant digits, compared as text
 * (more digits is larger, as many compare like strings), must lie within
 * [min, max] (decimal texts without leading zeros). Returns 1 and in
 * *digits, *ndigits those significant digits ("0" for zero), which is what
 * printf("%d") of the parsed value must write; else 0.
 */
static inline int
fuzz_decimal_in_range(const char *s, size_t len, const char *min,
    const char *max, const char **digits, size_t *ndigits)
{
	static const char decimal[10] = "0123456789";	/* no NUL */
	size_t lead = 0, i;

	if (len == 0)
		return 0;
	/* ^0*: all the zeros but the last digit. */
	while (lead + 1 < len && s[lead] == '0')
		lead++;
	/* [0-9]+$, each byte looked up in the class (memchr: never the NUL). */
	for (i = lead; i < len; i++)
		if (memchr(decimal, s[i], sizeof(decimal)) == NULL)
			return 0;
	if (fuzz_decimal_cmp(s + lead, len - lead, min) < 0 ||
	    fuzz_decimal_cmp(s + lead, len - lead, max) > 0)
		return 0;
	*digits = s + lead;
	*ndigits = len - lead;
	return 1;
}

/* True when the decimal text of v is exactly digits[0..ndigits). */
static inline int
fuzz_prints_as(long long v, const char *digits, size_t ndigits)
{
	char text[24];
	int n = snprintf(text, sizeof(text), "%lld", v);

	return n > 0 && (size_t)n == ndigits && memcmp(text, digits, ndigits) == 0;
}

/* True when s[0..len) is well-formed UTF-8 (RFC 3629), counted in *chars. */
static inline int
fuzz_valid_utf8(const unsigned char *s, size_t len, size_t *chars)
{
	size_t i = 0, n, k;
	uint32_t cp;

	*chars = 0;
	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			(*chars)++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			n = 2;
			cp = s[i] & 0x1fu;
		} else if ((s[i] & 0xf0) == 0xe0) {
			n = 3;
			cp = s[i] & 0x0fu;
		} else if ((s[i] & 0xf8) == 0xf0) {
			n = 4;
			cp = s[i] & 0x07u;
		} else
			return 0;
		if (len - i < n)
			return 0;
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
		    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
		(*chars)++;
	}
	return 1;
}

#endif
