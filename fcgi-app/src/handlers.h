/* The handlers of the routes; each returns the HTTP status it set in *resp. */
#ifndef ITEMS_HANDLERS_H
#define ITEMS_HANDLERS_H

#include <stdint.h>

#include "app.h"
#include "http.h"

/* What the router extracted from the path. */
struct route_args {
	int32_t	id;		/* /items/{id} */
};

typedef enum http_status (*handler_fn)(struct app *app,
    const struct request *req, const struct route_args *args,
    struct response *resp);

/* handler_status.c */
enum http_status status_get(struct app *, const struct request *,
	    const struct route_args *, struct response *);
/* handler_items.c */
enum http_status items_list(struct app *, const struct request *,
	    const struct route_args *, struct response *);
enum http_status items_create(struct app *, const struct request *,
	    const struct route_args *, struct response *);
enum http_status item_get(struct app *, const struct request *,
	    const struct route_args *, struct response *);
enum http_status item_replace(struct app *, const struct request *,
	    const struct route_args *, struct response *);
enum http_status item_delete(struct app *, const struct request *,
	    const struct route_args *, struct response *);
/* handler_metrics.c */
enum http_status metrics_get(struct app *, const struct request *,
	    const struct route_args *, struct response *);

#endif
