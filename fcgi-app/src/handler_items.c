#include <stdio.h>

#include "handlers.h"
#include "item.h"
#include "json.h"
#include "params.h"

/* How a database outcome other than success reads to the client. */
static enum http_status
respond_db_failure(struct response *resp, enum db_status status)
{
	switch (status) {
	case DB_NOT_FOUND:
		return response_error(resp, HTTP_NOT_FOUND, "item not found");
	case DB_UNAVAILABLE:
		return response_error(resp, HTTP_SERVICE_UNAVAILABLE,
		    "database unavailable");
	case DB_OK:
	case DB_ERROR:
		break;
	}
	return response_error(resp, HTTP_INTERNAL_SERVER_ERROR,
	    "internal error");
}

/* GET /items?after=&limit= : keyset pagination, ascending id. */
enum http_status
items_list(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	char reason[128];
	struct item_list list;
	enum db_status status;
	struct page page;

	(void)args;
	if (params_parse_page(req->query, &page, reason, sizeof(reason)) == -1)
		return response_error(resp, HTTP_BAD_REQUEST, reason);
	status = db_list_items(app->db, page.after, page.limit, &list);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	/* RFC 8288 web linking; only when another page really follows. */
	if (list.more)
		snprintf(resp->link, sizeof(resp->link),
		    "</items?after=%ld&limit=%d>; rel=\"next\"",
		    (long)list.items[list.count - 1].id, page.limit);
	response_json(resp, HTTP_OK, json_encode_item_list(&list));
	item_list_finish(&list);
	return resp->status;
}

enum http_status
item_get(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	enum db_status status;
	struct item item = { 0 };

	(void)req;
	status = db_get_item(app->db, args->id, &item);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	response_json(resp, HTTP_OK, json_encode_item(&item));
	item_finish(&item);
	return resp->status;
}

/* POST and PUT share the body rules; 400 names the problem. */
static int
parse_body(const struct request *req, struct item_input *input,
    struct response *resp)
{
	char reason[256];

	if (json_parse_item_input(req->body, req->body_len, input, reason,
	    sizeof(reason)) == -1) {
		response_error(resp, HTTP_BAD_REQUEST, reason);
		return -1;
	}
	return 0;
}

enum http_status
items_create(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct item_input input;
	struct item item = { 0 };
	enum db_status status;

	(void)args;
	if (parse_body(req, &input, resp) == -1)
		return resp->status;
	status = db_create_item(app->db, &input, &item);
	item_input_finish(&input);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	snprintf(resp->location, sizeof(resp->location), "/items/%ld",
	    (long)item.id);
	response_json(resp, HTTP_CREATED, json_encode_item(&item));
	item_finish(&item);
	return resp->status;
}

enum http_status
item_replace(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct item_input input;
	struct item item = { 0 };
	enum db_status status;

	if (parse_body(req, &input, resp) == -1)
		return resp->status;
	status = db_replace_item(app->db, args->id, &input, &item);
	item_input_finish(&input);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	response_json(resp, HTTP_OK, json_encode_item(&item));
	item_finish(&item);
	return resp->status;
}

enum http_status
item_delete(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	enum db_status status;

	(void)req;
	status = db_delete_item(app->db, args->id);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	resp->status = HTTP_NO_CONTENT;
	return resp->status;
}
