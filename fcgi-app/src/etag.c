#include "etag.h"

#include <string.h>

/* An entity-tag, as parsed: where its opaque part lies, and whether it is weak. */
struct etag_span {
	const char	*opaque;	/* between the quotes */
	size_t		 len;
	bool		 weak;
};

void
etag_format(uint64_t version, char out[ETAG_BUF_SIZE])
{
	static const char hex[16] = "0123456789abcdef";	/* no NUL */
	int i;

	out[0] = '"';
	for (i = 16; i >= 1; i--) {
		out[i] = hex[version & 0xf];
		version >>= 4;
	}
	out[17] = '"';
	out[18] = '\0';
}

/* OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3). */
static bool
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* etagc = %x21 / %x23-7E / obs-text (section 8.8.3): not '"', SP, CTL or DEL. */
static bool
is_etagc(char c)
{
	unsigned char u = (unsigned char)c;

	return u == 0x21 || (u >= 0x23 && u <= 0x7e) || u >= 0x80;
}

/*
 * entity-tag = [ weak ] opaque-tag, weak = %s"W/", opaque-tag = DQUOTE
 * *etagc DQUOTE (section 8.8.3), at the start of s[0..len). Returns the
 * number of bytes it takes and fills *tag, or 0 when s does not start with
 * one. The first '"' after the opening one closes the tag (etagc has none),
 * so no proper prefix of a tag is a tag.
 */
static size_t
parse_tag(const char *s, size_t len, struct etag_span *tag)
{
	size_t i = 0, start;

	tag->weak = false;
	if (len >= 2 && s[0] == 'W' && s[1] == '/') {
		tag->weak = true;
		i = 2;
	}
	if (i >= len || s[i] != '"')
		return 0;
	start = ++i;
	while (i < len && is_etagc(s[i]))
		i++;
	if (i >= len || s[i] != '"')
		return 0;
	tag->opaque = s + start;
	tag->len = i - start;
	return i + 1;
}

/*
 * Section 8.8.3.2: two tags match weakly when their opaque parts are equal,
 * strongly when, in addition, neither is weak.
 */
static bool
tags_match(const struct etag_span *a, const struct etag_span *b,
    enum etag_compare cmp)
{
	if (cmp == ETAG_STRONG && (a->weak || b->weak))
		return false;
	return a->len == b->len && memcmp(a->opaque, b->opaque, a->len) == 0;
}

enum etag_status
etag_list_match(const char *field, size_t len, const char *current,
    enum etag_compare cmp, bool *matched)
{
	struct etag_span cur, tag;
	size_t i = 0, end = len, n, tags = 0;
	bool have_cur = false, found = false;

	*matched = false;
	if (field == NULL)
		return ETAG_MALFORMED;
	/* A field value has no leading or trailing white space (section 5.5). */
	while (i < end && is_ows(field[i]))
		i++;
	while (end > i && is_ows(field[end - 1]))
		end--;
	if (i == end)
		return ETAG_MALFORMED;
	/* If-Match = "*" / #entity-tag: "*" stands alone (sections 13.1.1, 13.1.2). */
	if (end - i == 1 && field[i] == '*') {
		*matched = current != NULL;
		return ETAG_OK;
	}
	if (current != NULL) {
		n = strlen(current);
		have_cur = n > 0 && parse_tag(current, n, &cur) == n;
	}
	/*
	 * #rule (section 5.6.1.2): 1#element => *( "," OWS ) element
	 * *( OWS "," [ OWS element ] ); empty elements are skipped. The whole
	 * list is checked, also past a match: a malformed field is refused.
	 */
	while (i < end) {
		if (field[i] == ',') {
			i++;
			while (i < end && is_ows(field[i]))
				i++;
			continue;
		}
		n = parse_tag(field + i, end - i, &tag);
		if (n == 0)
			return ETAG_MALFORMED;
		tags++;
		if (have_cur && tags_match(&tag, &cur, cmp))
			found = true;
		i += n;
		while (i < end && is_ows(field[i]))
			i++;
		if (i < end && field[i] != ',')
			return ETAG_MALFORMED;
	}
	/* Only commas and white space: no entity-tag at all. */
	if (tags == 0)
		return ETAG_MALFORMED;
	*matched = found;
	return ETAG_OK;
}
