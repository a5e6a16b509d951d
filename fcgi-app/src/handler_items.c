#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "etag.h"
#include "handlers.h"
#include "item.h"
#include "json.h"
#include "log.h"
#include "params.h"

/*
 * How a database outcome other than success reads to the client. For a
 * write, 503 promises "not applied: retry"; an outcome the worker cannot know
 * is 504 and says so, so that a client does not blindly retry a POST.
 */
static enum http_status
respond_db_failure(struct response *resp, enum db_status status)
{
	switch (status) {
	case DB_NOT_FOUND:
		return response_error(resp, HTTP_NOT_FOUND, "item not found");
	case DB_UNAVAILABLE:
		return response_error(resp, HTTP_SERVICE_UNAVAILABLE,
		    "database unavailable");
	case DB_UNKNOWN:
		return response_error(resp, HTTP_GATEWAY_TIMEOUT,
		    "outcome unknown: the database connection was lost after "
		    "the write was sent; it may or may not have been applied, "
		    "read the item before retrying");
	case DB_OUTDATED:
		return response_error(resp, HTTP_SERVICE_UNAVAILABLE,
		    "database schema outdated: apply the migrations");
	case DB_PRECONDITION_FAILED:
		return response_error(resp, HTTP_PRECONDITION_FAILED,
		    "the item has changed since the tag you sent: read it again");
	case DB_OK:
	case DB_ERROR:
		break;
	}
	return response_error(resp, HTTP_INTERNAL_SERVER_ERROR,
	    "internal error");
}

/*
 * A page is encoded as its rows arrive. Up to PAGE_HOLD_MAX bytes it is held
 * and sent whole, with its Content-Length and Link, in one statement: nearly
 * every page. A larger one (up to 1000 items of 64 KiB, escaped: hundreds of
 * MB) is streamed, so a worker's memory does not grow with the page: its
 * head must go first, so the database is asked where the page ends (the Link)
 * and the rest of the rows is fetched again, up to that end, and written in
 * PAGE_CHUNK parts.
 */
#define PAGE_HOLD_MAX	((size_t)512 * 1024)
#define PAGE_CHUNK	((size_t)64 * 1024)
/* Past this, a buffer failure is a bug: a row is at most ~400 KiB of JSON. */
#define PAGE_BUF_MAX	(PAGE_HOLD_MAX + (size_t)4 * 1024 * 1024)

struct page_writer {
	struct buf	 out;
	struct response	*resp;
	int		 limit;
	int		 count;		/* items encoded so far */
	int64_t		 last_id;	/* the last of them */
	bool		 more;		/* another item follows the page */
	bool		 held_all;	/* the whole page fitted in PAGE_HOLD_MAX */
};

static void
page_add(struct page_writer *pw, const struct item *item)
{
	if (pw->count > 0)
		buf_add(&pw->out, ",", 1);
	json_add_item(&pw->out, item);
	pw->count++;
	pw->last_id = item->id;
}

/* First pass: limit + 1 rows are asked for; the extra one only tells "more". */
static enum db_rows
page_hold_row(void *ctx, const struct item *item)
{
	struct page_writer *pw = ctx;

	if (pw->count == pw->limit) {
		pw->more = true;
		return DB_ROWS_STOP;
	}
	page_add(pw, item);
	if (pw->out.len > PAGE_HOLD_MAX) {
		pw->held_all = false;
		return DB_ROWS_STOP;
	}
	return DB_ROWS_NEXT;
}

static int
page_flush(struct page_writer *pw)
{
	int rc;

	if (pw->out.failed)
		return -1;
	rc = response_write(pw->resp, pw->out.data, pw->out.len);
	buf_clear(&pw->out);
	return rc;
}

/* Second pass: each row goes out as soon as a chunk is full. */
static enum db_rows
page_stream_row(void *ctx, const struct item *item)
{
	struct page_writer *pw = ctx;

	page_add(pw, item);
	if (pw->out.len >= PAGE_CHUNK && page_flush(pw) == -1)
		return DB_ROWS_STOP;
	return DB_ROWS_NEXT;
}

static void
page_set_link(struct response *resp, int64_t last, int limit)
{
	/* RFC 8288 web linking; only when another page really follows. */
	snprintf(resp->link, sizeof(resp->link),
	    "</items?after=%lld&limit=%d>; rel=\"next\"", (long long)last, limit);
}

/* The page did not fit: head now, held rows, then the rest as it comes. */
static enum http_status
page_stream(struct app *app, const struct request *req,
    struct page_writer *pw, int64_t after)
{
	struct response *resp = pw->resp;
	enum db_status status;
	int64_t last;
	bool more;

	status = db_page_end(app->db, after, pw->limit, &last, &more);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	if (more)
		page_set_link(resp, last, pw->limit);
	if (response_start(resp, HTTP_OK, "application/json") == -1 ||
	    page_flush(pw) == -1)
		goto cut;
	if (req->method == HTTP_HEAD)
		return resp->status;
	/* last == 0: the page is not full; LIMIT alone ends it. */
	status = db_stream_items(app->db, pw->last_id, last != 0 ? last :
	    ITEM_ID_MAX, pw->limit - pw->count, page_stream_row, pw);
	if (status != DB_OK || pw->out.failed)
		goto cut;
	buf_add(&pw->out, "]", 1);
	if (page_flush(pw) == -1)
		goto cut;
	return resp->status;
cut:
	log_warnx("GET /items: page cut after %d items", pw->count);
	response_cut(resp);
	return resp->status;
}

/* GET /items?after=&limit= : keyset pagination, ascending id. */
enum http_status
items_list(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct page_writer pw = { .resp = resp, .held_all = true };
	enum db_status status;
	char reason[128];
	struct page page;

	(void)args;
	if (params_parse_page(req->query, &page, reason, sizeof(reason)) == -1)
		return response_error(resp, HTTP_BAD_REQUEST, reason);
	pw.limit = page.limit;
	buf_init(&pw.out, PAGE_BUF_MAX);
	buf_add(&pw.out, "[", 1);
	status = db_list_items(app->db, page.after, ITEM_ID_MAX,
	    (int64_t)page.limit + 1, page_hold_row, &pw);
	if (status != DB_OK)
		respond_db_failure(resp, status);
	else if (!pw.held_all)
		page_stream(app, req, &pw, page.after);
	else {
		if (pw.more)
			page_set_link(resp, pw.last_id, page.limit);
		buf_add(&pw.out, "]", 1);
		response_json(resp, HTTP_OK, buf_steal(&pw.out, NULL));
	}
	buf_finish(&pw.out);
	return resp->status;
}

/*
 * A precondition header (docs/api.md, "Entity tags"): If-Match compares
 * strongly, If-None-Match weakly (RFC 9110 section 13.1).
 */
struct condition {
	const char		*field;		/* NULL: absent */
	const char		*header;	/* its name, for a 400 */
	enum etag_compare	 cmp;
};

/* 400 unless the value is "*" or a list of entity tags; -1 once answered. */
static int
condition_check_syntax(const struct condition *c, struct response *resp)
{
	char reason[64];
	bool matched;

	if (c->field == NULL || etag_list_match(c->field, strlen(c->field),
	    NULL, c->cmp, &matched) == ETAG_OK)
		return 0;
	snprintf(reason, sizeof(reason), "malformed %s header", c->header);
	response_error(resp, HTTP_BAD_REQUEST, reason);
	return -1;
}

/* Does the value list the tag of version (or "*")? For db_precondition. */
static bool
condition_holds(void *ctx, uint64_t version)
{
	const struct condition *c = ctx;
	char tag[ETAG_BUF_SIZE];
	bool matched = false;

	etag_format(version, tag);
	return etag_list_match(c->field, strlen(c->field), tag, c->cmp,
	    &matched) == ETAG_OK && matched;
}

enum http_status
item_get(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct condition none_match = { req->if_none_match, "If-None-Match",
	    ETAG_WEAK };
	enum db_status status;
	struct item item = { 0 };

	if (condition_check_syntax(&none_match, resp) == -1)
		return resp->status;
	status = db_get_item(app->db, args->id, &item);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	etag_format(item.version, resp->etag);
	if (none_match.field != NULL && condition_holds(&none_match,
	    item.version))
		resp->status = HTTP_NOT_MODIFIED;
	else
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
	etag_format(item.version, resp->etag);
	response_json(resp, HTTP_CREATED, json_encode_item(&item));
	item_finish(&item);
	return resp->status;
}

enum http_status
item_replace(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct condition match = { req->if_match, "If-Match", ETAG_STRONG };
	struct db_precondition pre = { condition_holds, &match };
	struct item_input input;
	struct item item = { 0 };
	enum db_status status;

	if (parse_body(req, &input, resp) == -1)
		return resp->status;
	if (condition_check_syntax(&match, resp) == -1) {
		item_input_finish(&input);
		return resp->status;
	}
	status = db_replace_item(app->db, args->id, &input,
	    match.field != NULL ? &pre : NULL, &item);
	item_input_finish(&input);
	if (status == DB_PRECONDITION_FAILED)
		etag_format(item.version, resp->etag);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	etag_format(item.version, resp->etag);
	response_json(resp, HTTP_OK, json_encode_item(&item));
	item_finish(&item);
	return resp->status;
}

enum http_status
item_delete(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct condition match = { req->if_match, "If-Match", ETAG_STRONG };
	struct db_precondition pre = { condition_holds, &match };
	enum db_status status;
	uint64_t current = 0;

	if (condition_check_syntax(&match, resp) == -1)
		return resp->status;
	status = db_delete_item(app->db, args->id,
	    match.field != NULL ? &pre : NULL, &current);
	if (status == DB_PRECONDITION_FAILED)
		etag_format(current, resp->etag);
	if (status != DB_OK)
		return respond_db_failure(resp, status);
	resp->status = HTTP_NO_CONTENT;
	return resp->status;
}
