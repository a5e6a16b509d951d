/*
 * HTTP entity tags (RFC 9110 section 8.8.3) and the evaluation of If-Match
 * and If-None-Match field values (sections 13.1.1 and 13.1.2) against them.
 * Pure: no allocation, no I/O, no global state.
 */
#ifndef ITEMS_ETAG_H
#define ITEMS_ETAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The tag of an item's state: a 64-bit row version as 16 lowercase hex digits, quoted. */
#define ETAG_BUF_SIZE	19	/* 16 hex + 2 quotes + NUL */

enum etag_status {
	ETAG_OK = 0,
	ETAG_MALFORMED = 1,
};

/* Section 8.8.3.2: If-Match compares strongly, If-None-Match weakly. */
enum etag_compare {
	ETAG_STRONG,
	ETAG_WEAK,
};

/*
 * Writes the strong entity-tag of version into out, NUL-terminated:
 * "\"0123456789abcdef\"" (always ETAG_BUF_SIZE bytes with the NUL).
 */
void	etag_format(uint64_t version, char out[ETAG_BUF_SIZE]);

/*
 * Evaluates an If-Match (ETAG_STRONG) or If-None-Match (ETAG_WEAK) field
 * value, field[0..len) (borrowed, not NUL-terminated, never read past
 * field[len - 1], never copied), against the current entity-tag current (a
 * borrowed C string as etag_format() writes it, quotes included; NULL when
 * the resource does not exist).
 *
 * The value is "*" or a comma-separated list of entity-tags (section 5.6.1:
 * OWS around the commas, empty elements allowed), each "opaque" or
 * W/"opaque" (W/ case-sensitive) with opaque = *( %x21 / %x23-7E / %x80-FF ).
 * Returns ETAG_OK and sets *matched: "*" matches any existing resource
 * (current != NULL); a listed tag matches when its opaque part equals
 * current's and, for ETAG_STRONG, neither is weak. A current that is not
 * itself a valid entity-tag matches no listed tag.
 *
 * Returns ETAG_MALFORMED, with *matched false, for anything else: an empty
 * value or one of only white space and commas (no entity-tag), "*" with
 * other elements, a missing quote, a byte outside opaque (NUL, CR, LF, ...),
 * W/ without a quoted tag, junk or white space without a comma between tags.
 */
enum etag_status etag_list_match(const char *field, size_t len,
	    const char *current, enum etag_compare cmp, bool *matched);

#endif
