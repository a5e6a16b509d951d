/*
 * The request and response as the application sees them, independent of
 * FastCGI: fcgi.c fills a struct request and writes a struct response.
 */
#ifndef ITEMS_HTTP_H
#define ITEMS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "etag.h"

/* The values are the codes themselves (RFC 9110 section 15). */
enum http_status {
	HTTP_OK = 200,
	HTTP_CREATED = 201,
	HTTP_NO_CONTENT = 204,
	HTTP_NOT_MODIFIED = 304,
	HTTP_BAD_REQUEST = 400,
	HTTP_UNAUTHORIZED = 401,
	HTTP_FORBIDDEN = 403,
	HTTP_NOT_FOUND = 404,
	HTTP_METHOD_NOT_ALLOWED = 405,
	HTTP_PRECONDITION_FAILED = 412,
	HTTP_CONTENT_TOO_LARGE = 413,
	HTTP_UNSUPPORTED_MEDIA_TYPE = 415,
	HTTP_INTERNAL_SERVER_ERROR = 500,
	HTTP_SERVICE_UNAVAILABLE = 503,
	HTTP_GATEWAY_TIMEOUT = 504,
};

enum http_method {
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_METHOD_OTHER,
	HTTP_METHOD_COUNT
};

/* Bodies larger than this are refused with 413 (the API contract). */
#define HTTP_BODY_MAX ((size_t)128 * 1024)

/* Every string is borrowed from the transport and lives until the response is written. */
struct request {
	enum http_method method;
	const char	*method_name;
	const char	*path;		/* decoded and normalised by nginx */
	const char	*query;		/* raw query string, "" when absent */
	const char	*content_type;	/* NULL when absent */
	const char	*authorization;	/* NULL when absent */
	const char	*if_match;	/* NULL when absent */
	const char	*if_none_match;	/* NULL when absent */
	const char	*request_id;	/* "-" when absent */
	const char	*body;
	size_t		 body_len;
	bool		 body_too_large;
	bool		 internal;	/* came through the internal (metrics) listener */
};

struct response;

/*
 * How a handler sends a body too large to hold: the transport provides it
 * (fcgi.c); without one (unit tests), a response can only be held whole.
 */
struct response_stream {
	/* Writes the status and headers, with no Content-Length. 0, or -1. */
	int	(*start)(void *ctx, const struct response *resp);
	/* Writes a part of the body. 0, or -1 when the peer is gone. */
	int	(*write)(void *ctx, const char *data, size_t len);
	void	*ctx;
};

struct response {
	enum http_status status;
	const char	*content_type;	/* static string */
	char		*body;		/* owned; NULL for no body */
	size_t		 body_len;
	const char	*allow;		/* static string, for 405 */
	bool		 www_authenticate;
	char		 location[48];
	char		 link[96];
	char		 etag[ETAG_BUF_SIZE];	/* "" for none */
	const struct response_stream *stream;	/* borrowed; NULL: hold only */
	bool		 started;	/* the head was sent: only body can follow */
	bool		 cut;		/* the body could not be finished */
};

enum http_method http_method_parse(const char *name);
const char	*http_method_name(enum http_method method);
const char	*http_status_reason(enum http_status status);

/*
 * True for "application/json" with optional parameters ("; charset=utf-8"),
 * compared case-insensitively (RFC 9110 section 8.3.1); false for look-alikes
 * such as "application/jsonx".
 */
bool	http_is_json_media_type(const char *content_type);

void	response_init(struct response *resp);
/* Frees what the response owns; the struct can be reused after response_init(). */
void	response_finish(struct response *resp);
/* Takes ownership of body (malloc'd JSON text, may be NULL after an allocation failure). */
enum http_status response_json(struct response *resp, enum http_status status,
	    char *body);
/*
 * Streaming, for a body too large to hold: response_start() sends the status
 * and headers set so far (no Content-Length), response_write() each part.
 * Both return 0, or -1 when there is no stream or the peer is gone. Once
 * started, a body that cannot be finished is response_cut(): the transport
 * then ends the response so that the client sees it incomplete, never as a
 * whole answer.
 */
int	response_start(struct response *resp, enum http_status status,
	    const char *content_type);
int	response_write(struct response *resp, const char *data, size_t len);
void	response_cut(struct response *resp);

/* Sets status and a {"error": reason} body; returns status for `return response_error(...)`. */
enum http_status response_error(struct response *resp, enum http_status status,
	    const char *reason);

#endif
