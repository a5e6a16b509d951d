#include "json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Keys are written in the order they are set (jansson keeps insertion order). */
static char *
json_dump_new(json_t *value)
{
	char *text;

	if (value == NULL)
		return NULL;
	text = json_dumps(value, JSON_COMPACT);
	json_decref(value);
	return text;
}

char *
json_encode_error(const char *reason)
{
	return json_dump_new(json_pack("{s:s}", "error", reason));
}

char *
json_encode_status(bool ok, const char *message)
{
	const char *word = ok ? "OK" : "KO";

	return json_dump_new(json_pack("{s:s, s:s, s:s}", "status", word,
	    "database_connection", word, "message", message));
}

/* Returns a new reference, or NULL when memory runs out. */
static json_t *
json_item_new(const struct item *item)
{
	return json_pack("{s:i, s:s, s:s?, s:s}", "id", (json_int_t)item->id,
	    "name", item->name, "description", item->description,
	    "created_at", item->created_at);
}

char *
json_encode_item(const struct item *item)
{
	return json_dump_new(json_item_new(item));
}

char *
json_encode_item_list(const struct item_list *list)
{
	json_t *array, *value;
	size_t i;

	array = json_array();
	if (array == NULL)
		return NULL;
	for (i = 0; i < list->count; i++) {
		value = json_item_new(&list->items[i]);
		if (json_array_append_new(array, value) == -1)
			goto fail;
	}
	return json_dump_new(array);
fail:
	json_decref(array);
	return NULL;
}

/* Counts code points; jansson has already rejected invalid UTF-8. */
static size_t
json_count_chars(const char *s, size_t len, bool *only_space)
{
	size_t count = 0, n;
	uint32_t cp;

	*only_space = true;
	while (len > 0) {
		n = utf8_decode(s, len, &cp);
		if (n == 0)
			n = 1;
		else if (!utf8_is_space(cp))
			*only_space = false;
		s += n;
		len -= n;
		count++;
	}
	return count;
}

static int
json_check_name(json_t *value, char *reason, size_t reason_size)
{
	const char *s;
	size_t len, chars;
	bool only_space;

	if (value == NULL) {
		snprintf(reason, reason_size, "name: is required");
		return -1;
	}
	if (!json_is_string(value)) {
		snprintf(reason, reason_size, "name: must be a string");
		return -1;
	}
	s = json_string_value(value);
	len = json_string_length(value);
	chars = json_count_chars(s, len, &only_space);
	if (chars == 0) {
		snprintf(reason, reason_size, "name: must not be empty");
		return -1;
	}
	if (chars > ITEM_NAME_MAX_CHARS) {
		snprintf(reason, reason_size,
		    "name: must be at most %d characters (got %zu)",
		    ITEM_NAME_MAX_CHARS, chars);
		return -1;
	}
	if (only_space) {
		snprintf(reason, reason_size,
		    "name: must not be only white space");
		return -1;
	}
	return 0;
}

static int
json_check_description(json_t *value, char *reason, size_t reason_size)
{
	if (value == NULL || json_is_null(value))
		return 0;
	if (!json_is_string(value)) {
		snprintf(reason, reason_size,
		    "description: must be a string or null");
		return -1;
	}
	if (json_string_length(value) > ITEM_DESCRIPTION_MAX_BYTES) {
		snprintf(reason, reason_size,
		    "description: must be at most %d bytes of UTF-8 (got %zu)",
		    ITEM_DESCRIPTION_MAX_BYTES, json_string_length(value));
		return -1;
	}
	return 0;
}

static int
json_check_keys(json_t *object, char *reason, size_t reason_size)
{
	const char *key;
	json_t *value;

	json_object_foreach(object, key, value) {
		if (strcmp(key, "name") == 0 || strcmp(key, "description") == 0)
			continue;
		/* Keys come from the client: quote only a short one. */
		if (strlen(key) <= 64)
			snprintf(reason, reason_size,
			    "unknown field \"%s\" (allowed: name, description)",
			    key);
		else
			snprintf(reason, reason_size,
			    "unknown field (allowed: name, description)");
		return -1;
	}
	return 0;
}

/*
 * A reason becomes a JSON string in the 400 body, so it must be valid UTF-8:
 * jansson quotes the input near a syntax error and may cut a multi-byte
 * sequence there (or quote invalid bytes). Every byte that does not start a
 * valid sequence, and every control character, becomes '?'.
 */
static void
json_reason_sanitize(char *s)
{
	size_t len = strlen(s), n;
	uint32_t cp;

	while (len > 0) {
		n = utf8_decode(s, len, &cp);
		if (n == 0 || cp < 0x20 || cp == 0x7f) {
			*s = '?';
			n = 1;
		}
		s += n;
		len -= n;
	}
}

static char *
json_strdup_or_null(json_t *value, int *failed)
{
	char *copy;

	if (value == NULL || json_is_null(value))
		return NULL;
	copy = strdup(json_string_value(value));
	if (copy == NULL)
		*failed = 1;
	return copy;
}

int
json_parse_item_input(const char *body, size_t len, struct item_input *out,
    char *reason, size_t reason_size)
{
	json_error_t error;
	json_t *root;
	int failed = 0;

	out->name = NULL;
	out->description = NULL;
	/* RFC 8259 section 4: names SHOULD be unique; we make it a MUST. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &error);
	if (root == NULL) {
		/* jansson's own text for this one names a library flag. */
		if (json_error_code(&error) == json_error_null_character)
			snprintf(error.text, sizeof(error.text),
			    "\\u0000 is not allowed in a string");
		snprintf(reason, reason_size,
		    "invalid JSON: %s (line %d, column %d)", error.text,
		    error.line, error.column);
		json_reason_sanitize(reason);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(reason, reason_size, "body must be a JSON object");
		goto fail;
	}
	if (json_check_keys(root, reason, reason_size) == -1 ||
	    json_check_name(json_object_get(root, "name"), reason,
	    reason_size) == -1 ||
	    json_check_description(json_object_get(root, "description"),
	    reason, reason_size) == -1)
		goto fail;
	out->name = json_strdup_or_null(json_object_get(root, "name"), &failed);
	out->description = json_strdup_or_null(
	    json_object_get(root, "description"), &failed);
	if (failed) {
		snprintf(reason, reason_size, "out of memory");
		item_input_finish(out);
		goto fail;
	}
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	return -1;
}
