#include "handlers.h"

#include "buf.h"
#include "cgroup.h"
#include "config.h"
#include "metrics.h"

/* Where Docker mounts the container's own cgroup. */
#define CGROUP_ROOT "/sys/fs/cgroup"

/* Plenty for the fixed set of series we export. */
#define METRICS_BODY_MAX ((size_t)1024 * 1024)

/* GET /metrics (internal listener only): totals over every worker of the pool. */
enum http_status
metrics_get(struct app *app, const struct request *req,
    const struct route_args *args, struct response *resp)
{
	struct metrics_snapshot snap;
	struct buf out;

	(void)req;
	(void)args;
	if (app->metrics == NULL)
		return response_error(resp, HTTP_SERVICE_UNAVAILABLE,
		    "metrics are not available in this worker");
	metrics_snapshot(app->metrics, &snap);
	snap.workers_configured = app->config->workers > 0 ?
	    (unsigned int)app->config->workers : 0;
	cgroup_memory_read(CGROUP_ROOT, &snap.memory);
	buf_init(&out, METRICS_BODY_MAX);
	if (metrics_format(&snap, &out) == -1)
		return response_error(resp, HTTP_INTERNAL_SERVER_ERROR,
		    "out of memory");
	resp->status = HTTP_OK;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	resp->body = buf_steal(&out, &resp->body_len);
	return HTTP_OK;
}
