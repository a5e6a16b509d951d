/*
 * log.c's line builders, log_format_access() and log_format_message():
 * whatever the length and the bytes of each field, a line is a JSON object
 * (jansson parses it) of at most the buffer's size that ends in "}\n",
 * nothing is written past the buffer (canary bytes), each field is whole,
 * or cut on a character boundary to its bound with a "..." marker, or left
 * out, and the line says "truncated":true whenever something was cut.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "utf8.h"

#define CANARY		64
#define CANARY_BYTE	0xa5
#define MARKER_LEN	(sizeof(LOG_CUT_MARKER) - 1)
/* Longest field a sweep makes: past the line, and one unit more. */
#define FIELD_MAX	(LOG_LINE_MAX + CANARY + 16)

/* 2026-01-02T03:04:05.006Z, pid 42. */
static const struct log_stamp stamp = { { 1767323045, 6000000 }, 42 };

/* What the swept fields are made of: one unit, repeated (the last one cut). */
struct filler {
	const char	*name;
	const char	*unit;
};

static const struct filler fillers[] = {
	{ "ascii", "a" },
	{ "2-byte", "\xc3\xa9" },
	{ "3-byte", "\xe2\x82\xac" },
	{ "4-byte", "\xf0\x9f\x98\x80" },
	{ "quote", "\"" },
	{ "backslash", "\\" },
	{ "control", "\x01" },
	{ "newline", "\n" },
	{ "del", "\x7f" },
	{ "invalid", "\xff" },
	{ "cut-sequence", "\xe2\x82" },
	{ "surrogate", "\xed\xa0\x80" },
	{ "overlong", "\xc0\xaf" },
	{ "U+FFFD sent as such", "\xef\xbf\xbd" },
	{ "mixed", "a\xc3\xa9\"\\\x1f\xf0\x9f\x98\x80\xff" },
};

enum field {
	FIELD_REQUEST_ID,
	FIELD_METHOD,
	FIELD_PATH,
	FIELD_COUNT
};

static const char *const field_keys[] = { "request_id", "method", "path" };
static const size_t field_bounds[] = {
	LOG_REQUEST_ID_MAX, LOG_METHOD_MAX, LOG_PATH_MAX
};

static char case_name[256];
/* The last line check_line() passed, NUL-terminated (buffers go to LOG_LINE_MAX + 1). */
static char line_text[LOG_LINE_MAX + 2];

/* s: n bytes of unit, repeated. */
static void
fill(char *s, size_t n, const char *unit)
{
	size_t i, u = strlen(unit);

	for (i = 0; i < n; i++)
		s[i] = unit[i % u];
	s[n] = '\0';
}

/*
 * The model of the escaping: the value the line must carry (s with each byte
 * that is not valid UTF-8 as U+FFFD) in out (3 * strlen(s) + 1 bytes), and
 * the length of its JSON form, which the bounds count.
 */
static size_t
model(const char *s, char *out)
{
	size_t len = strlen(s), n, json = 0;
	uint32_t cp;

	while (len > 0) {
		n = utf8_decode(s, len, &cp);
		if (n == 0) {
			memcpy(out, "\xef\xbf\xbd", 3);
			out += 3;
			json += 6;
			n = 1;
		} else {
			memcpy(out, s, n);
			out += n;
			if (cp == '"' || cp == '\\')
				json += 2;
			else if (cp < 0x20 || cp == 0x7f)
				json += 6;
			else
				json += n;
		}
		s += n;
		len -= n;
	}
	*out = '\0';
	return json;
}

/*
 * Length of the JSON form of key's value, read in the line itself (NUL-
 * terminated here), as the bounds count it. ,"key":" cannot occur inside a
 * value, whose quotes are all escaped.
 */
static size_t
raw_length(const char *line, const char *key)
{
	char pattern[32];
	const char *p;
	size_t n = 0;

	snprintf(pattern, sizeof(pattern), ",\"%s\":\"", key);
	p = strstr(line, pattern);
	if (p == NULL) {
		CHECK_FAIL("no %s in the line", key);
		return 0;
	}
	for (p += strlen(pattern); *p != '\0' && *p != '"'; p++, n++)
		if (*p == '\\' && p[1] != '\0') {
			p++;
			n++;
		}
	CHECK_MSG(*p == '"', "%s does not end", key);
	return n;
}

/*
 * A buffer of size bytes and CANARY more, all CANARY_BYTE: what lies past
 * size must be untouched after formatting.
 */
static char *
buffer_new(size_t size)
{
	char *b = malloc(size + CANARY);

	if (b == NULL)
		abort();
	memset(b, CANARY_BYTE, size + CANARY);
	return b;
}

static int
canary_intact(const char *b, size_t size)
{
	size_t i;

	for (i = size; i < size + CANARY; i++)
		if ((unsigned char)b[i] != CANARY_BYTE)
			return 0;
	return 1;
}

/*
 * The checks every line passes: within the buffer, canary intact, one line
 * ending in "}\n", a JSON object with time, level and pid. Returns it parsed
 * (NULL for no line: len 0), and leaves its text in line_text.
 */
static json_t *
check_line(const char *b, size_t size, size_t len)
{
	json_error_t error;
	json_t *root;

	CHECK_MSG(len <= size, "line of %zu bytes in a buffer of %zu", len,
	    size);
	CHECK_MSG(canary_intact(b, size), "written past a buffer of %zu",
	    size);
	if (len == 0 || len > size || len >= sizeof(line_text))
		return NULL;
	memcpy(line_text, b, len);
	line_text[len] = '\0';
	CHECK_MSG(len >= 2 && memcmp(b + len - 2, "}\n", 2) == 0,
	    "line does not end in }\\n");
	CHECK_MSG(memchr(b, '\n', len - 1) == NULL, "a newline inside the line");
	root = json_loadb(b, len, JSON_REJECT_DUPLICATES, &error);
	if (!CHECK_MSG(root != NULL && json_is_object(root),
	    "not a JSON object: %s: %.*s", error.text,
	    (int)(len < 200 ? len : 200), b)) {
		json_decref(root);
		return NULL;
	}
	CHECK(json_is_string(json_object_get(root, "time")));
	CHECK(json_is_string(json_object_get(root, "level")));
	CHECK(json_is_integer(json_object_get(root, "pid")));
	return root;
}

static int
is_truncated(json_t *root)
{
	return json_is_true(json_object_get(root, "truncated"));
}

/*
 * A string field of a line: absent only if the line is marked; its JSON form
 * within bound; the value sent, whole, if its JSON form fits the bound and
 * the line has room (line_roomy); else cut: a prefix of it, "...", as close
 * to the bound as a character allows, and the line marked.
 */
static void
check_field(json_t *root, const char *line, const char *key,
    const char *sent, size_t bound, int line_roomy)
{
	json_t *v = json_object_get(root, key);
	char *want;
	const char *got;
	size_t want_json, got_len, got_json, prefix_len;

	if (v == NULL) {
		CHECK_MSG(is_truncated(root), "%s left out, line not marked",
		    key);
		return;
	}
	if (!CHECK_MSG(json_is_string(v), "%s is not a string", key))
		return;
	got = json_string_value(v);
	got_len = json_string_length(v);
	want = malloc(3 * strlen(sent) + 1);
	if (want == NULL)
		abort();
	want_json = model(sent, want);
	got_json = raw_length(line, key);
	CHECK_MSG(got_json <= bound, "%s's JSON form (%zu) over %zu", key,
	    got_json, bound);
	if (want_json <= bound && line_roomy) {
		CHECK_MSG(strcmp(got, want) == 0, "%s is not the value sent",
		    key);
	} else if (want_json > bound || strcmp(got, want) != 0) {
		CHECK_MSG(is_truncated(root), "%s cut, line not marked", key);
		if (CHECK_MSG(got_len >= MARKER_LEN && strcmp(got + got_len -
		    MARKER_LEN, LOG_CUT_MARKER) == 0, "cut %s without marker",
		    key)) {
			prefix_len = got_len - MARKER_LEN;
			CHECK_MSG(strncmp(got, want, prefix_len) == 0,
			    "cut %s is not a prefix of the value sent", key);
			/* No character that would have fitted was dropped. */
			if (line_roomy)
				CHECK_MSG(got_json + 6 > bound,
				    "%s cut short: %zu of %zu", key, got_json,
				    bound);
		}
	}
	free(want);
}

/* An access line with one field set to sent, the others short. */
static void
sweep_access_once(enum field f, const char *sent, size_t size)
{
	struct log_access e = { "rid-1", "GET", "/items", 200, 1.5 };
	const char **slot[] = { &e.request_id, &e.method, &e.path };
	char *b = buffer_new(size);
	json_t *root;
	size_t len;
	int i;

	*slot[f] = sent;
	len = log_format_access(b, size, &stamp, &e);
	CHECK_MSG(len > 0 || size < 256, "no line in a buffer of %zu", size);
	root = check_line(b, size, len);
	if (root != NULL) {
		for (i = 0; i < FIELD_COUNT; i++)
			check_field(root, line_text, field_keys[i], *slot[i],
			    field_bounds[i], size == LOG_LINE_MAX);
		if (!is_truncated(root)) {
			CHECK(json_integer_value(json_object_get(root,
			    "status")) == 200);
			CHECK(json_is_real(json_object_get(root,
			    "duration_ms")));
		}
		if (size == LOG_LINE_MAX)
			CHECK_MSG(json_object_get(root, "status") != NULL,
			    "status dropped from a full-size line");
	}
	json_decref(root);
	free(b);
}

/* Every field, every filler, every length from 0 past the buffer's end. */
static void
test_access_sweep(size_t size)
{
	char *sent = malloc(FIELD_MAX + 1);
	size_t f, i, n;

	if (sent == NULL)
		abort();
	for (f = 0; f < FIELD_COUNT; f++)
		for (i = 0; i < sizeof(fillers) / sizeof(fillers[0]); i++)
			for (n = 0; n <= size + CANARY && n <= FIELD_MAX; n++) {
				snprintf(case_name, sizeof(case_name),
				    "access %s of %zu bytes of %s, buffer %zu",
				    field_keys[f], n, fillers[i].name, size);
				CHECK_CASE(case_name);
				fill(sent, n, fillers[i].unit);
				sweep_access_once((enum field)f, sent, size);
			}
	CHECK_CASE(NULL);
	free(sent);
}

/* The msg of an operational line, every filler and length, at full size. */
static void
test_message_sweep(void)
{
	char *sent = malloc(FIELD_MAX + 1), *b;
	size_t i, n, len;
	json_t *root;

	if (sent == NULL)
		abort();
	for (i = 0; i < sizeof(fillers) / sizeof(fillers[0]); i++)
		for (n = 0; n <= LOG_LINE_MAX + CANARY; n++) {
			snprintf(case_name, sizeof(case_name),
			    "msg of %zu bytes of %s", n, fillers[i].name);
			CHECK_CASE(case_name);
			fill(sent, n, fillers[i].unit);
			b = buffer_new(LOG_LINE_MAX);
			len = log_format_message(b, LOG_LINE_MAX, &stamp,
			    LOG_LEVEL_WARN, sent);
			root = check_line(b, LOG_LINE_MAX, len);
			if (CHECK_MSG(root != NULL, "no line")) {
				/* The line is the bound: a cut one is full. */
				check_field(root, line_text, "msg", sent,
				    LOG_LINE_MAX, 0);
				if (is_truncated(root))
					CHECK_MSG(len + 6 > LOG_LINE_MAX,
					    "msg cut short: line of %zu", len);
			}
			json_decref(root);
			free(b);
		}
	CHECK_CASE(NULL);
	free(sent);
}

/*
 * Every buffer size from 0 up, with every field long and hostile: a line
 * or nothing (0, for a buffer that cannot hold the fixed part), never a
 * byte past the buffer.
 */
static void
test_buffer_sizes(void)
{
	char *big = malloc(FIELD_MAX + 1), *b;
	struct log_access e;
	size_t size, len, shortest = 0;
	json_t *root;

	if (big == NULL)
		abort();
	fill(big, FIELD_MAX, fillers[sizeof(fillers) / sizeof(fillers[0]) -
	    1].unit);
	e = (struct log_access){ big, big, big, 404, 0.25 };
	for (size = 0; size <= LOG_LINE_MAX + 1; size++) {
		snprintf(case_name, sizeof(case_name), "buffer of %zu", size);
		CHECK_CASE(case_name);
		b = buffer_new(size);
		len = log_format_access(b, size, &stamp, &e);
		root = check_line(b, size, len);
		if (root != NULL) {
			check_field(root, line_text, "request_id", big,
			    LOG_REQUEST_ID_MAX, 0);
			check_field(root, line_text, "method", big,
			    LOG_METHOD_MAX, 0);
			check_field(root, line_text, "path", big, LOG_PATH_MAX,
			    0);
			CHECK(is_truncated(root));
			if (shortest == 0)
				shortest = size;
		} else
			CHECK_MSG(shortest == 0, "no line, yet a line in %zu",
			    shortest);
		json_decref(root);
		free(b);
		b = buffer_new(size);
		len = log_format_message(b, size, &stamp, LOG_LEVEL_ERROR, big);
		root = check_line(b, size, len);
		if (root != NULL)
			check_field(root, line_text, "msg", big, size, 0);
		json_decref(root);
		free(b);
	}
	CHECK_CASE(NULL);
	/* The head and the end: {"time":"...","level":"info","pid":42 ... }\n */
	CHECK_MSG(shortest > 0 && shortest < 128, "first line at %zu",
	    shortest);
	free(big);
}

/* Formats e into a full-size buffer and compares with want. */
static void
check_access_is(const struct log_access *e, const char *want)
{
	char *b = buffer_new(LOG_LINE_MAX);
	size_t len;

	len = log_format_access(b, LOG_LINE_MAX, &stamp, e);
	if (CHECK(len < LOG_LINE_MAX)) {
		b[len] = '\0';
		CHECK_STR_EQ(b, want);
	}
	free(b);
}

#define HEAD	"{\"time\":\"2026-01-02T03:04:05.006Z\",\"level\":\"info\",\"pid\":42"

static void
test_exact_lines(void)
{
	char method[64], *b;
	struct log_access e = { "abc", "GET", "/items/1", 200, 1.5 };
	size_t len;

	CHECK_CASE("an ordinary line");
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\"GET\","
	    "\"status\":200,\"duration_ms\":1.500,\"path\":\"/items/1\"}\n");

	CHECK_CASE("a method at its bound is whole");
	fill(method, LOG_METHOD_MAX, "M");
	e.method = method;
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\""
	    "MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM\",\"status\":200,"
	    "\"duration_ms\":1.500,\"path\":\"/items/1\"}\n");

	CHECK_CASE("a method one byte over is cut and marked");
	fill(method, LOG_METHOD_MAX + 1, "M");
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\""
	    "MMMMMMMMMMMMMMMMMMMMMMMMMMMMM...\",\"status\":200,"
	    "\"duration_ms\":1.500,\"path\":\"/items/1\","
	    "\"truncated\":true}\n");

	CHECK_CASE("never inside a UTF-8 sequence: 14 of 20 e-acute");
	fill(method, 40, "\xc3\xa9");
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\""
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...\","
	    "\"status\":200,\"duration_ms\":1.500,\"path\":\"/items/1\","
	    "\"truncated\":true}\n");

	CHECK_CASE("never inside an escape: 4 of 6 control characters");
	fill(method, 6, "\x01");
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\""
	    "\\u0001\\u0001\\u0001\\u0001...\",\"status\":200,"
	    "\"duration_ms\":1.500,\"path\":\"/items/1\","
	    "\"truncated\":true}\n");

	CHECK_CASE("escapes and invalid bytes");
	e.method = "G\"\\\x7f\xff\xc3";
	check_access_is(&e, HEAD ",\"request_id\":\"abc\",\"method\":\""
	    "G\\\"\\\\\\u007f\\ufffd\\ufffd\",\"status\":200,"
	    "\"duration_ms\":1.500,\"path\":\"/items/1\"}\n");

	CHECK_CASE("NULL strings read as empty");
	e = (struct log_access){ NULL, NULL, NULL, 404, 0 };
	check_access_is(&e, HEAD ",\"request_id\":\"\",\"method\":\"\","
	    "\"status\":404,\"duration_ms\":0.000,\"path\":\"\"}\n");

	CHECK_CASE("no NaN or infinity in JSON");
	e = (struct log_access){ "r", "GET", "/", 200, NAN };
	check_access_is(&e, HEAD ",\"request_id\":\"r\",\"method\":\"GET\","
	    "\"status\":200,\"duration_ms\":null,\"path\":\"/\"}\n");
	e.duration_ms = INFINITY;
	check_access_is(&e, HEAD ",\"request_id\":\"r\",\"method\":\"GET\","
	    "\"status\":200,\"duration_ms\":null,\"path\":\"/\"}\n");
	e.duration_ms = -1;
	check_access_is(&e, HEAD ",\"request_id\":\"r\",\"method\":\"GET\","
	    "\"status\":200,\"duration_ms\":null,\"path\":\"/\"}\n");
	e.duration_ms = 1e300;
	check_access_is(&e, HEAD ",\"request_id\":\"r\",\"method\":\"GET\","
	    "\"status\":200,\"duration_ms\":null,\"path\":\"/\"}\n");

	CHECK_CASE("an operational message");
	b = buffer_new(LOG_LINE_MAX);
	len = log_format_message(b, LOG_LINE_MAX, &stamp, LOG_LEVEL_WARN,
	    "database \"items\"\tlost");
	if (CHECK(len < LOG_LINE_MAX)) {
		b[len] = '\0';
		CHECK_STR_EQ(b, "{\"time\":\"2026-01-02T03:04:05.006Z\","
		    "\"level\":\"warn\",\"pid\":42,\"msg\":\"database "
		    "\\\"items\\\"\\u0009lost\"}\n");
	}
	free(b);
	CHECK_CASE(NULL);
}

/*
 * The overflow that was: a method of ~3,970 bytes made the line pass
 * 4092 bytes, where the old bound check wrapped, and the closing quote and
 * "}\n" were then written past the stack buffer.
 */
static void
test_old_overflow(void)
{
	char *method = malloc(LOG_LINE_MAX + 1), *b;
	struct log_access e = { "0123456789abcdef0123456789abcdef", NULL,
	    "/items", 405, 0.042 };
	json_t *root;
	size_t n, len;

	if (method == NULL)
		abort();
	for (n = 3900; n <= 4100 && n <= LOG_LINE_MAX; n++) {
		snprintf(case_name, sizeof(case_name), "method of %zu", n);
		CHECK_CASE(case_name);
		fill(method, n, "X");
		e.method = method;
		b = buffer_new(LOG_LINE_MAX);
		len = log_format_access(b, LOG_LINE_MAX, &stamp, &e);
		root = check_line(b, LOG_LINE_MAX, len);
		CHECK(root != NULL && is_truncated(root) &&
		    json_object_get(root, "path") != NULL);
		CHECK(len < 256);
		json_decref(root);
		free(b);
	}
	CHECK_CASE(NULL);
	free(method);
}

int
main(void)
{
	test_exact_lines();
	test_old_overflow();
	test_buffer_sizes();
	test_access_sweep(LOG_LINE_MAX);
	test_access_sweep(256);
	test_access_sweep(512);
	test_message_sweep();
	return check_finish();
}
