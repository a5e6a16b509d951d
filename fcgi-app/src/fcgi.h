/*
 * The FastCGI side (libfcgi's FCGX API); the only file that includes
 * fcgiapp.h. Turns each accepted FastCGI request into a struct request and
 * writes a struct response back.
 */
#ifndef ITEMS_FCGI_H
#define ITEMS_FCGI_H

#include "http.h"

struct fcgi;

/*
 * Prepares to accept on listen_fd (spawn-fcgi hands the socket over as fd 0).
 * Returns a new handle, or NULL with the reason logged.
 */
struct fcgi	*fcgi_open(int listen_fd);
/* Accepts NULL. */
void		 fcgi_close(struct fcgi *f);

/* True when stdin is not a FastCGI listening socket (started by hand, or as CGI). */
int		 fcgi_is_cgi(void);

/*
 * Waits for the next request and fills *req with strings borrowed from the
 * handle, valid until the next fcgi_accept(). Returns 0, or -1 when
 * accepting failed (the listening socket was closed, e.g. on shutdown).
 */
int		 fcgi_accept(struct fcgi *f, struct request *req);

/* Lets handlers stream the current request's response (see http.h); borrowed from f. */
const struct response_stream *fcgi_stream(struct fcgi *f);

/* Writes the response of the current request (or what is left of a streamed one) and ends it. */
void		 fcgi_respond(struct fcgi *f, const struct request *req,
		    const struct response *resp);

#endif
