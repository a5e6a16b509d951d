/* Bearer-token authorisation of writes (RFC 6750). */
#ifndef ITEMS_AUTH_H
#define ITEMS_AUTH_H

enum auth_result {
	AUTH_OK,
	AUTH_DISABLED,		/* no token configured: writes are off (403) */
	AUTH_MISSING,		/* no usable Authorization header (401) */
	AUTH_WRONG,		/* a token that does not match (401) */
};

/*
 * Checks an Authorization header value (NULL when absent) against the
 * configured token (NULL when none). The comparison takes time that depends
 * on the configured token's length only, not on where the two differ.
 */
enum auth_result auth_check(const char *configured, const char *header);

#endif
