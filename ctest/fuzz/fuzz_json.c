/*
 * json_parse_item_input(): the body of POST /items and PUT /items/{id}.
 * Oracle: the field rules of docs/api.md "Validation", re-implemented here
 * on top of jansson (the parser, not the code under test): one object with
 * only "name" (string of 1..255 code points, not only Unicode White_Space)
 * and optional "description" (string of at most 65535 bytes, or null); no
 * duplicate keys, no U+0000. Accepted bodies must give back exactly the
 * strings sent; refused ones must leave nothing allocated and a reason that
 * can be sent as a JSON error body (valid UTF-8, terminated). The reason
 * says "invalid JSON" exactly when jansson cannot parse the body for another
 * cause than a number no double holds: such a number is a number like any
 * other, refused with the reason of where it stands.
 */
#include <jansson.h>

#include "fuzz.h"
#include "item.h"
#include "json.h"

/* Unicode's White_Space property (PropList.txt), written out again. */
static int
is_white_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 ||
	    cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
	    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
	    cp == 0x3000;
}

/* The input is valid UTF-8 (jansson checked): true if it is all white space. */
static int
only_white_space(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		n = s[i] < 0x80 ? 1 : s[i] < 0xe0 ? 2 : s[i] < 0xf0 ? 3 : 4;
		cp = n == 1 ? s[i] : n == 2 ? s[i] & 0x1fu :
		    n == 3 ? s[i] & 0x0fu : s[i] & 0x07u;
		for (k = 1; k < n && i + k < len; k++)
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		if (!is_white_space(cp))
			return 0;
		i += n;
	}
	return 1;
}

/* What the contract says about this body: 1 acceptable, 0 not. */
static int
model_accepts(json_t *root)
{
	json_t *name, *description;
	const char *key;
	json_t *value;
	size_t chars;

	if (root == NULL || !json_is_object(root))
		return 0;
	json_object_foreach(root, key, value)
		if (strcmp(key, "name") != 0 && strcmp(key, "description") != 0)
			return 0;
	name = json_object_get(root, "name");
	description = json_object_get(root, "description");
	if (name == NULL || !json_is_string(name))
		return 0;
	if (!fuzz_valid_utf8((const unsigned char *)json_string_value(name),
	    json_string_length(name), &chars))
		return 0;
	if (chars < 1 || chars > 255 ||
	    only_white_space((const unsigned char *)json_string_value(name),
	    json_string_length(name)))
		return 0;
	if (description != NULL && !json_is_null(description) &&
	    (!json_is_string(description) ||
	    json_string_length(description) > 65535))
		return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy without a terminator: the parser must use len. */
	char *body = malloc(size > 0 ? size : 1), *encoded;
	struct item_input input = { (char *)1, (char *)1 };
	char reason[256];	/* as in handler_items.c */
	json_error_t error;
	json_t *root, *description;
	size_t chars;
	int rc, expected;

	if (body == NULL)
		abort();
	if (size > 0)
		memcpy(body, data, size);
	memset(reason, 'X', sizeof(reason));
	rc = json_parse_item_input(body, size, &input, reason, sizeof(reason));
	/* Integers as reals: no valid body holds a number, so no change. */
	root = json_loadb((const char *)data, size,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &error);
	expected = model_accepts(root) ? 0 : -1;
	FUZZ_CHECK(rc == expected, "accepts exactly the bodies of the contract");
	if (rc == -1 && root != NULL)
		FUZZ_CHECK(strncmp(reason, "invalid JSON", 12) != 0,
		    "what jansson parses is not invalid JSON");
	else if (rc == -1 &&
	    json_error_code(&error) != json_error_numeric_overflow)
		FUZZ_CHECK(strncmp(reason, "invalid JSON: ", 14) == 0,
		    "what jansson cannot parse is invalid JSON");
	else if (rc == -1)
		FUZZ_CHECK(
		    strncmp(reason, "invalid JSON: real number", 25) != 0 &&
		    strncmp(reason, "invalid JSON: too big", 21) != 0,
		    "a number no double holds is refused where it stands");
	if (rc == 0) {
		FUZZ_CHECK(input.name != NULL, "name returned");
		FUZZ_CHECK(strcmp(input.name, json_string_value(
		    json_object_get(root, "name"))) == 0, "name as sent");
		FUZZ_CHECK(fuzz_valid_utf8((unsigned char *)input.name,
		    strlen(input.name), &chars) && chars >= 1 && chars <= 255,
		    "name is 1..255 code points of UTF-8");
		description = json_object_get(root, "description");
		if (description == NULL || json_is_null(description))
			FUZZ_CHECK(input.description == NULL,
			    "absent or null description is NULL");
		else
			FUZZ_CHECK(input.description != NULL &&
			    strcmp(input.description,
			    json_string_value(description)) == 0 &&
			    strlen(input.description) <= 65535,
			    "description as sent");
		item_input_finish(&input);
	} else {
		FUZZ_CHECK(input.name == NULL && input.description == NULL,
		    "nothing handed out on failure");
		FUZZ_CHECK(memchr(reason, '\0', sizeof(reason)) != NULL &&
		    reason[0] != '\0', "a terminated, non-empty reason");
		encoded = json_encode_error(reason);
		FUZZ_CHECK(encoded != NULL,
		    "the reason encodes as a JSON error body (valid UTF-8)");
		free(encoded);
	}
	json_decref(root);
	free(body);
	return 0;
}
