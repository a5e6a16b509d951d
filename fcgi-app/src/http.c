#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"

static const char *const method_names[HTTP_METHOD_COUNT] = {
	[HTTP_GET] = "GET",
	[HTTP_HEAD] = "HEAD",
	[HTTP_POST] = "POST",
	[HTTP_PUT] = "PUT",
	[HTTP_DELETE] = "DELETE",
	[HTTP_METHOD_OTHER] = "OTHER",
};

/* Method names are case-sensitive (RFC 9110 section 9.1). */
enum http_method
http_method_parse(const char *name)
{
	int m;

	for (m = 0; m < HTTP_METHOD_OTHER; m++)
		if (strcmp(name, method_names[m]) == 0)
			return (enum http_method)m;
	return HTTP_METHOD_OTHER;
}

const char *
http_method_name(enum http_method method)
{
	return method_names[method];
}

const char *
http_status_reason(enum http_status status)
{
	switch (status) {
	case HTTP_OK:				return "OK";
	case HTTP_CREATED:			return "Created";
	case HTTP_NO_CONTENT:			return "No Content";
	case HTTP_NOT_MODIFIED:			return "Not Modified";
	case HTTP_BAD_REQUEST:			return "Bad Request";
	case HTTP_UNAUTHORIZED:			return "Unauthorized";
	case HTTP_FORBIDDEN:			return "Forbidden";
	case HTTP_NOT_FOUND:			return "Not Found";
	case HTTP_METHOD_NOT_ALLOWED:		return "Method Not Allowed";
	case HTTP_PRECONDITION_FAILED:		return "Precondition Failed";
	case HTTP_CONTENT_TOO_LARGE:		return "Content Too Large";
	case HTTP_UNSUPPORTED_MEDIA_TYPE:	return "Unsupported Media Type";
	case HTTP_INTERNAL_SERVER_ERROR:	return "Internal Server Error";
	case HTTP_SERVICE_UNAVAILABLE:		return "Service Unavailable";
	case HTTP_GATEWAY_TIMEOUT:		return "Gateway Timeout";
	}
	return "Unknown";
}

bool
http_is_json_media_type(const char *content_type)
{
	static const char type[] = "application/json";
	const char *rest;

	if (content_type == NULL ||
	    strncasecmp(content_type, type, sizeof(type) - 1) != 0)
		return false;
	rest = content_type + sizeof(type) - 1;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	return *rest == '\0' || *rest == ';';
}

void
response_init(struct response *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->status = HTTP_INTERNAL_SERVER_ERROR;
}

int
response_start(struct response *resp, enum http_status status,
    const char *content_type)
{
	if (resp->stream == NULL || resp->started)
		return -1;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = status;
	resp->content_type = content_type;
	resp->started = true;
	if (resp->stream->start(resp->stream->ctx, resp) == -1) {
		resp->cut = true;
		return -1;
	}
	return 0;
}

int
response_write(struct response *resp, const char *data, size_t len)
{
	if (!resp->started || resp->cut)
		return -1;
	if (resp->stream->write(resp->stream->ctx, data, len) == -1) {
		resp->cut = true;
		return -1;
	}
	return 0;
}

void
response_cut(struct response *resp)
{
	resp->cut = true;
}

void
response_finish(struct response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}

enum http_status
response_json(struct response *resp, enum http_status status, char *body)
{
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	if (body == NULL)
		return response_error(resp, HTTP_INTERNAL_SERVER_ERROR,
		    "out of memory");
	resp->status = status;
	resp->content_type = "application/json";
	resp->body = body;
	resp->body_len = strlen(body);
	return status;
}

enum http_status
response_error(struct response *resp, enum http_status status,
    const char *reason)
{
	/* A fixed fallback keeps the body JSON even when encoding fails. */
	static const char fallback[] = "{\"error\":\"out of memory\"}";
	char *body;

	free(resp->body);
	body = json_encode_error(reason);
	if (body == NULL)
		body = strdup(fallback);
	resp->status = status;
	resp->content_type = "application/json";
	resp->body = body;
	resp->body_len = body != NULL ? strlen(body) : 0;
	return status;
}
