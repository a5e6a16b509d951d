#include "json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "utf8.h"

/*
 * Encoding is written by hand: building jansson values and dumping them cost
 * two thirds of a worker's instructions on GET /items (docs/performance.md).
 * The output is byte for byte what json_dumps(JSON_COMPACT) wrote: keys in
 * the contract's order, '"' and '\\' escaped, control characters as \b \f
 * \n \r \t or \u00XX, everything else (HTML, '/', non-ASCII) as it is.
 * Invalid UTF-8 fails the encoding, as it did with jansson.
 */

/* No cap but memory: the contract bounds a page (1000 items of <= 64 KiB). */
#define JSON_OUT_MAX (SIZE_MAX / 2)

/* Makes the encoding fail: buf_steal() then returns NULL. */
static void
json_poison(struct buf *b)
{
	buf_finish(b);
	b->failed = 1;
}

static void
json_add_string(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *run = s;
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
	uint32_t cp;
	size_t n;

	buf_add(b, "\"", 1);
	for (;;) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			s++;
			continue;
		}
		if (c >= 0x80) {
			n = utf8_decode(s, strnlen(s, 4), &cp);
			if (n == 0) {
				json_poison(b);
				return;
			}
			s += n;
			continue;
		}
		buf_add(b, run, (size_t)(s - run));
		if (c == '\0')
			break;
		switch (c) {
		case '"':
			buf_add(b, "\\\"", 2);
			break;
		case '\\':
			buf_add(b, "\\\\", 2);
			break;
		case '\b':
			buf_add(b, "\\b", 2);
			break;
		case '\f':
			buf_add(b, "\\f", 2);
			break;
		case '\n':
			buf_add(b, "\\n", 2);
			break;
		case '\r':
			buf_add(b, "\\r", 2);
			break;
		case '\t':
			buf_add(b, "\\t", 2);
			break;
		default:
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			buf_add(b, esc, sizeof(esc));
			break;
		}
		run = ++s;
	}
	buf_add(b, "\"", 1);
}

/* A decimal in the buffer, without printf. */
static void
json_add_int(struct buf *b, int64_t value)
{
	char digits[24], *p = digits + sizeof(digits);
	uint64_t u = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (value < 0)
		*--p = '-';
	buf_add(b, p, (size_t)(digits + sizeof(digits) - p));
}

void
json_add_item(struct buf *b, const struct item *item)
{
	buf_adds(b, "{\"id\":");
	json_add_int(b, item->id);
	buf_adds(b, ",\"name\":");
	json_add_string(b, item->name);
	buf_adds(b, ",\"description\":");
	if (item->description != NULL)
		json_add_string(b, item->description);
	else
		buf_adds(b, "null");
	buf_adds(b, ",\"created_at\":");
	json_add_string(b, item->created_at);
	buf_add(b, "}", 1);
}

/* The text, or NULL when memory ran out or a string was not UTF-8. */
static char *
json_finish(struct buf *b)
{
	return buf_steal(b, NULL);
}

char *
json_encode_error(const char *reason)
{
	struct buf b;

	buf_init(&b, JSON_OUT_MAX);
	buf_adds(&b, "{\"error\":");
	json_add_string(&b, reason);
	buf_add(&b, "}", 1);
	return json_finish(&b);
}

char *
json_encode_status(bool ok, const char *message)
{
	struct buf b;

	buf_init(&b, JSON_OUT_MAX);
	buf_adds(&b, ok ? "{\"status\":\"OK\",\"database_connection\":\"OK\""
	    : "{\"status\":\"KO\",\"database_connection\":\"KO\"");
	buf_adds(&b, ",\"message\":");
	json_add_string(&b, message);
	buf_add(&b, "}", 1);
	return json_finish(&b);
}

char *
json_encode_item(const struct item *item)
{
	struct buf b;

	buf_init(&b, JSON_OUT_MAX);
	json_add_item(&b, item);
	return json_finish(&b);
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

static size_t
json_skip_digits(const char *s, size_t len, size_t i)
{
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/*
 * The end of the number that starts at s[i], lexed as jansson lexes one
 * (greedy; a leading 0 followed by a digit is an invalid token), or i when
 * no number starts there.
 */
static size_t
json_number_end(const char *s, size_t len, size_t i)
{
	size_t j = i, k;

	if (j < len && s[j] == '-')
		j++;
	if (j < len && s[j] == '0') {
		j++;
		if (json_skip_digits(s, len, j) != j)
			return i;
	} else {
		k = json_skip_digits(s, len, j);
		if (k == j)
			return i;
		j = k;
	}
	if (j < len && s[j] == '.') {
		k = json_skip_digits(s, len, j + 1);
		if (k == j + 1)
			return i;
		j = k;
	}
	if (j < len && (s[j] == 'e' || s[j] == 'E')) {
		j++;
		if (j < len && (s[j] == '+' || s[j] == '-'))
			j++;
		k = json_skip_digits(s, len, j);
		if (k == j)
			return i;
		j = k;
	}
	return j;
}

/*
 * Overwrites, in place, every number a double might not hold with "0e00..."
 * or "-0e00...", a number of the same length, so that jansson's lines,
 * columns and positions stay those of the body. Any number is refused
 * wherever it stands, so its value never decides a reason. The shortest
 * number that overflows, 1e309, has 5 characters: shorter ones stay.
 * This scan only finds numbers, jansson still parses: up to jansson's first
 * error the input is lexically valid and the two agree on where strings and
 * numbers are; what the scan does after that error, jansson never reads.
 */
static void
json_zero_long_numbers(char *s, size_t len)
{
	size_t i = 0, end, k;

	while (i < len) {
		if (s[i] == '"') {
			/* An escape is a backslash and one character. */
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (s[i] != '-' && (s[i] < '0' || s[i] > '9')) {
			i++;
			continue;
		}
		end = json_number_end(s, len, i);
		/* An invalid token: jansson stops there, so can the scan. */
		if (end == i)
			return;
		if (end - i >= 5) {
			/* A '-' stays, or "1-1e400" would read as "10e0000". */
			k = s[i] == '-' ? i + 1 : i;
			memset(s + k, '0', end - k);
			s[k + 1] = 'e';
		}
		i = end;
	}
}

/*
 * jansson quotes up to 20 bytes of the token at its error ("... near 'X'"),
 * which ends at error->position: when that token was zeroed, quote what the
 * client sent instead (same length, so it fits).
 */
static void
json_error_quote_sent(json_error_t *error, const char *body, const char *copy,
    size_t len)
{
	size_t tlen = strlen(error->text), pos = (size_t)error->position, n;
	char *quote;

	if (error->position < 0 || pos > len || tlen < 3 ||
	    error->text[tlen - 1] != '\'')
		return;
	for (n = 1; n <= 20 && n <= pos && n + 2 <= tlen; n++) {
		quote = error->text + tlen - 1 - n;
		if (quote[-1] == '\'' &&
		    memcmp(quote, copy + pos - n, n) == 0) {
			memcpy(quote, body + pos - n, n);
			return;
		}
	}
}

/*
 * Integers are read as reals, so one beyond int64 is a number like any
 * other. A number no double holds (1e999999, a 400-digit integer) still
 * fails the whole parse, before the checks whose reasons name the field:
 * such a body is parsed once more with its long numbers zeroed. One copy and
 * one scan, however many there are (a parse per number would be quadratic).
 */
static json_t *
json_load_input(const char *body, size_t len, json_error_t *error)
{
	/* RFC 8259 section 4: names SHOULD be unique; we make it a MUST. */
	const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL;
	json_t *root;
	char *copy;

	root = json_loadb(body, len, flags, error);
	if (root != NULL ||
	    json_error_code(error) != json_error_numeric_overflow)
		return root;
	copy = malloc(len);
	if (copy == NULL)
		return NULL;	/* the overflow is reported, as it stands */
	memcpy(copy, body, len);
	json_zero_long_numbers(copy, len);
	root = json_loadb(copy, len, flags, error);
	if (root == NULL)
		json_error_quote_sent(error, body, copy, len);
	free(copy);
	return root;
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
	root = json_load_input(body, len, &error);
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
