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
	switch (db_ping(app->db, &reason)) {
	case DB_OK:
		return response_json(resp, HTTP_OK,
		    json_encode_status(true, "<<< OK >>>"));
	case DB_ERROR:
		/* Reachable but unusable (e.g. a table is missing): not an outage. */
		return response_json(resp, HTTP_INTERNAL_SERVER_ERROR,
		    json_encode_status(false, reason));
	case DB_NOT_FOUND:
	case DB_UNAVAILABLE:
	case DB_UNKNOWN:
	case DB_OUTDATED:	/* with its own reason: the healthcheck fails on it */
	case DB_PRECONDITION_FAILED:
		break;
	}
	return response_json(resp, HTTP_SERVICE_UNAVAILABLE,
	    json_encode_status(false, reason));
}
