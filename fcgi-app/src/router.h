/*
 * Routing as data: a table of path, methods and handlers, checked in one
 * dispatch function, which also answers 404 and 405, enforces the write
 * preconditions (token, media type, size), and writes the access log line
 * and the metrics of every request.
 */
#ifndef ITEMS_ROUTER_H
#define ITEMS_ROUTER_H

#include "app.h"
#include "http.h"

/* Fills *resp (initialised by the caller) for req. Never fails: errors become responses. */
void	router_dispatch(struct app *app, const struct request *req,
	    struct response *resp);

#endif
