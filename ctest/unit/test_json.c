/*
 * json.c: validation of POST/PUT bodies (the contract's Writes section) and
 * the exact JSON the API writes. The validation cases are data, in the file
 * named by JSON_CASES (json-cases.txt, see its header for the format); the
 * values a valid body yields and the encoders are checked here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "item.h"
#include "json.h"

/* What the handler gives json_parse_item_input (handler_items.c). */
#define REASON_SIZE 256

/* The file has well over this many cases: fewer means it was not read right. */
#define CASES_MIN 100

/* A growable byte string for decoding a case; exits when memory runs out. */
struct bytes {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

static void
bytes_add(struct bytes *b, const char *data, size_t len)
{
	char *p;

	if (len == 0)
		return;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2 + 64;
		p = realloc(b->data, b->cap);
		if (p == NULL) {
			perror("realloc");
			exit(1);
		}
		b->data = p;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends the byte that "\xHH" at s spells; -1 if it does not spell one. */
static int
decode_hex_escape(const char *s, size_t len, struct bytes *out)
{
	int hi, lo;
	char c;

	if (len < 4 || s[0] != '\\' || s[1] != 'x')
		return -1;
	hi = hex_digit(s[2]);
	lo = hex_digit(s[3]);
	if (hi < 0 || lo < 0)
		return -1;
	c = (char)(hi * 16 + lo);
	bytes_add(out, &c, 1);
	return 0;
}

/*
 * Decodes s[0..len) into out: \xHH is one byte, \{N:TEXT} is TEXT (where
 * \xHH also works) repeated N times, anything else is itself.
 * Returns 0, or -1 for a malformed escape.
 */
static int
case_decode(const char *s, size_t len, struct bytes *out)
{
	struct bytes text = { NULL, 0, 0 };
	const char *brace, *p;
	unsigned long count, n;
	char *end;
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] != '\\' || i + 1 >= len ||
		    (s[i + 1] != 'x' && s[i + 1] != '{')) {
			bytes_add(out, &s[i], 1);
			continue;
		}
		if (s[i + 1] == 'x') {
			if (decode_hex_escape(s + i, len - i, out) == -1)
				goto fail;
			i += 3;
			continue;
		}
		/* \{N:TEXT} */
		brace = memchr(s + i, '}', len - i);
		if (brace == NULL)
			goto fail;
		errno = 0;
		count = strtoul(s + i + 2, &end, 10);
		if (errno != 0 || end == s + i + 2 || *end != ':' || end > brace)
			goto fail;
		text.len = 0;
		for (p = end + 1; p < brace; p++) {
			if (p + 1 == brace || p[0] != '\\' || p[1] != 'x') {
				bytes_add(&text, p, 1);
				continue;
			}
			if (decode_hex_escape(p, (size_t)(brace - p),
			    &text) == -1)
				goto fail;
			p += 3;
		}
		for (n = 0; n < count; n++)
			bytes_add(out, text.data, text.len);
		i = (size_t)(brace - s);
	}
	free(text.data);
	return 0;
fail:
	free(text.data);
	return -1;
}

/* Runs one case; label names the file and line. */
static void
run_case(const char *label, const char *expect, const char *body, size_t len)
{
	static char sentinel[] = "left over";
	struct item_input out;
	char reason[REASON_SIZE];
	char *encoded;
	int rc;

	CHECK_CASE(label);
	/* Whatever *out held before, a failure must leave it empty. */
	out.name = sentinel;
	out.description = sentinel;
	reason[0] = '\0';
	rc = json_parse_item_input(body, len, &out, reason, sizeof(reason));
	if (strcmp(expect, "ok") == 0) {
		if (CHECK_INT_EQ(rc, 0))
			CHECK(out.name != NULL && out.name != sentinel &&
			    out.description != sentinel);
		else
			fprintf(stderr, "\treason: %s\n", reason);
		if (rc == 0)
			item_input_finish(&out);
	} else {
		CHECK_INT_EQ(rc, -1);
		CHECK_STR_CONTAINS(reason, expect + strlen("error:"));
		CHECK(out.name == NULL);
		CHECK(out.description == NULL);
		/*
		 * The reason becomes the 400's body: it must be valid UTF-8
		 * even when the input was not, or the encoder fails.
		 */
		encoded = json_encode_error(reason);
		CHECK(encoded != NULL);
		free(encoded);
		if (rc == 0)
			item_input_finish(&out);
	}
	CHECK_CASE(NULL);
}

static void
test_cases_file(void)
{
	struct bytes body = { NULL, 0, 0 };
	const char *path = getenv("JSON_CASES");
	char *line = NULL, *tab, *copy;
	char label[256];
	size_t line_size = 0, len, cases = 0;
	unsigned int lineno = 0;
	ssize_t n;
	FILE *fp;

	if (path == NULL) {
		CHECK_FAIL("JSON_CASES is not set (meson.build sets it)");
		return;
	}
	fp = fopen(path, "r");
	if (fp == NULL) {
		CHECK_FAIL("%s: %s", path, strerror(errno));
		return;
	}
	for (;;) {
		n = getline(&line, &line_size, fp);
		if (n == -1)
			break;
		lineno++;
		len = (size_t)n;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		snprintf(label, sizeof(label), "json-cases.txt:%u", lineno);
		tab = memchr(line, '\t', len);
		if (tab != NULL)
			*tab = '\0';
		if (tab == NULL || (strcmp(line, "ok") != 0 &&
		    strncmp(line, "error:", 6) != 0)) {
			CHECK_FAIL("%s: want \"ok\" or \"error:...\", a tab, "
			    "then the body", label);
			continue;
		}
		body.len = 0;
		if (case_decode(tab + 1, len - (size_t)(tab + 1 - line),
		    &body) == -1) {
			CHECK_FAIL("%s: malformed \\x or \\{ escape", label);
			continue;
		}
		/* Exactly len bytes, no NUL after: the parser must use len. */
		copy = malloc(body.len > 0 ? body.len : 1);
		if (copy == NULL) {
			perror("malloc");
			exit(1);
		}
		if (body.len > 0)
			memcpy(copy, body.data, body.len);
		run_case(label, line, copy, body.len);
		free(copy);
		cases++;
	}
	free(line);
	free(body.data);
	fclose(fp);
	CHECK(cases >= CASES_MIN);
	printf("%zu cases from %s\n", cases, path);
}

/* What a valid body yields: text exactly as sent, description NULL when absent or null. */
static void
test_values(void)
{
	struct value_case {
		const char	*body;
		const char	*name;
		const char	*description;
	} cases[] = {
		{ "{\"name\":\"  Zidane  \"}", "  Zidane  ", NULL },
		{ "{\"name\":\"x\",\"description\":null}", "x", NULL },
		{ "{\"name\":\"x\",\"description\":\"\"}", "x", "" },
		{ "{\"description\":\"d\",\"name\":\"n\"}", "n", "d" },
		{ "{\"name\":\"caf\\u00e9 \\ud83d\\ude00\"}",
		    "caf\xc3\xa9 \xf0\x9f\x98\x80", NULL },
		{ "{\"name\":\"q\\\"b\\\\s\\/t\\tn\\nx\"}",
		    "q\"b\\s/t\tn\nx", NULL },
		{ "{\"name\":\"\\u3000x\\u3000\"}",
		    "\xe3\x80\x80x\xe3\x80\x80", NULL },
		{ "{\"name\":\"Robert'); DROP TABLE items;--\","
		    "\"description\":\"<b>&amp;</b>\"}",
		    "Robert'); DROP TABLE items;--", "<b>&amp;</b>" },
	};
	struct item_input out;
	char reason[REASON_SIZE];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i].body);
		if (!CHECK_INT_EQ(json_parse_item_input(cases[i].body,
		    strlen(cases[i].body), &out, reason, sizeof(reason)), 0))
			continue;
		CHECK_STR_EQ(out.name, cases[i].name);
		CHECK_STR_EQ(out.description, cases[i].description);
		item_input_finish(&out);
		CHECK(out.name == NULL && out.description == NULL);
	}
	CHECK_CASE(NULL);
}

/* The body is not NUL-terminated in general: only len bytes count. */
static void
test_body_len(void)
{
	static const char body[] = "{\"name\":\"a\"}trailing garbage";
	struct item_input out;
	char reason[REASON_SIZE];

	CHECK_INT_EQ(json_parse_item_input(body, 12, &out, reason,
	    sizeof(reason)), 0);
	CHECK_STR_EQ(out.name, "a");
	item_input_finish(&out);
	CHECK_INT_EQ(json_parse_item_input(body, 11, &out, reason,
	    sizeof(reason)), -1);
	CHECK_STR_CONTAINS(reason, "invalid JSON");
	/* An empty body (the router passes "" with length 0). */
	CHECK_INT_EQ(json_parse_item_input("", 0, &out, reason,
	    sizeof(reason)), -1);
	CHECK_STR_CONTAINS(reason, "invalid JSON");
	CHECK(out.name == NULL && out.description == NULL);
}

/* Takes ownership of got. */
static void
check_encoded(char *got, const char *want)
{
	CHECK_STR_EQ(got, want);
	free(got);
}

static void
test_encode(void)
{
	struct item item = { 0 }, other;
	struct buf b;
	char name[] = "Zin\xc3\xa9" "dine \"Zizou\" <b>&amp;</b> \xf0\x9f\x98\x80"
	    " a/b \\ \t\x01";
	char description[] = "line 1\nline 2";
	char created_at[] = "2026-11-29T10:00:00Z";

	check_encoded(json_encode_error("not found"),
	    "{\"error\":\"not found\"}");
	check_encoded(json_encode_error("name: \"x\" \\ <b>"),
	    "{\"error\":\"name: \\\"x\\\" \\\\ <b>\"}");

	/*
	 * Keys in the contract's order; text as sent: quotes and the
	 * backslash escaped, control characters as \n, \t or \u00XX, HTML and
	 * emoji left as they are (JSON needs no more), '/' not escaped.
	 */
	item.id = 7;
	item.name = name;
	item.description = NULL;
	memcpy(item.created_at, created_at, sizeof(created_at));
	check_encoded(json_encode_item(&item),
	    "{\"id\":7,"
	    "\"name\":\"Zin\xc3\xa9" "dine \\\"Zizou\\\" <b>&amp;</b> "
	    "\xf0\x9f\x98\x80 a/b \\\\ \\t\\u0001\","
	    "\"description\":null,"
	    "\"created_at\":\"2026-11-29T10:00:00Z\"}");

	item.id = INT32_MAX;
	item.name = (char *)"x";
	item.description = description;
	check_encoded(json_encode_item(&item),
	    "{\"id\":2147483647,\"name\":\"x\","
	    "\"description\":\"line 1\\nline 2\","
	    "\"created_at\":\"2026-11-29T10:00:00Z\"}");

	/* Items appended one after another, as a page is built. */
	other = item;
	other.id = 1;
	other.description = NULL;
	buf_init(&b, 4096);
	json_add_item(&b, &other);
	buf_add(&b, ",", 1);
	other.id = 2;
	other.name = (char *)"y";
	other.description = description;
	json_add_item(&b, &other);
	check_encoded(buf_steal(&b, NULL),
	    "{\"id\":1,\"name\":\"x\",\"description\":null,"
	    "\"created_at\":\"2026-11-29T10:00:00Z\"},"
	    "{\"id\":2,\"name\":\"y\",\"description\":\"line 1\\nline 2\","
	    "\"created_at\":\"2026-11-29T10:00:00Z\"}");

	/* Invalid UTF-8 fails the whole buffer, not just the one string. */
	buf_init(&b, 4096);
	json_add_item(&b, &other);
	other.name = (char *)"bad \xc3(";
	json_add_item(&b, &other);
	CHECK(b.failed);
	CHECK(buf_steal(&b, NULL) == NULL);
	buf_finish(&b);
}

static void
test_encode_status(void)
{
	check_encoded(json_encode_status(true, "<<< OK >>>"),
	    "{\"status\":\"OK\",\"database_connection\":\"OK\","
	    "\"message\":\"<<< OK >>>\"}");
	check_encoded(json_encode_status(false, "connection refused"),
	    "{\"status\":\"KO\",\"database_connection\":\"KO\","
	    "\"message\":\"connection refused\"}");
}

int
main(void)
{
	test_cases_file();
	test_values();
	test_body_len();
	test_encode();
	test_encode_status();
	return check_finish();
}
