/*
 * auth_check(): the Authorization header of writes against the configured
 * token. Input: one flags byte (bit 0: no token configured; bit 1: no
 * header), then "<configured token>\n<header value>".
 * Oracle (docs/api.md "Token"): no token configured -> DISABLED; no header,
 * a scheme other than "Bearer" (any case) followed by a space, or an empty
 * token -> MISSING; the token after the spaces equal to the configured one,
 * byte for byte -> OK; else WRONG.
 */
#include <strings.h>

#include "auth.h"
#include "fuzz.h"

static enum auth_result
model_auth(const char *configured, const char *header)
{
	const char *token;

	if (configured == NULL)
		return AUTH_DISABLED;
	if (header == NULL || strlen(header) < 7 ||
	    strncasecmp(header, "bearer", 6) != 0 || header[6] != ' ')
		return AUTH_MISSING;
	token = header + 7;
	token += strspn(token, " ");
	if (*token == '\0')
		return AUTH_MISSING;
	return strcmp(token, configured) == 0 ? AUTH_OK : AUTH_WRONG;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl;
	char *configured = NULL, *header = NULL;
	size_t split;
	uint8_t flags;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	nl = memchr(data, '\n', size);
	split = nl != NULL ? (size_t)(nl - data) : size;
	if (!(flags & 1))
		configured = fuzz_cstring(data, split);
	if (!(flags & 2))
		header = fuzz_cstring(nl != NULL ? nl + 1 : data + size,
		    nl != NULL ? size - split - 1 : 0);
	FUZZ_CHECK(auth_check(configured, header) ==
	    model_auth(configured, header), "the contract's decision");
	free(configured);
	free(header);
	return 0;
}
