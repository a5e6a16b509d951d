/*
 * etag_list_match(): an If-Match or If-None-Match field value, all of the
 * input (NULs included), in a heap buffer of exactly its size; each input is
 * evaluated under both comparisons against a few current tags (none, strong,
 * weak, empty). etag_format(): the first 8 bytes as a version.
 * Oracle (RFC 9110 sections 8.8.3, 13.1.1, 13.1.2), written as "split, then
 * check each piece" rather than etag.c's left-to-right scan: the value less
 * OWS at both ends is "*" (a match when the resource exists), or it is cut
 * at the commas outside quotes, each piece less its OWS is empty or
 * DQUOTE *etagc DQUOTE with an optional "W/" before, and at least one piece
 * is a tag; a tag matches when its opaque part equals the current one and,
 * strongly, neither is weak. Anything else is malformed and matches
 * nothing. etag_format() writes what printf("\"%016" PRIx64 "\"") does.
 */
#include <inttypes.h>
#include <stdbool.h>

#include "etag.h"
#include "fuzz.h"

/* The current tags: the text given, and its parts as the model knows them. */
static const struct {
	const char	*text;		/* NULL: no resource */
	const char	*opaque;
	bool		 weak;
} currents[] = {
	{ NULL, NULL, false },
	{ "\"0123456789abcdef\"", "0123456789abcdef", false },
	{ "W/\"0123456789abcdef\"", "0123456789abcdef", true },
	{ "\"a\"", "a", false },
	{ "\"\"", "", false },
	{ "W/\"a,b\"", "a,b", true },
};

/* The characters that may appear between the quotes (section 8.8.3). */
static bool
model_etagc(unsigned char c)
{
	return c > 0x20 && c != '"' && c != 0x7f;
}

static bool
model_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Narrows s[*a..*b) to leave out OWS at both ends. */
static void
model_trim(const unsigned char *s, size_t *a, size_t *b)
{
	while (*a < *b && model_ows(s[*a]))
		(*a)++;
	while (*b > *a && model_ows(s[*b - 1]))
		(*b)--;
}

/* One list element, OWS trimmed, s[0..len): is it a tag, and which? */
static bool
model_tag(const unsigned char *s, size_t len, bool *weak,
    const unsigned char **opaque, size_t *olen)
{
	size_t i;

	*weak = len >= 2 && memcmp(s, "W/", 2) == 0;
	if (*weak) {
		s += 2;
		len -= 2;
	}
	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return false;
	for (i = 1; i + 1 < len; i++)
		if (!model_etagc(s[i]))
			return false;
	*opaque = s + 1;
	*olen = len - 2;
	return true;
}

/* 1 malformed, else 0 with *matched set. */
static int
model_match(const unsigned char *s, size_t len, size_t cur, bool strong,
    bool *matched)
{
	const unsigned char *opaque;
	size_t start = 0, i, a, b, olen, tags = 0;
	bool quoted = false, weak;

	*matched = false;
	a = 0;
	b = len;
	model_trim(s, &a, &b);
	if (b - a == 1 && s[a] == '*') {
		*matched = currents[cur].text != NULL;
		return 0;
	}
	/* Pieces end at the commas outside quotes, and at the end. */
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] == '"')
			quoted = !quoted;
		if (i < len && (quoted || s[i] != ','))
			continue;
		a = start;
		b = i;
		start = i + 1;
		model_trim(s, &a, &b);
		if (a == b)
			continue;
		if (!model_tag(s + a, b - a, &weak, &opaque, &olen)) {
			*matched = false;
			return 1;
		}
		tags++;
		if (currents[cur].text != NULL &&
		    olen == strlen(currents[cur].opaque) &&
		    memcmp(opaque, currents[cur].opaque, olen) == 0 &&
		    (!strong || (!weak && !currents[cur].weak)))
			*matched = true;
	}
	if (tags == 0) {
		*matched = false;
		return 1;
	}
	return 0;
}

static void
check_format(const uint8_t *data, size_t size)
{
	char got[ETAG_BUF_SIZE + 1], want[32];
	uint64_t version = 0;
	size_t i;
	bool matched = false;

	if (size < 8)
		return;
	for (i = 0; i < 8; i++)
		version = version << 8 | data[i];
	got[ETAG_BUF_SIZE] = 'x';
	etag_format(version, got);
	snprintf(want, sizeof(want), "\"%016" PRIx64 "\"", version);
	FUZZ_CHECK(strcmp(got, want) == 0, "16 lowercase hex digits, quoted");
	FUZZ_CHECK(got[ETAG_BUF_SIZE] == 'x', "ETAG_BUF_SIZE bytes at most");
	FUZZ_CHECK(etag_list_match(got, strlen(got), got, ETAG_STRONG,
	    &matched) == ETAG_OK && matched, "a formatted tag matches itself");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size bytes (at least 1 for malloc): ASan sees overreads. */
	unsigned char *field = malloc(size > 0 ? size : 1);
	const char *f;
	enum etag_status st;
	size_t cur;
	int cmp, model_bad;
	bool matched, model_matched, strong_matched = false;

	if (field == NULL)
		abort();
	if (size > 0)
		memcpy(field, data, size);
	f = (const char *)field + (size > 0 ? 0 : 1);
	for (cur = 0; cur < sizeof(currents) / sizeof(currents[0]); cur++) {
		for (cmp = 0; cmp < 2; cmp++) {
			matched = cmp == 0;	/* must be overwritten */
			st = etag_list_match(f, size, currents[cur].text,
			    cmp == 0 ? ETAG_STRONG : ETAG_WEAK, &matched);
			model_bad = model_match((const unsigned char *)f,
			    size, cur, cmp == 0, &model_matched);
			FUZZ_CHECK(st == ETAG_OK || st == ETAG_MALFORMED,
			    "one of the two statuses");
			FUZZ_CHECK((st == ETAG_MALFORMED) == (model_bad == 1),
			    "malformed exactly when the grammar says so");
			FUZZ_CHECK(matched == model_matched,
			    "the match the comparison function decides");
			FUZZ_CHECK(st == ETAG_OK || !matched,
			    "a malformed field matches nothing");
			if (cmp == 0)
				strong_matched = matched;
			else
				FUZZ_CHECK(!strong_matched || matched,
				    "a strong match is also a weak one");
		}
	}
	free(field);
	check_format(data, size);
	return 0;
}
