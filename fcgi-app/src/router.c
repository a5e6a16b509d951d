#include "router.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "handlers.h"
#include "log.h"
#include "params.h"

/* What a method of a route needs before its handler runs. */
enum {
	NEEDS_TOKEN = 1 << 0,		/* Authorization: Bearer (401/403) */
	NEEDS_JSON_BODY = 1 << 1,	/* application/json, at most HTTP_BODY_MAX (415/413) */
};

struct route_method {
	handler_fn	handler;
	int		flags;
};

struct route {
	const char	*path;		/* exact, or the prefix before {id} */
	const char	*allow;		/* the Allow header of a 405 */
	struct route_method methods[HTTP_METHOD_COUNT];
	enum route_id	 id;
	bool		 has_id;
	bool		 internal_only;	/* only through the internal listener */
};

static const struct route routes[] = {
	{ .id = ROUTE_STATUS, .path = "/status", .allow = "GET, HEAD",
	  .methods = {
		[HTTP_GET] = { status_get, 0 },
		[HTTP_HEAD] = { status_get, 0 },
	} },
	{ .id = ROUTE_ITEMS, .path = "/items", .allow = "GET, HEAD, POST",
	  .methods = {
		[HTTP_GET] = { items_list, 0 },
		[HTTP_HEAD] = { items_list, 0 },
		[HTTP_POST] = { items_create, NEEDS_TOKEN | NEEDS_JSON_BODY },
	} },
	{ .id = ROUTE_ITEM, .path = "/items/", .has_id = true,
	  .allow = "GET, HEAD, PUT, DELETE",
	  .methods = {
		[HTTP_GET] = { item_get, 0 },
		[HTTP_HEAD] = { item_get, 0 },
		[HTTP_PUT] = { item_replace, NEEDS_TOKEN | NEEDS_JSON_BODY },
		[HTTP_DELETE] = { item_delete, NEEDS_TOKEN },
	} },
	{ .id = ROUTE_METRICS, .path = "/metrics", .internal_only = true,
	  .allow = "GET, HEAD",
	  .methods = {
		[HTTP_GET] = { metrics_get, 0 },
		[HTTP_HEAD] = { metrics_get, 0 },
	} },
};

static const struct route *
router_match(const struct request *req, struct route_args *args)
{
	const struct route *r;
	size_t i, len;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		r = &routes[i];
		if (r->internal_only && !req->internal)
			continue;
		if (!r->has_id) {
			if (strcmp(req->path, r->path) == 0)
				return r;
			continue;
		}
		len = strlen(r->path);
		/* An {id} that is not a decimal in 1..INT32_MAX names nothing: 404. */
		if (strncmp(req->path, r->path, len) == 0 &&
		    params_parse_id(req->path + len, &args->id) == 0)
			return r;
	}
	return NULL;
}

static enum http_status
router_check_preconditions(const struct app *app, const struct request *req,
    int flags, struct response *resp)
{
	if (flags & NEEDS_TOKEN) {
		switch (auth_check(app->config->api_token, req->authorization)) {
		case AUTH_OK:
			break;
		case AUTH_DISABLED:
			return response_error(resp, HTTP_FORBIDDEN,
			    "writes are disabled");
		case AUTH_MISSING:
			resp->www_authenticate = true;
			return response_error(resp, HTTP_UNAUTHORIZED,
			    "missing bearer token (Authorization: Bearer <token>)");
		case AUTH_WRONG:
			resp->www_authenticate = true;
			return response_error(resp, HTTP_UNAUTHORIZED,
			    "invalid token");
		}
	}
	if (flags & NEEDS_JSON_BODY) {
		if (!http_is_json_media_type(req->content_type))
			return response_error(resp,
			    HTTP_UNSUPPORTED_MEDIA_TYPE,
			    "Content-Type must be application/json");
		if (req->body_too_large)
			return response_error(resp, HTTP_CONTENT_TOO_LARGE,
			    "request body is larger than 128 KiB");
	}
	return HTTP_OK;
}

static double
elapsed_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) +
	    (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

void
router_dispatch(struct app *app, const struct request *req,
    struct response *resp)
{
	const struct route_method *m;
	struct route_args args = { 0 };
	const struct route *route;
	struct log_access entry;
	enum route_id route_id = ROUTE_UNMATCHED;
	struct timespec start;
	double seconds;

	clock_gettime(CLOCK_MONOTONIC, &start);
	route = router_match(req, &args);
	if (route == NULL) {
		response_error(resp, HTTP_NOT_FOUND, "not found");
		goto done;
	}
	route_id = route->id;
	m = &route->methods[req->method];
	if (m->handler == NULL) {
		resp->allow = route->allow;
		response_error(resp, HTTP_METHOD_NOT_ALLOWED,
		    "method not allowed");
		goto done;
	}
	if (router_check_preconditions(app, req, m->flags, resp) != HTTP_OK)
		goto done;
	m->handler(app, req, &args, resp);
done:
	seconds = elapsed_since(&start);
	metrics_record_request(app->metrics, route_id, req->method,
	    (int)resp->status, seconds);
	/*
	 * The container healthcheck asks every few seconds: its answers would
	 * bury the requests in the log. A failing one is still logged. Only
	 * a trusted FastCGI peer sets REQUEST_ID (nginx always sets its own).
	 */
	if (resp->status == HTTP_OK && req->request_id != NULL &&
	    strcmp(req->request_id, HEALTHCHECK_REQUEST_ID) == 0)
		return;
	entry.request_id = req->request_id;
	entry.method = req->method_name;
	entry.path = req->path;
	entry.status = (int)resp->status;
	entry.duration_ms = seconds * 1e3;
	log_access(&entry);
}
