/* Parsing of what the URL carries: the page query and the item id segment. */
#ifndef ITEMS_PARAMS_H
#define ITEMS_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_LIMIT_DEFAULT	100
#define PAGE_LIMIT_MAX		1000

struct page {
	int64_t	after;		/* items with id > after */
	int	limit;		/* 1..PAGE_LIMIT_MAX */
};

/*
 * Parses "limit" and "after" from a raw query string (RFC 3986 section 3.4;
 * percent-escapes and '+' are decoded). Parameters other than these two are
 * ignored. Returns 0, or -1 with the reason in reason[] for a value that is
 * not a plain decimal integer in range, an empty value, or a repeated name.
 */
int	params_parse_page(const char *query, struct page *page, char *reason,
	    size_t reason_size);

/*
 * Parses the {id} path segment: a decimal integer in 1..INT32_MAX, digits
 * only. Returns 0 and stores it, or -1.
 */
int	params_parse_id(const char *segment, int32_t *id);

#endif
