/* UTF-8 decoding (RFC 3629) shared by the JSON validator and the log writer. */
#ifndef ITEMS_UTF8_H
#define ITEMS_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decodes the code point at s[0..len). Returns the number of bytes it takes
 * (1..4) and stores it in *cp, or returns 0 for an invalid sequence (overlong
 * forms, surrogates, values above U+10FFFF, truncation).
 */
size_t	utf8_decode(const char *s, size_t len, uint32_t *cp);

/* Unicode's White_Space property (PropList.txt). */
bool	utf8_is_space(uint32_t cp);

#endif
