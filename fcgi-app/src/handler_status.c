#include "handlers.h"

#include "json.h"

/* GET /status: one real round trip to the database. */
enum http_status
status_get(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	const char *reason;

	(void)req;
	(void)args;
	if (db_ping(app->db, &reason) == DB_OK)
		return response_json(resp, HTTP_OK,
		    json_encode_status(true, "<<< OK >>>"));
	return response_json(resp, HTTP_SERVICE_UNAVAILABLE,
	    json_encode_status(false, reason));
}
