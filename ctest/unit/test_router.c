/*
 * router.c: what the dispatcher answers before (and instead of) a handler:
 * 404 for unknown paths and ids, 405 with Allow, the write preconditions in
 * the contract's order of concerns (token 403/401, media type 415, size
 * 413), 400 for a bad body, /metrics only on the internal listener; and an
 * access log line for every request.
 *
 * The database is configured at 127.0.0.1 port 1: none of the cases of
 * test_table() get that far. test_db_unreachable() does, on purpose: a
 * connection refused on loopback comes back at once.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "check.h"
#include "http.h"
#include "router.h"

#define TOKEN		"s3cret"
#define REQUEST_ID	"unit-test-request"

static struct config	config;
static struct app	app;

struct route_case {
	const char	*method;
	const char	*path;
	const char	*query;
	const char	*authorization;
	const char	*content_type;
	const char	*body;
	const char	*reason;	/* a substring of the error; NULL: any */
	const char	*allow;		/* the Allow header of a 405 */
	int		 status;
	bool		 internal;	/* came through the metrics listener */
	bool		 body_too_large;
};

/* Writes disabled: no token configured. */
static const struct route_case no_token_cases[] = {
	{ .method = "GET", .path = "/nope", .status = 404,
	    .reason = "not found" },
	{ .method = "GET", .path = "/", .status = 404 },
	{ .method = "GET", .path = "/ITEMS", .status = 404 },
	{ .method = "GET", .path = "/item", .status = 404 },
	{ .method = "GET", .path = "/items/", .status = 404 },
	{ .method = "GET", .path = "/itemsx", .status = 404 },
	{ .method = "GET", .path = "/status/", .status = 404 },
	{ .method = "GET", .path = "/status/1", .status = 404 },
	/* An {id} that is not a decimal in 1..2147483647 names nothing. */
	{ .method = "GET", .path = "/items/0", .status = 404 },
	{ .method = "GET", .path = "/items/abc", .status = 404 },
	{ .method = "GET", .path = "/items/-1", .status = 404 },
	{ .method = "GET", .path = "/items/+1", .status = 404 },
	{ .method = "GET", .path = "/items/1x", .status = 404 },
	{ .method = "GET", .path = "/items/1/", .status = 404 },
	{ .method = "GET", .path = "/items/1/2", .status = 404 },
	{ .method = "GET", .path = "/items/2147483648", .status = 404 },
	{ .method = "HEAD", .path = "/items/abc", .status = 404 },
	/* A 404 for an unknown id path even for methods no route has. */
	{ .method = "PATCH", .path = "/items/abc", .status = 404 },
	{ .method = "DELETE", .path = "/items/0", .status = 404 },
	/* 405 with the route's methods; before any token check. */
	{ .method = "PATCH", .path = "/items", .status = 405,
	    .allow = "GET, HEAD, POST" },
	{ .method = "PUT", .path = "/items", .status = 405,
	    .allow = "GET, HEAD, POST" },
	{ .method = "DELETE", .path = "/items", .status = 405,
	    .allow = "GET, HEAD, POST" },
	{ .method = "get", .path = "/items", .status = 405,
	    .allow = "GET, HEAD, POST" },
	{ .method = "PATCH", .path = "/items/1", .status = 405,
	    .allow = "GET, HEAD, PUT, DELETE" },
	{ .method = "POST", .path = "/items/1", .status = 405,
	    .allow = "GET, HEAD, PUT, DELETE" },
	{ .method = "POST", .path = "/status", .status = 405,
	    .allow = "GET, HEAD" },
	{ .method = "DELETE", .path = "/status", .status = 405,
	    .allow = "GET, HEAD" },
	/* No token configured: every write is a 403, whatever it carries. */
	{ .method = "POST", .path = "/items", .status = 403,
	    .reason = "writes are disabled" },
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json", .body = "{\"name\":\"x\"}",
	    .status = 403, .reason = "writes are disabled" },
	{ .method = "PUT", .path = "/items/1", .status = 403,
	    .reason = "writes are disabled" },
	{ .method = "DELETE", .path = "/items/1", .status = 403,
	    .reason = "writes are disabled" },
	/* /metrics does not exist on the public listener, not even as a 405. */
	{ .method = "GET", .path = "/metrics", .status = 404 },
	{ .method = "HEAD", .path = "/metrics", .status = 404 },
	{ .method = "POST", .path = "/metrics", .status = 404 },
	/* Internal, but this worker has no metrics file: a JSON 503, no crash. */
	{ .method = "GET", .path = "/metrics", .internal = true,
	    .status = 503 },
	{ .method = "POST", .path = "/metrics", .internal = true,
	    .status = 405, .allow = "GET, HEAD" },
	/* The query is the handler's business: a bad one is a 400 before the DB. */
	{ .method = "GET", .path = "/items", .query = "limit=0", .status = 400,
	    .reason = "limit" },
	{ .method = "GET", .path = "/items", .query = "after=1&after=2",
	    .status = 400, .reason = "after" },
};

/* Writes enabled: TOKEN configured. */
static const struct route_case token_cases[] = {
	{ .method = "POST", .path = "/items", .status = 401 },
	{ .method = "POST", .path = "/items", .authorization = "Basic eDp5",
	    .status = 401 },
	{ .method = "POST", .path = "/items", .authorization = "Bearer",
	    .status = 401 },
	{ .method = "POST", .path = "/items", .authorization = "Bearer wrong",
	    .content_type = "application/json", .body = "{\"name\":\"x\"}",
	    .status = 401 },
	{ .method = "POST", .path = "/items",
	    .authorization = "Bearer " TOKEN "x", .status = 401 },
	{ .method = "PUT", .path = "/items/1", .authorization = "Bearer nope",
	    .status = 401 },
	{ .method = "DELETE", .path = "/items/1", .status = 401 },
	{ .method = "DELETE", .path = "/items/1", .authorization = "Bearer nope",
	    .status = 401 },
	/* The right token, then the body's media type and size. */
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "text/plain", .body = "{\"name\":\"x\"}",
	    .status = 415, .reason = "application/json" },
	{ .method = "POST", .path = "/items", .authorization = "bearer " TOKEN,
	    .body = "{\"name\":\"x\"}", .status = 415 },
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "application/jsonx", .body = "{\"name\":\"x\"}",
	    .status = 415 },
	{ .method = "PUT", .path = "/items/1", .authorization = "Bearer " TOKEN,
	    .content_type = "text/json", .body = "{\"name\":\"x\"}",
	    .status = 415 },
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json", .body = "{\"name\":\"x\"}",
	    .body_too_large = true, .status = 413 },
	{ .method = "PUT", .path = "/items/7", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json; charset=utf-8",
	    .body = "{\"name\":\"x\"}", .body_too_large = true, .status = 413 },
	/* Past the preconditions: the body is validated before the DB. */
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json", .body = "{",
	    .status = 400, .reason = "invalid JSON" },
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json", .body = "",
	    .status = 400, .reason = "invalid JSON" },
	{ .method = "POST", .path = "/items", .authorization = "Bearer " TOKEN,
	    .content_type = "Application/JSON; charset=utf-8",
	    .body = "{\"name\":\"x\",\"id\":1}", .status = 400, .reason = "id" },
	{ .method = "PUT", .path = "/items/1", .authorization = "Bearer " TOKEN,
	    .content_type = "application/json", .body = "{\"name\":\" \"}",
	    .status = 400, .reason = "name" },
	/* Checks that do not depend on the token still apply. */
	{ .method = "GET", .path = "/items/0", .status = 404 },
	{ .method = "PATCH", .path = "/items", .authorization = "Bearer " TOKEN,
	    .status = 405, .allow = "GET, HEAD, POST" },
};

static void
request_init(struct request *req, const struct route_case *c)
{
	memset(req, 0, sizeof(*req));
	req->method_name = c->method;
	req->method = http_method_parse(c->method);
	req->path = c->path;
	req->query = c->query != NULL ? c->query : "";
	req->content_type = c->content_type;
	req->authorization = c->authorization;
	req->request_id = REQUEST_ID;
	req->body = c->body != NULL ? c->body : "";
	req->body_len = strlen(req->body);
	req->body_too_large = c->body_too_large;
	req->internal = c->internal;
}

/*
 * Dispatches with stderr (fd 2, which log.c writes to directly) sent to a
 * temporary file, and returns what was logged (malloc'd) or NULL.
 */
static char *
dispatch(const struct request *req, struct response *resp)
{
	char *log = NULL;
	long size;
	FILE *tmp;
	int saved;

	response_init(resp);
	tmp = tmpfile();
	if (tmp == NULL) {
		CHECK_FAIL("tmpfile: %s", strerror(errno));
		return NULL;
	}
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	if (saved == -1 || dup2(fileno(tmp), STDERR_FILENO) == -1) {
		CHECK_FAIL("dup: %s", strerror(errno));
		fclose(tmp);
		return NULL;
	}
	router_dispatch(&app, req, resp);
	dup2(saved, STDERR_FILENO);
	close(saved);
	/* log.c wrote through the descriptor: the FILE learns the size by seeking. */
	size = fseek(tmp, 0, SEEK_END) == 0 ? ftell(tmp) : -1;
	if (size >= 0 && fseek(tmp, 0, SEEK_SET) == 0) {
		log = calloc(1, (size_t)size + 1);
		if (log != NULL && fread(log, 1, (size_t)size, tmp) !=
		    (size_t)size) {
			free(log);
			log = NULL;
		}
	}
	fclose(tmp);
	return log;
}

/* The access line is the last line logged: one JSON object with the request's facts. */
static void
check_access_line(const char *log, const struct request *req, int status)
{
	const char *line, *end;
	json_error_t error;
	json_t *root;

	if (!CHECK(log != NULL && *log != '\0'))
		return;
	end = log + strlen(log);
	CHECK(end[-1] == '\n');
	line = end - 1;
	while (line > log && line[-1] != '\n')
		line--;
	root = json_loadb(line, (size_t)(end - line), 0, &error);
	if (!CHECK(root != NULL)) {
		fprintf(stderr, "\tlog: %s\n", log);
		return;
	}
	CHECK_STR_EQ(json_string_value(json_object_get(root, "request_id")),
	    req->request_id);
	CHECK_STR_EQ(json_string_value(json_object_get(root, "method")),
	    req->method_name);
	CHECK_STR_EQ(json_string_value(json_object_get(root, "path")),
	    req->path);
	CHECK_INT_EQ(json_integer_value(json_object_get(root, "status")),
	    status);
	CHECK(json_is_number(json_object_get(root, "duration_ms")));
	CHECK(json_is_string(json_object_get(root, "time")));
	json_decref(root);
}

/* Every error is a JSON object {"error": "<reason>"} (the contract). */
static void
check_error_body(const struct response *resp, const char *reason)
{
	json_error_t error;
	json_t *root, *value;

	CHECK_STR_EQ(resp->content_type, "application/json");
	if (!CHECK(resp->body != NULL))
		return;
	CHECK_INT_EQ(resp->body_len, strlen(resp->body));
	root = json_loadb(resp->body, resp->body_len, 0, &error);
	if (!CHECK(root != NULL))
		return;
	value = json_object_get(root, "error");
	CHECK(json_is_object(root) && json_object_size(root) == 1);
	CHECK(json_is_string(value));
	if (reason != NULL)
		CHECK_STR_CONTAINS(json_string_value(value), reason);
	json_decref(root);
}

static void
run_cases(const struct route_case *cases, size_t count, const char *token)
{
	const struct route_case *c;
	struct response resp;
	struct request req;
	char label[160];
	char *log;
	size_t i;

	config.api_token = (char *)token;
	for (i = 0; i < count; i++) {
		c = &cases[i];
		snprintf(label, sizeof(label), "%s %s%s%s%s, token %s",
		    c->method, c->path, c->query ? "?" : "",
		    c->query ? c->query : "", c->internal ? " (internal)" : "",
		    token != NULL ? "set" : "unset");
		CHECK_CASE(label);
		request_init(&req, c);
		log = dispatch(&req, &resp);
		CHECK_INT_EQ(resp.status, c->status);
		check_error_body(&resp, c->reason);
		CHECK_STR_EQ(resp.allow, c->allow);
		/* RFC 6750 section 3: a 401 carries the challenge, nothing else does. */
		CHECK_INT_EQ(resp.www_authenticate, c->status == 401);
		check_access_line(log, &req, c->status);
		free(log);
		response_finish(&resp);
	}
	CHECK_CASE(NULL);
	config.api_token = NULL;
}

static void
test_table(void)
{
	run_cases(no_token_cases, sizeof(no_token_cases) /
	    sizeof(no_token_cases[0]), NULL);
	run_cases(token_cases, sizeof(token_cases) / sizeof(token_cases[0]),
	    TOKEN);
}

/* The database is down (nothing listens on port 1): 503, never 500 or a hang. */
static void
test_db_unreachable(void)
{
	static const struct route_case cases[] = {
		{ .method = "GET", .path = "/items", .status = 503,
		    .reason = "database unavailable" },
		{ .method = "GET", .path = "/items/1", .status = 503,
		    .reason = "database unavailable" },
		{ .method = "HEAD", .path = "/items/2147483647", .status = 503,
		    .reason = "database unavailable" },
		{ .method = "POST", .path = "/items",
		    .authorization = "Bearer " TOKEN,
		    .content_type = "application/json",
		    .body = "{\"name\":\"x\"}", .status = 503,
		    .reason = "database unavailable" },
		{ .method = "PUT", .path = "/items/1",
		    .authorization = "Bearer " TOKEN,
		    .content_type = "application/json",
		    .body = "{\"name\":\"x\",\"description\":null}",
		    .status = 503, .reason = "database unavailable" },
		{ .method = "DELETE", .path = "/items/1",
		    .authorization = "Bearer " TOKEN, .status = 503,
		    .reason = "database unavailable" },
	};
	static const struct route_case status_case = {
		.method = "GET", .path = "/status", .status = 503,
	};
	struct response resp;
	struct request req;
	json_error_t error;
	json_t *root;
	char *log;

	run_cases(cases, sizeof(cases) / sizeof(cases[0]), TOKEN);

	/* /status says KO in its own shape, not as an error object. */
	CHECK_CASE("GET /status, database down");
	request_init(&req, &status_case);
	log = dispatch(&req, &resp);
	CHECK_INT_EQ(resp.status, 503);
	CHECK_STR_EQ(resp.content_type, "application/json");
	root = resp.body != NULL ? json_loadb(resp.body, resp.body_len, 0,
	    &error) : NULL;
	if (CHECK(root != NULL)) {
		CHECK_STR_EQ(json_string_value(json_object_get(root,
		    "status")), "KO");
		CHECK_STR_EQ(json_string_value(json_object_get(root,
		    "database_connection")), "KO");
		CHECK(json_is_string(json_object_get(root, "message")));
		json_decref(root);
	}
	check_access_line(log, &req, 503);
	free(log);
	response_finish(&resp);

	/* A healthcheck's 200 is not logged (compose suite); a failing one is. */
	CHECK_CASE("GET /status from the healthcheck, database down");
	request_init(&req, &status_case);
	req.request_id = HEALTHCHECK_REQUEST_ID;
	log = dispatch(&req, &resp);
	CHECK_INT_EQ(resp.status, 503);
	check_access_line(log, &req, 503);
	free(log);
	response_finish(&resp);
	CHECK_CASE(NULL);
}

int
main(void)
{
	config.db_host = (char *)"127.0.0.1";
	config.db_port = 1;
	config.db_name = (char *)"items";
	config.db_user = (char *)"items";
	config.db_password = (char *)"unused";
	config.listen = (char *)"127.0.0.1:9000";
	app.config = &config;
	app.metrics = NULL;
	app.db = db_create(&config, NULL);
	if (app.db == NULL) {
		CHECK_FAIL("db_create: out of memory");
		return check_finish();
	}
	test_table();
	test_db_unreachable();
	db_destroy(app.db);
	return check_finish();
}
