/*
 * Routing as data: a table of path, methods and handlers, checked in one
 * dispatch function, which also answers 404 and 405, enforces the write
 * preconditions (token, media type, size), and writes the access log line
 * and the metrics of every request (no log line for a healthy healthcheck).
 */
#ifndef ITEMS_ROUTER_H
#define ITEMS_ROUTER_H

#include "app.h"
#include "http.h"

/*
 * The REQUEST_ID the container healthcheck sends (fcgi-app/items-healthcheck):
 * its 200 answers are not written to the access log.
 */
#define HEALTHCHECK_REQUEST_ID	"healthcheck"

/* Fills *resp (initialised by the caller) for req. Never fails: errors become responses. */
void	router_dispatch(struct app *app, const struct request *req,
	    struct response *resp);

#endif
