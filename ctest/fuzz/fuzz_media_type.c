/*
 * http_is_json_media_type(): the Content-Type of writes.
 * Oracle (RFC 9110 section 8.3.1, docs/api.md "Body"): the media type, i.e.
 * the text before the first ';' less trailing optional white space, equals
 * "application/json" case-insensitively; parameters may follow the ';'.
 * Look-alikes (application/jsonx, text/json, application/json-seq,
 * "application/json, text/html") are refused.
 */
#include <ctype.h>
#include <stdbool.h>

#include "fuzz.h"
#include "http.h"

static bool
model_is_json(const char *s)
{
	static const char want[] = "application/json";
	size_t len = strcspn(s, ";"), i;

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len != sizeof(want) - 1)
		return false;
	for (i = 0; i < len; i++)
		if (tolower((unsigned char)s[i]) != want[i])
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstring(data, size);

	FUZZ_CHECK(http_is_json_media_type(s) == model_is_json(s),
	    "application/json with optional parameters, nothing else");
	FUZZ_CHECK(!http_is_json_media_type(NULL), "absent is not JSON");
	free(s);
	return 0;
}
