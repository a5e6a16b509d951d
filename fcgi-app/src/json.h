/*
 * JSON in and out of the API; the only file that uses jansson.
 * Every char * returned is new: malloc'd, NUL-terminated, owned by the
 * caller (free()); NULL means memory ran out.
 */
#ifndef ITEMS_JSON_H
#define ITEMS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "item.h"

#include "buf.h"

char	*json_encode_error(const char *reason);
char	*json_encode_item(const struct item *item);
/* Appends an item's JSON object to b (a failure is sticky in b, see buf.h). */
void	 json_add_item(struct buf *b, const struct item *item);
/* The /status body: status and database_connection "OK" or "KO", and a message. */
char	*json_encode_status(bool ok, const char *message);

/*
 * Validates a POST/PUT body against the contract (one object; "name" a string
 * of 1..255 code points that is not only white space; "description" a string
 * of at most 65535 bytes, or null, or absent; nothing else) and fills *out,
 * which the caller then owns (item_input_finish()).
 * Returns 0, or -1 with a reason naming the field or the problem in reason[];
 * *out is then left empty.
 */
int	json_parse_item_input(const char *body, size_t len,
	    struct item_input *out, char *reason, size_t reason_size);

#endif
