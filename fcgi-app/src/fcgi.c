#include "fcgi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <fcgiapp.h>

#include "log.h"

/*
 * How long a FastCGI peer may keep a worker waiting on one read or write:
 * nginx's own fastcgi_send_timeout and send_timeout. Without it, a peer
 * that connects and sends nothing, or a client that stops reading a
 * streamed page, would hold a worker forever.
 */
#define FCGI_IO_TIMEOUT_S 10

struct fcgi {
	FCGX_Request	 request;
	struct response_stream stream;
	bool		 head;		/* the current request is a HEAD */
	char		 body[HTTP_BODY_MAX + 1];	/* one byte more tells "too large" */
};

static int	fcgi_stream_start(void *ctx, const struct response *resp);
static int	fcgi_stream_write(void *ctx, const char *data, size_t len);

int
fcgi_is_cgi(void)
{
	return FCGX_IsCGI();
}

/*
 * Bounds every read and write on fd. Set on the listening socket, it is
 * inherited by each TCP connection accepted from it, so that it already
 * covers the request's parameters, which libfcgi reads inside
 * FCGX_Accept_r(); unix sockets inherit nothing, so each accepted
 * connection gets it too. On the listener it also makes an idle accept()
 * return EAGAIN now and then, which fcgi_accept() simply retries.
 */
static int
fcgi_set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = FCGI_IO_TIMEOUT_S, .tv_usec = 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		return -1;
	return 0;
}

struct fcgi *
fcgi_open(int listen_fd)
{
	const char *peers;
	struct fcgi *f;

	if (FCGX_Init() != 0) {
		log_warnx("FCGX_Init failed");
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		log_warn("fcgi_open");
		return NULL;
	}
	if (FCGX_InitRequest(&f->request, listen_fd, 0) != 0) {
		log_warnx("FCGX_InitRequest failed");
		free(f);
		return NULL;
	}
	if (fcgi_set_timeouts(listen_fd) == -1) {
		log_warn("setting timeouts on the FastCGI socket");
		free(f);
		return NULL;
	}
	f->stream.start = fcgi_stream_start;
	f->stream.write = fcgi_stream_write;
	f->stream.ctx = f;
	/* libfcgi itself reads it, in FCGX_Init(), for TCP peers only. */
	peers = getenv("FCGI_WEB_SERVER_ADDRS");
	if (peers != NULL && *peers != '\0')
		log_info("FastCGI over TCP accepted only from %s", peers);
	return f;
}

const struct response_stream *
fcgi_stream(struct fcgi *f)
{
	return &f->stream;
}

void
fcgi_close(struct fcgi *f)
{
	if (f == NULL)
		return;
	FCGX_Free(&f->request, 1);
	free(f);
}

static const char *
param(struct fcgi *f, const char *name, const char *fallback)
{
	const char *value = FCGX_GetParam(name, f->request.envp);

	return value != NULL ? value : fallback;
}

/*
 * Reads the body up to one byte past the limit: nginx already refuses larger
 * bodies, this is the worker's own guard (and what a direct peer meets).
 */
static void
fcgi_read_body(struct fcgi *f, struct request *req)
{
	int n;

	req->body = f->body;
	req->body_len = 0;
	while (req->body_len < sizeof(f->body)) {
		n = FCGX_GetStr(f->body + req->body_len,
		    (int)(sizeof(f->body) - req->body_len), f->request.in);
		if (n <= 0)
			break;
		req->body_len += (size_t)n;
	}
	req->body_too_large = req->body_len > HTTP_BODY_MAX;
	f->body[req->body_len < sizeof(f->body) ? req->body_len :
	    sizeof(f->body) - 1] = '\0';
}

int
fcgi_accept(struct fcgi *f, struct request *req)
{
	const char *internal;
	int rc;

	/* EAGAIN: no request within FCGI_IO_TIMEOUT_S (fcgi_set_timeouts()). */
	do
		rc = FCGX_Accept_r(&f->request);
	while (rc == -EAGAIN || rc == -EWOULDBLOCK);
	if (rc < 0)
		return -1;
	/* ipcFd is libfcgi's "private" field, read here and only here. */
	if (fcgi_set_timeouts(f->request.ipcFd) == -1)
		log_warn("setting timeouts on a FastCGI connection");
	memset(req, 0, sizeof(*req));
	req->method_name = param(f, "REQUEST_METHOD", "");
	req->method = http_method_parse(req->method_name);
	req->path = param(f, "DOCUMENT_URI", "");
	req->query = param(f, "QUERY_STRING", "");
	req->content_type = param(f, "CONTENT_TYPE", NULL);
	if (req->content_type != NULL && *req->content_type == '\0')
		req->content_type = NULL;
	req->authorization = param(f, "HTTP_AUTHORIZATION", NULL);
	req->if_match = param(f, "HTTP_IF_MATCH", NULL);
	req->if_none_match = param(f, "HTTP_IF_NONE_MATCH", NULL);
	req->request_id = param(f, "REQUEST_ID", "-");
	internal = param(f, "ITEMS_INTERNAL", "");
	req->internal = strcmp(internal, "1") == 0;
	if (req->method == HTTP_POST || req->method == HTTP_PUT)
		fcgi_read_body(f, req);
	else
		req->body = "";
	f->head = req->method == HTTP_HEAD;
	return 0;
}

/*
 * Reads what is left of the request's input (for a GET, nginx's empty
 * FCGI_STDIN record). False when it does not end within a bound: a body past
 * the limit, or a peer that keeps sending.
 */
static bool
fcgi_drain_input(struct fcgi *f, const struct request *req)
{
	char scratch[1024];
	size_t total = 0;
	int n;

	if (req->body_too_large)
		return false;
	while ((n = FCGX_GetStr(scratch, (int)sizeof(scratch),
	    f->request.in)) > 0) {
		total += (size_t)n;
		if (total > sizeof(f->body))
			return false;
	}
	return true;
}

/*
 * Ends the request. libfcgi closes a connection by lingering: shutdown(),
 * then up to 2 s waiting for the peer to close first, so that unread input
 * cannot turn the close into a reset that loses the response. That holds the
 * worker for a round trip through nginx on every request. Once all input is
 * read there is nothing to reset on: the worker detaches the connection, so
 * that it is simply closed, and goes back to accept() at once.
 */
static void
fcgi_finish(struct fcgi *f, const struct request *req)
{
	if (fcgi_drain_input(f, req))
		FCGX_Detach(&f->request);
	FCGX_Finish_r(&f->request);
}

/* The CGI response header block (RFC 3875 section 6.3), built on the stack. */
struct head {
	char	data[512];
	size_t	len;
	bool	overflow;
};

/* Adds "name: value\r\n"; nothing when value is NULL or empty. */
static void
head_add(struct head *h, const char *name, const char *value)
{
	int n;

	if (value == NULL || *value == '\0' || h->overflow)
		return;
	n = snprintf(h->data + h->len, sizeof(h->data) - h->len, "%s: %s\r\n",
	    name, value);
	if (n < 0 || (size_t)n >= sizeof(h->data) - h->len)
		h->overflow = true;
	else
		h->len += (size_t)n;
}

/*
 * Writes the header block; with_length adds Content-Length (a response held
 * whole), without it nginx frames the body itself (chunked to the client).
 */
static int
fcgi_put_head(struct fcgi *f, const struct response *resp, bool with_length)
{
	struct head h = { .len = 0, .overflow = false };
	char status[64], length[32];

	/* nginx turns the Status header into the HTTP status line. */
	snprintf(status, sizeof(status), "%d %s", (int)resp->status,
	    http_status_reason(resp->status));
	head_add(&h, "Status", status);
	/* A 204 carries no Content-Length at all, and a 304 none that is
	 * not its 200's (RFC 9110 sections 8.6 and 15.4.5). */
	if (with_length && resp->status != HTTP_NO_CONTENT &&
	    resp->status != HTTP_NOT_MODIFIED) {
		snprintf(length, sizeof(length), "%zu", resp->body_len);
		head_add(&h, "Content-Length", length);
	}
	head_add(&h, "Content-Type", resp->content_type);
	head_add(&h, "Location", resp->location);
	head_add(&h, "Link", resp->link);
	head_add(&h, "Allow", resp->allow);
	if (resp->etag[0] != '\0')
		head_add(&h, "ETag", resp->etag);
	if (resp->www_authenticate)
		head_add(&h, "WWW-Authenticate", "Bearer");
	if (h.overflow || h.len + 2 > sizeof(h.data)) {
		log_warnx("response header too long");
		return -1;
	}
	memcpy(h.data + h.len, "\r\n", 2);
	return FCGX_PutStr(h.data, (int)h.len + 2, f->request.out) < 0 ? -1 : 0;
}

static int
fcgi_stream_start(void *ctx, const struct response *resp)
{
	return fcgi_put_head(ctx, resp, false);
}

static int
fcgi_stream_write(void *ctx, const char *data, size_t len)
{
	struct fcgi *f = ctx;

	/* HEAD: the same header as GET, no body (RFC 9110 section 9.3.2). */
	if (f->head || len == 0)
		return 0;
	return FCGX_PutStr(data, (int)len, f->request.out) < 0 ? -1 : 0;
}

/*
 * Drops the connection without ending the request (no FCGI_END_REQUEST):
 * nginx then sees the response cut short and cuts the client's, instead of
 * passing a partial body on as a complete one.
 */
static void
fcgi_abort(struct fcgi *f)
{
	log_warnx("response cut short: connection to the web server dropped");
	FCGX_Free(&f->request, 1);
}

void
fcgi_respond(struct fcgi *f, const struct request *req,
    const struct response *resp)
{
	if (resp->started) {
		if (resp->cut)
			fcgi_abort(f);
		else
			fcgi_finish(f, req);
		return;
	}
	if (fcgi_put_head(f, resp, true) == -1) {
		fcgi_finish(f, req);
		return;
	}
	if (resp->body != NULL)
		fcgi_stream_write(f, resp->body, resp->body_len);
	fcgi_finish(f, req);
}
