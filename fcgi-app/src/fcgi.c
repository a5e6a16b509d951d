#include "fcgi.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcgiapp.h>

#include "log.h"

struct fcgi {
	FCGX_Request	 request;
	char		 body[HTTP_BODY_MAX + 1];	/* one byte more tells "too large" */
};

int
fcgi_is_cgi(void)
{
	return FCGX_IsCGI();
}

struct fcgi *
fcgi_open(int listen_fd)
{
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
	return f;
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

	if (FCGX_Accept_r(&f->request) < 0)
		return -1;
	memset(req, 0, sizeof(*req));
	req->method_name = param(f, "REQUEST_METHOD", "");
	req->method = http_method_parse(req->method_name);
	req->path = param(f, "DOCUMENT_URI", "");
	req->query = param(f, "QUERY_STRING", "");
	req->content_type = param(f, "CONTENT_TYPE", NULL);
	if (req->content_type != NULL && *req->content_type == '\0')
		req->content_type = NULL;
	req->authorization = param(f, "HTTP_AUTHORIZATION", NULL);
	req->request_id = param(f, "REQUEST_ID", "-");
	internal = param(f, "ITEMS_INTERNAL", "");
	req->internal = strcmp(internal, "1") == 0;
	if (req->method == HTTP_POST || req->method == HTTP_PUT)
		fcgi_read_body(f, req);
	else
		req->body = "";
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

void
fcgi_respond(struct fcgi *f, const struct request *req,
    const struct response *resp)
{
	struct head h = { .len = 0, .overflow = false };
	char status[64], length[32];

	/* nginx turns the Status header into the HTTP status line. */
	snprintf(status, sizeof(status), "%d %s", (int)resp->status,
	    http_status_reason(resp->status));
	head_add(&h, "Status", status);
	/* A 204 carries no Content-Length at all (RFC 9110 section 8.6). */
	if (resp->status != HTTP_NO_CONTENT) {
		snprintf(length, sizeof(length), "%zu", resp->body_len);
		head_add(&h, "Content-Length", length);
	}
	head_add(&h, "Content-Type", resp->content_type);
	head_add(&h, "Location", resp->location);
	head_add(&h, "Link", resp->link);
	head_add(&h, "Allow", resp->allow);
	if (resp->www_authenticate)
		head_add(&h, "WWW-Authenticate", "Bearer");
	if (h.overflow || h.len + 2 > sizeof(h.data)) {
		log_warnx("response header too long");
		fcgi_finish(f, req);
		return;
	}
	memcpy(h.data + h.len, "\r\n", 2);
	FCGX_PutStr(h.data, (int)h.len + 2, f->request.out);
	/* HEAD: the same header as GET, no body (RFC 9110 section 9.3.2). */
	if (resp->body != NULL && req->method != HTTP_HEAD)
		FCGX_PutStr(resp->body, (int)resp->body_len, f->request.out);
	fcgi_finish(f, req);
}
