/*
 * The hand-written JSON encoder (json.c) against jansson, byte for byte.
 * Oracle: json_dumps(JSON_COMPACT) of the same object, which is what the
 * encoder replaced (docs/performance.md); a string jansson refuses (not
 * UTF-8) must make the encoder fail too. The input is split at its first
 * NUL into a name and a description (none: null).
 */
#include <jansson.h>

#include "fuzz.h"
#include "item.h"
#include "json.h"

static char *
jansson_item(const struct item *item)
{
	json_t *value;
	char *text;

	value = json_pack("{s:i, s:s, s:s?, s:s}", "id", (json_int_t)item->id,
	    "name", item->name, "description", item->description,
	    "created_at", item->created_at);
	if (value == NULL)
		return NULL;
	text = json_dumps(value, JSON_COMPACT);
	json_decref(value);
	return text;
}

static char *
jansson_error(const char *reason)
{
	json_t *value;
	char *text;

	value = json_pack("{s:s}", "error", reason);
	if (value == NULL)
		return NULL;
	text = json_dumps(value, JSON_COMPACT);
	json_decref(value);
	return text;
}

static void
check_same(char *ours, char *theirs, const char *what)
{
	FUZZ_CHECK((ours == NULL) == (theirs == NULL), what);
	if (ours != NULL && theirs != NULL)
		FUZZ_CHECK(strcmp(ours, theirs) == 0, what);
	free(ours);
	free(theirs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = calloc(size + 1, 1);
	size_t first;
	struct item item = { .created_at = "2026-11-29T10:00:00Z" };

	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	first = strlen(s);
	item.id = (int32_t)(size & 0x7fffffff);
	item.name = s;
	item.description = first < size ? s + first + 1 : NULL;
	check_same(json_encode_item(&item), jansson_item(&item),
	    "an item encodes as jansson encodes it");
	check_same(json_encode_error(s), jansson_error(s),
	    "an error body encodes as jansson encodes it");
	free(s);
	return 0;
}
