/*
 * The log line builders (log.c): log_format_access() and
 * log_format_message(), into a heap buffer of exactly the size given, so
 * that ASan sees any byte written past it.
 *
 * Input: a flags byte (bit 0: an operational line instead of an access line;
 * bits 1-2: its level; bit 3: a buffer size from the next two bytes, 1..4096,
 * instead of LOG_LINE_MAX), two size bytes, four bytes of status, eight of
 * duration (any double: NaN, infinities, negatives), then the fields split
 * at NULs: request id, method, path (or the message).
 *
 * Oracle: the result is at most the buffer's size, one line ending in "}\n"
 * that jansson parses as an object without duplicate keys, with time, level
 * and pid. Each string field is the value sent (bytes that are not UTF-8 as
 * U+FFFD, by a model of RFC 3629 written apart from utf8.c), or, when it did
 * not fit, cut to a prefix of it ending in "..." within its bound, or left
 * out; whatever was cut or left out, the line says "truncated":true. In a
 * full-size buffer no access field is ever left out.
 */
#include <jansson.h>

#include "fuzz.h"
#include "log.h"

#define MARKER_LEN	(sizeof(LOG_CUT_MARKER) - 1)

struct input {
	unsigned	 flags;
	size_t		 size;
	int		 status;
	double		 duration;
	char		*fields[3];
};

/*
 * The value the line must carry for s (each byte that does not start a
 * well-formed sequence as U+FFFD), malloc'd, and in *json the length of
 * its JSON form: '"' and '\\' take 2 bytes, controls and U+FFFD 6.
 */
static char *
model(const char *s, size_t *json)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, n, chars;
	char *out = malloc(3 * len + 1), *o = out;

	if (out == NULL)
		abort();
	*json = 0;
	while (i < len) {
		n = p[i] < 0x80 ? 1 : (p[i] & 0xe0) == 0xc0 ? 2 :
		    (p[i] & 0xf0) == 0xe0 ? 3 : (p[i] & 0xf8) == 0xf0 ? 4 : 0;
		if (n == 0 || len - i < n || !fuzz_valid_utf8(p + i, n, &chars)) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			*json += 6;
			i++;
			continue;
		}
		memcpy(o, p + i, n);
		o += n;
		if (p[i] == '"' || p[i] == '\\')
			*json += 2;
		else if (p[i] < 0x20 || p[i] == 0x7f)
			*json += 6;
		else
			*json += n;
		i += n;
	}
	*o = '\0';
	return out;
}

/*
 * Length of the JSON form of key's value, read in the line itself (NUL-
 * terminated here): a U+FFFD read back may have been sent as such (3 bytes)
 * or as a bad byte (\ufffd, 6). ,"key":" cannot occur inside a value, whose
 * quotes are all escaped.
 */
static size_t
raw_length(const char *line, const char *key)
{
	char pattern[32];
	const char *p;
	size_t n = 0;

	snprintf(pattern, sizeof(pattern), ",\"%s\":\"", key);
	p = strstr(line, pattern);
	FUZZ_CHECK(p != NULL, "the key of a value read back is in the line");
	for (p += strlen(pattern); *p != '\0' && *p != '"'; p++, n++)
		if (*p == '\\' && p[1] != '\0') {
			p++;
			n++;
		}
	FUZZ_CHECK(*p == '"', "a value ends in the line");
	return n;
}

static int
truncated(json_t *root)
{
	return json_is_true(json_object_get(root, "truncated"));
}

static void
check_field(json_t *root, const char *line, const char *key,
    const char *sent, size_t bound, int must_be_there)
{
	json_t *v = json_object_get(root, key);
	const char *got;
	size_t want_json, got_len;
	char *want;

	if (v == NULL) {
		FUZZ_CHECK(!must_be_there, "no field left out of a full line");
		FUZZ_CHECK(truncated(root), "a field left out is marked");
		return;
	}
	FUZZ_CHECK(json_is_string(v), "a string field is a string");
	got = json_string_value(v);
	got_len = json_string_length(v);
	FUZZ_CHECK(strlen(got) == got_len, "no NUL in a value");
	FUZZ_CHECK(raw_length(line, key) <= bound,
	    "a value within its bound");
	want = model(sent, &want_json);
	if (strcmp(got, want) != 0) {
		FUZZ_CHECK(truncated(root), "a value cut is marked");
		FUZZ_CHECK(got_len >= MARKER_LEN &&
		    strcmp(got + got_len - MARKER_LEN, LOG_CUT_MARKER) == 0,
		    "a value cut ends in the marker");
		FUZZ_CHECK(strncmp(got, want, got_len - MARKER_LEN) == 0,
		    "a value cut is a prefix of the value sent");
	} else if (want_json > bound)
		FUZZ_CHECK(0, "a value over its bound is cut");
	free(want);
}

static void
parse_input(const uint8_t *data, size_t size, struct input *in)
{
	uint8_t head[15] = { 0 };
	size_t i, start, end;
	uint32_t status;
	uint64_t bits;

	memcpy(head, data, size < sizeof(head) ? size : sizeof(head));
	in->flags = head[0];
	in->size = in->flags & 8 ?
	    1 + (((size_t)head[1] << 8 | head[2]) % LOG_LINE_MAX) :
	    LOG_LINE_MAX;
	status = (uint32_t)head[3] << 24 | (uint32_t)head[4] << 16 |
	    (uint32_t)head[5] << 8 | head[6];
	memcpy(&in->status, &status, sizeof(in->status));
	bits = 0;
	for (i = 7; i < 15; i++)
		bits = bits << 8 | head[i];
	memcpy(&in->duration, &bits, sizeof(in->duration));
	start = size < sizeof(head) ? size : sizeof(head);
	for (i = 0; i < 3; i++) {
		end = start;
		while (end < size && data[end] != '\0')
			end++;
		/* Exact-size copies: a read past a value's end is seen too. */
		in->fields[i] = fuzz_cstring(data + start, end - start);
		start = end < size ? end + 1 : end;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	struct log_stamp stamp = { { 1767323045, 6000000 }, 42 };
	struct log_access entry;
	json_error_t error;
	json_t *root;
	size_t len, i;
	char *out, *text;
	int full;

	parse_input(data, size, &in);
	out = malloc(in.size);
	if (out == NULL)
		abort();
	if (in.flags & 1)
		len = log_format_message(out, in.size, &stamp,
		    (enum log_level)((in.flags >> 1) & 3), in.fields[0]);
	else {
		entry.request_id = in.fields[0];
		entry.method = in.fields[1];
		entry.path = in.fields[2];
		entry.status = in.status;
		entry.duration_ms = in.duration;
		len = log_format_access(out, in.size, &stamp, &entry);
	}
	FUZZ_CHECK(len <= in.size, "the line fits its buffer");
	/* The head and the end need ~60 bytes; 128 is ample. */
	FUZZ_CHECK(len > 0 || in.size < 128, "a line whenever it can fit");
	if (len > 0) {
		FUZZ_CHECK(len >= 2 && out[len - 2] == '}' &&
		    out[len - 1] == '\n', "the line ends in }\\n");
		FUZZ_CHECK(memchr(out, '\n', len - 1) == NULL, "one line");
		FUZZ_CHECK(memchr(out, '\0', len) == NULL, "no NUL in a line");
		text = fuzz_cstring((const uint8_t *)out, len);
		root = json_loadb(out, len, JSON_REJECT_DUPLICATES, &error);
		FUZZ_CHECK(root != NULL && json_is_object(root),
		    "the line is a JSON object");
		FUZZ_CHECK(json_is_string(json_object_get(root, "time")) &&
		    json_is_string(json_object_get(root, "level")) &&
		    json_integer_value(json_object_get(root, "pid")) == 42,
		    "time, level and pid");
		full = in.size == LOG_LINE_MAX;
		if (in.flags & 1)
			check_field(root, text, "msg", in.fields[0],
			    in.size, 0);
		else {
			check_field(root, text, "request_id",
			    in.fields[0], LOG_REQUEST_ID_MAX, full);
			check_field(root, text, "method", in.fields[1],
			    LOG_METHOD_MAX, full);
			check_field(root, text, "path", in.fields[2],
			    LOG_PATH_MAX, full);
			if (json_object_get(root, "status") != NULL)
				FUZZ_CHECK(json_integer_value(json_object_get(
				    root, "status")) == in.status,
				    "the status as given");
			else
				FUZZ_CHECK(!full && truncated(root),
				    "status left out only of a short line");
			if (json_object_get(root, "duration_ms") != NULL)
				FUZZ_CHECK(json_is_number(json_object_get(root,
				    "duration_ms")) || json_is_null(
				    json_object_get(root, "duration_ms")),
				    "duration_ms a number or null");
		}
		json_decref(root);
		free(text);
	}
	free(out);
	for (i = 0; i < 3; i++)
		free(in.fields[i]);
	return 0;
}
