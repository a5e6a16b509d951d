#include "fcgi.h"

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

void
fcgi_respond(struct fcgi *f, const struct request *req,
    const struct response *resp)
{
	FCGX_Stream *out = f->request.out;
	char head[512];
	int n;

	/* nginx turns the Status header into the HTTP status line. */
	n = snprintf(head, sizeof(head),
	    "Status: %d %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s%s"
	    "%s%s%s"
	    "%s%s%s"
	    "%s%s%s"
	    "%s"
	    "\r\n",
	    (int)resp->status, http_status_reason(resp->status),
	    resp->body_len,
	    resp->content_type ? "Content-Type: " : "",
	    resp->content_type ? resp->content_type : "",
	    resp->content_type ? "\r\n" : "",
	    resp->location[0] ? "Location: " : "", resp->location,
	    resp->location[0] ? "\r\n" : "",
	    resp->link[0] ? "Link: " : "", resp->link,
	    resp->link[0] ? "\r\n" : "",
	    resp->allow ? "Allow: " : "", resp->allow ? resp->allow : "",
	    resp->allow ? "\r\n" : "",
	    resp->www_authenticate ? "WWW-Authenticate: Bearer\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		log_warnx("response header too long");
		FCGX_Finish_r(&f->request);
		return;
	}
	FCGX_PutStr(head, n, out);
	/* HEAD: the same header as GET, no body (RFC 9110 section 9.3.2). */
	if (resp->body != NULL && req->method != HTTP_HEAD)
		FCGX_PutStr(resp->body, (int)resp->body_len, out);
	FCGX_Finish_r(&f->request);
}
