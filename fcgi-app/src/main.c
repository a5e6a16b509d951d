/*
 * items-fcgi: one worker of the items API pool. spawn-fcgi binds the socket
 * and multiwatch forks and supervises the workers (see fcgi-app/items-pool);
 * this file only wires the modules together.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "db.h"
#include "fcgi.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "router.h"

#ifndef ITEMS_VERSION
#define ITEMS_VERSION "unknown"
#endif

/* spawn-fcgi passes the listening socket as file descriptor 0. */
#define LISTEN_FD 0

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t idle;
static volatile sig_atomic_t listen_closed;

/*
 * SIGUSR1 (what multiwatch sends its workers on shutdown), SIGTERM, SIGINT:
 * finish the request in flight, then leave. While waiting for a
 * request the worker sits in accept(), which SA_RESTART would resume; closing
 * our copy of the listening socket makes that accept() fail instead, so the
 * worker leaves at once. close() is async-signal-safe; other workers keep
 * their own descriptor of the shared socket.
 *
 * The socket is closed once only: a second signal (multiwatch's SIGUSR1 and
 * a SIGTERM to the process group, say) may come after the worker has opened
 * something else, which then holds descriptor 0. (A stop signal that
 * interrupts this handler itself can at worst make it close descriptor 0
 * twice in a row, the second time failing with EBADF: nothing can open a
 * file in between.) errno is restored for the interrupted code, which may be
 * about to read it.
 */
static void
on_stop_signal(int sig)
{
	int saved_errno = errno;

	(void)sig;
	stop_requested = 1;
	if (idle && !listen_closed) {
		listen_closed = 1;
		close(LISTEN_FD);
	}
	errno = saved_errno;
}

static void
install_signal_handlers(void)
{
	static const int stop_signals[] = { SIGTERM, SIGINT, SIGUSR1 };
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		if (sigaction(stop_signals[i], &sa, NULL) == -1)
			fatal("sigaction");
	/* A client that goes away mid-response must not kill the worker. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		fatal("sigaction");
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: items-fcgi [--check-config | --address-in CIDR | --help | --version]\n"
	    "\n"
	    "A FastCGI worker of the items API. Run it through items-pool, which\n"
	    "binds the socket (spawn-fcgi) and keeps FCGI_WORKERS workers alive\n"
	    "(multiwatch).\n"
	    "\n"
	    "  --check-config  validate the configuration from the environment and exit\n"
	    "  --address-in CIDR\n"
	    "                  print this host's IPv4 address inside CIDR (a.b.c.d/n)\n"
	    "                  and exit: items-pool's FCGI_LISTEN_SUBNET uses it\n"
	    "\n"
	    "Environment: DB_HOST (127.0.0.1), DB_PORT (3306), MYSQL_DATABASE,\n"
	    "MYSQL_USER, MYSQL_PASSWORD or MYSQL_PASSWORD_FILE, API_TOKEN or\n"
	    "API_TOKEN_FILE (unset: writes are disabled), FCGI_WORKERS (1..%d),\n"
	    "FCGI_LISTEN (127.0.0.1:9000, [::1]:9000 or unix:/path), METRICS_FILE\n"
	    "(/tmp/items-fcgi.metrics), LOG_LEVEL (info or debug).\n",
	    CONFIG_WORKERS_MAX);
}

/*
 * Serves until a stop signal (returns 0) or until accepting fails for another
 * reason (returns -1: the supervisor starts a fresh worker).
 */
static int
serve(struct app *app, struct fcgi *f, unsigned long *served)
{
	struct request req;
	struct response resp;

	for (;;) {
		idle = 1;
		if (stop_requested)
			return 0;
		if (fcgi_accept(f, &req) == -1) {
			if (stop_requested)
				return 0;
			log_warn("accepting a FastCGI request failed");
			return -1;
		}
		idle = 0;
		response_init(&resp);
		resp.stream = fcgi_stream(f);
		router_dispatch(app, &req, &resp);
		fcgi_respond(f, &req, &resp);
		response_finish(&resp);
		(*served)++;
	}
}

/* --address-in: the one local address inside cidr, for items-pool. */
static int
print_address_in(const char *cidr)
{
	struct netaddr_net net;
	char address[INET_ADDRSTRLEN];

	switch (netaddr_parse(cidr, &net)) {
	case NETADDR_OK:
		break;
	default:
		fprintf(stderr, "items-fcgi: --address-in %.64s: expected an "
		    "IPv4 network as a.b.c.d/n\n", cidr);
		return 2;
	}
	switch (netaddr_local(&net, address)) {
	case NETADDR_OK:
		printf("%s\n", address);
		return 0;
	case NETADDR_AMBIGUOUS:
		fprintf(stderr, "items-fcgi: more than one address of this "
		    "host lies in %s: give a narrower network\n", cidr);
		return 1;
	case NETADDR_SYSTEM:
		perror("items-fcgi: listing the interface addresses");
		return 1;
	default:
		fprintf(stderr, "items-fcgi: no address of this host lies in "
		    "%s (is the container attached to that network?)\n", cidr);
		return 1;
	}
}

static const char *
lookup_env(const char *name)
{
	return getenv(name);
}

int
main(int argc, char *argv[])
{
	struct config config;
	struct app app;
	struct fcgi *f;
	char error[512];
	unsigned long served = 0;
	bool check_only = false;
	int rc;

	if (argc == 3 && strcmp(argv[1], "--address-in") == 0)
		return print_address_in(argv[2]);
	if (argc > 2)
		goto bad_usage;
	if (argc == 2) {
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[1], "--version") == 0) {
			printf("items-fcgi %s\n", ITEMS_VERSION);
			return 0;
		}
		if (strcmp(argv[1], "--check-config") != 0)
			goto bad_usage;
		check_only = true;
	}
	if (config_load(&config, lookup_env, error, sizeof(error)) == -1) {
		fprintf(stderr, "items-fcgi: configuration error: %s\n", error);
		return 1;
	}
	if (check_only) {
		printf("items-fcgi: configuration OK (database %s@%s:%u/%s, "
		    "writes %s)\n", config.db_user, config.db_host,
		    config.db_port, config.db_name,
		    config.api_token ? "enabled" : "disabled");
		config_finish(&config);
		return 0;
	}
	log_init(config.debug);
	if (fcgi_is_cgi())
		fatalx("standard input is not a FastCGI socket: start the pool "
		    "with items-pool (spawn-fcgi + multiwatch)");
	install_signal_handlers();
	app.config = &config;
	app.metrics = metrics_open(config.metrics_file);
	if (app.metrics == NULL)
		fatalx("cannot start without the shared metrics file");
	app.db = db_create(&config, app.metrics);
	f = fcgi_open(LISTEN_FD);
	if (app.db == NULL || f == NULL)
		fatalx("cannot start: out of memory");
	if (config.api_token == NULL)
		log_info("no API_TOKEN configured: writes are disabled");
	log_info("worker ready (items-fcgi %s)", ITEMS_VERSION);
	rc = serve(&app, f, &served);
	fcgi_close(f);
	db_destroy(app.db);
	metrics_close(app.metrics);
	config_finish(&config);
	log_info("worker stopped after %lu requests", served);
	return rc == 0 ? 0 : 1;
bad_usage:
	usage(stderr);
	return 2;
}
