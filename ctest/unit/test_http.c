/* http.c: media types, methods, and the JSON error responses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http.h"

struct media_case {
	const char	*content_type;
	bool		 json;
};

static const struct media_case media_cases[] = {
	{ "application/json", true },
	/* Type and subtype are case-insensitive (RFC 9110 section 8.3.1). */
	{ "Application/JSON", true },
	{ "APPLICATION/JSON", true },
	/* Parameters, with or without white space before the ';'. */
	{ "application/json; charset=utf-8", true },
	{ "application/json;charset=UTF-8", true },
	{ "application/json ; charset=utf-8", true },
	{ "application/json\t; charset=utf-8", true },
	{ "application/json;", true },
	{ "application/json ", true },
	/* Look-alikes. */
	{ "application/jsonx", false },
	{ "application/json+x", false },
	{ "application/json-patch+json", false },
	{ "application/json5", false },
	{ "application/jso", false },
	{ "application/", false },
	{ "application/xml", false },
	{ "application/problem+json", false },
	{ "text/json", false },
	{ "text/plain", false },
	{ "application/x-www-form-urlencoded", false },
	{ "multipart/form-data; boundary=x", false },
	{ "application/json,text/plain", false },
	{ "application /json", false },
	{ "", false },
	{ NULL, false },
};

static void
test_media_type(void)
{
	const struct media_case *c;
	size_t i;

	for (i = 0; i < sizeof(media_cases) / sizeof(media_cases[0]); i++) {
		c = &media_cases[i];
		CHECK_CASE(c->content_type ? c->content_type : "NULL");
		CHECK_INT_EQ(http_is_json_media_type(c->content_type), c->json);
	}
	CHECK_CASE(NULL);
}

struct method_case {
	const char		*name;
	enum http_method	 method;
};

static const struct method_case method_cases[] = {
	{ "GET", HTTP_GET },
	{ "HEAD", HTTP_HEAD },
	{ "POST", HTTP_POST },
	{ "PUT", HTTP_PUT },
	{ "DELETE", HTTP_DELETE },
	/* Method names are case-sensitive (RFC 9110 section 9.1). */
	{ "get", HTTP_METHOD_OTHER },
	{ "Post", HTTP_METHOD_OTHER },
	{ "PATCH", HTTP_METHOD_OTHER },
	{ "OPTIONS", HTTP_METHOD_OTHER },
	{ "TRACE", HTTP_METHOD_OTHER },
	{ "CONNECT", HTTP_METHOD_OTHER },
	{ "GETX", HTTP_METHOD_OTHER },
	{ "GE", HTTP_METHOD_OTHER },
	{ " GET", HTTP_METHOD_OTHER },
	{ "OTHER", HTTP_METHOD_OTHER },
	{ "", HTTP_METHOD_OTHER },
};

static void
test_methods(void)
{
	const struct method_case *c;
	int m;
	size_t i;

	for (i = 0; i < sizeof(method_cases) / sizeof(method_cases[0]); i++) {
		c = &method_cases[i];
		CHECK_CASE(c->name);
		CHECK_INT_EQ(http_method_parse(c->name), c->method);
	}
	CHECK_CASE(NULL);
	/* Names and parse agree for every known method. */
	for (m = 0; m < HTTP_METHOD_OTHER; m++)
		CHECK_INT_EQ(http_method_parse(http_method_name(
		    (enum http_method)m)), m);
	CHECK_STR_EQ(http_method_name(HTTP_METHOD_OTHER), "OTHER");
}

static void
test_status_reason(void)
{
	CHECK_STR_EQ(http_status_reason(HTTP_OK), "OK");
	CHECK_STR_EQ(http_status_reason(HTTP_CREATED), "Created");
	CHECK_STR_EQ(http_status_reason(HTTP_NO_CONTENT), "No Content");
	CHECK_STR_EQ(http_status_reason(HTTP_METHOD_NOT_ALLOWED),
	    "Method Not Allowed");
	/* RFC 9110 section 15.5.14 renamed it from "Payload Too Large". */
	CHECK_STR_EQ(http_status_reason(HTTP_CONTENT_TOO_LARGE),
	    "Content Too Large");
	CHECK_STR_EQ(http_status_reason(HTTP_UNSUPPORTED_MEDIA_TYPE),
	    "Unsupported Media Type");
	CHECK_STR_EQ(http_status_reason(HTTP_SERVICE_UNAVAILABLE),
	    "Service Unavailable");
}

static void
test_response_error(void)
{
	struct response resp;

	response_init(&resp);
	CHECK(resp.body == NULL);
	CHECK_INT_EQ(resp.body_len, 0);
	CHECK(resp.allow == NULL);
	CHECK(!resp.www_authenticate);

	CHECK_INT_EQ(response_error(&resp, HTTP_NOT_FOUND, "not found"),
	    HTTP_NOT_FOUND);
	CHECK_INT_EQ(resp.status, HTTP_NOT_FOUND);
	CHECK_STR_EQ(resp.content_type, "application/json");
	CHECK_STR_EQ(resp.body, "{\"error\":\"not found\"}");
	CHECK_INT_EQ(resp.body_len, strlen("{\"error\":\"not found\"}"));

	/* A second error replaces the first body (ASan sees a leak otherwise). */
	response_error(&resp, HTTP_BAD_REQUEST,
	    "name: \"x\" <b>caf\xc3\xa9</b>\\\n");
	CHECK_INT_EQ(resp.status, HTTP_BAD_REQUEST);
	CHECK_STR_EQ(resp.body,
	    "{\"error\":\"name: \\\"x\\\" <b>caf\xc3\xa9</b>\\\\\\n\"}");
	CHECK_INT_EQ(resp.body_len, strlen(resp.body));

	response_finish(&resp);
	CHECK(resp.body == NULL);
	CHECK_INT_EQ(resp.body_len, 0);
	response_finish(&resp);
}

static void
test_response_json(void)
{
	struct response resp;
	char *body;

	response_init(&resp);
	body = strdup("{\"id\":1}");
	CHECK_INT_EQ(response_json(&resp, HTTP_CREATED, body), HTTP_CREATED);
	CHECK_INT_EQ(resp.status, HTTP_CREATED);
	CHECK_STR_EQ(resp.content_type, "application/json");
	CHECK(resp.body == body);
	CHECK_INT_EQ(resp.body_len, 8);
	/* NULL is the encoder running out of memory: a 500 that is still JSON. */
	CHECK_INT_EQ(response_json(&resp, HTTP_OK, NULL),
	    HTTP_INTERNAL_SERVER_ERROR);
	CHECK_INT_EQ(resp.status, HTTP_INTERNAL_SERVER_ERROR);
	CHECK_STR_CONTAINS(resp.body, "{\"error\":");
	response_finish(&resp);
}

int
main(void)
{
	test_media_type();
	test_methods();
	test_status_reason();
	test_response_error();
	test_response_json();
	return check_finish();
}
