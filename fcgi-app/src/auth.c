#include "auth.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/*
 * Every byte of the secret is looked at whatever the candidate holds, and
 * the result is folded without branches, so timing does not tell how much
 * of a guess was right.
 */
static int
auth_equal(const char *secret, const char *candidate)
{
	size_t secret_len = strlen(secret), candidate_len = strlen(candidate);
	unsigned char diff = secret_len != candidate_len;
	size_t i;

	for (i = 0; i < secret_len; i++)
		diff |= (unsigned char)secret[i] ^
		    (unsigned char)candidate[i < candidate_len ? i : 0];
	return diff == 0;
}

enum auth_result
auth_check(const char *configured, const char *header)
{
	const char *token;

	if (configured == NULL)
		return AUTH_DISABLED;
	/* The scheme is case-insensitive (RFC 9110 section 11.1). */
	if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
		return AUTH_MISSING;
	token = header + 7;
	while (*token == ' ')
		token++;
	if (*token == '\0')
		return AUTH_MISSING;
	return auth_equal(configured, token) ? AUTH_OK : AUTH_WRONG;
}
