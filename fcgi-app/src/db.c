#include "db.h"

#include <errno.h>
#include <mysql.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "db_gate.h"
#include "log.h"

/*
 * Time bounds. Connecting (resolving aside: getaddrinfo cannot be cut short;
 * one call per connect, see db_resolve()),
 * the handshake, the init command and the prepares share one deadline,
 * driven through Connector/C's non-blocking calls; the probing worker's
 * lease on the pool-wide gate (db_gate.h) outlasts it, so only one worker
 * waits on an unreachable database and the others answer 503 at once. On an
 * open connection a read or a write gives up after DB_IO_TIMEOUT. Statements
 * carry a server-side bound (STATEMENT_BOUND: writes in their text, reads
 * from the session), well below DB_IO_TIMEOUT: the server gives up first and rolls the statement
 * back, so a write it refused is reported as not applied instead of being
 * lost to a client timeout with its outcome unknown.
 */
#define DB_CONNECT_DEADLINE_MS	1000
#define DB_PROBE_LEASE_MS	(DB_CONNECT_DEADLINE_MS + 250)
#define DB_IO_TIMEOUT		1	/* seconds, the unit Connector/C takes */
#define DB_RETRY_DELAY_MS	250
/* How long a worker answers "schema outdated" before it looks again. */
#define DB_SCHEMA_RECHECK_MS	1000
/* A read that failed on a lost connection is tried again only if this was quick. */
#define DB_RETRY_WINDOW_MS	250

/*
 * MariaDB's per-statement bound; it also ends lock and metadata-lock waits.
 * Reads get it from the session (SESSION_INIT): a statement that starts with
 * SET STATEMENT is never served from the query cache (mysql/my.cnf), a plain
 * SELECT is. Writes carry it themselves, whatever the session says.
 */
#define STATEMENT_BOUND "max_statement_time = 0.5"
#define SERVER_BOUND "SET STATEMENT " STATEMENT_BOUND " FOR "
/* The streamed rest of a large page: no bound (see statements[]). */
#define NO_SERVER_BOUND "SET STATEMENT max_statement_time = 0 FOR "
/* Lock waits: whole seconds only; the statement bound ends them sooner. */
#define SESSION_INIT "SET time_zone = '+00:00', innodb_lock_wait_timeout = 1, " \
	"lock_wait_timeout = 1, " STATEMENT_BOUND

/*
 * The schema this worker's statements need (mysql/migrations/NNNN_*.sql):
 * checked at every connect, before they are prepared.
 */
#define DB_SCHEMA_VERSION	3

/* Prepared and run first: the others exist only from DB_SCHEMA_VERSION on. */
enum stmt_id {
	STMT_SCHEMA_VERSION,
	STMT_PING,
	STMT_LIST,
	STMT_LIST_STREAM,
	STMT_PAGE_END,
	STMT_GET,
	STMT_CURRENT,
	STMT_INSERT,
	STMT_UPDATE,
	STMT_UPDATE_IF,
	STMT_DELETE,
	STMT_DELETE_IF,
	STMT_COUNT
};

/*
 * Every statement of the application and its policy. A read may be sent
 * again on a new connection after a fast loss. A write never is: once it
 * may have reached the server, only the server knows whether it ran, and a
 * replay could undo another request's write or insert a duplicate.
 * STMT_LIST_STREAM, the rest of a page too large to hold, has no server
 * bound: its time on the server includes the client reading the page,
 * however large, as it streams. STMT_LIST has one: a page is first read
 * with it, up to what a worker holds, and the bound also ends the reading
 * of the rows that a large page's first pass discards.
 */
static const struct {
	const char	*sql;
	bool		 write;
} statements[STMT_COUNT] = {
	[STMT_SCHEMA_VERSION] = { "SELECT COALESCE(MAX(version), 0)"
	    " FROM schema_migrations", false },
	/* Not SQL and never prepared: GET /status's COM_PING, which the
	 * server answers without its SQL layer (see db_execute()). */
	[STMT_PING] = { "COM_PING", false },
	[STMT_LIST] = { "SELECT id, name, description, created_at, version"
	    " FROM items WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", false },
	[STMT_LIST_STREAM] = { NO_SERVER_BOUND "SELECT id, name, description,"
	    " created_at, version FROM items WHERE id > ? AND id <= ?"
	    " ORDER BY id LIMIT ?", false },
	[STMT_PAGE_END] = { "SELECT id FROM items WHERE id > ? ORDER BY id"
	    " LIMIT ?, 2", false },
	[STMT_GET] = { "SELECT id, name, description, created_at, version"
	    " FROM items WHERE id = ?", false },
	[STMT_CURRENT] = { "SELECT created_at, version FROM items WHERE id = ?",
	    false },
	[STMT_INSERT] = { SERVER_BOUND "INSERT INTO items (name, description,"
	    " created_at, version) VALUES (?, ?, ?, ?)", true },
	[STMT_UPDATE] = { SERVER_BOUND "UPDATE items SET name = ?,"
	    " description = ?, version = ? WHERE id = ?", true },
	/* A write conditional on the version read: one atomic step (If-Match). */
	[STMT_UPDATE_IF] = { SERVER_BOUND "UPDATE items SET name = ?,"
	    " description = ?, version = ? WHERE id = ? AND version = ?", true },
	[STMT_DELETE] = { SERVER_BOUND "DELETE FROM items WHERE id = ?", true },
	[STMT_DELETE_IF] = { SERVER_BOUND "DELETE FROM items WHERE id = ?"
	    " AND version = ?", true },
};

const char *
db_session_sql(void)
{
	return SESSION_INIT;
}

const char *
db_insert_sql(void)
{
	return statements[STMT_INSERT].sql;
}

/* Where a fetched row lands; bound once per execution of a row statement. */
struct db_row {
	int32_t		id;
	char		name[ITEM_NAME_MAX_BYTES + 1];
	unsigned long	name_len;
	char		description[ITEM_DESCRIPTION_MAX_BYTES + 1];
	unsigned long	description_len;
	my_bool		description_null;
	MYSQL_TIME	created_at;
	uint64_t	version;
	MYSQL_BIND	bind[5];
};

struct db {
	const struct config	*config;
	struct metrics		*metrics;
	MYSQL			*conn;
	MYSQL_STMT		*stmts[STMT_COUNT];
	bool			 ever_connected;
	bool			 down;		/* an outage is under way (and logged) */
	int64_t			 down_since_ms;
	unsigned int		 last_error;	/* logged already; 0 after a success */
	/* The schema was found older than DB_SCHEMA_VERSION: not asked again before then. */
	int64_t			 outdated_until_ms;
	unsigned int		 outdated_version;	/* what was found (logged once) */
	char			 outdated_reason[128];
	struct db_gate_state	*gate;		/* shared by the pool; may be NULL */
	struct db_row		 row;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct db *
db_create(const struct config *config, struct metrics *metrics)
{
	struct db *db;

	db = calloc(1, sizeof(*db));
	if (db == NULL)
		return NULL;
	db->config = config;
	db->metrics = metrics;
	db->gate = metrics_db_gate(metrics);
	return db;
}

static void
db_disconnect(struct db *db)
{
	int i;

	for (i = 0; i < STMT_COUNT; i++) {
		if (db->stmts[i] != NULL)
			mysql_stmt_close(db->stmts[i]);
		db->stmts[i] = NULL;
	}
	if (db->conn != NULL)
		mysql_close(db->conn);
	db->conn = NULL;
}

void
db_destroy(struct db *db)
{
	if (db == NULL)
		return;
	db_disconnect(db);
	free(db);
}

/*
 * The connection is gone or cannot be made: the database is down as far as
 * this worker can tell. Client-side bugs (commands out of sync, a bad bind,
 * out of memory) and SQL errors are not outages.
 */
static bool
db_error_is_connection(unsigned int code)
{
	switch (code) {
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_UNKNOWN_HOST:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
		return true;
	default:
		return false;
	}
}

/* The server refused or gave up on the statement, and rolled it back: retry later. */
static bool
db_error_is_busy(unsigned int code)
{
	switch (code) {
	case ER_LOCK_WAIT_TIMEOUT:
	case ER_LOCK_DEADLOCK:
	case ER_STATEMENT_TIMEOUT:
	case ER_QUERY_INTERRUPTED:
	case ER_CON_COUNT_ERROR:
	case ER_TOO_MANY_USER_CONNECTIONS:
		return true;
	default:
		return false;
	}
}

static void
db_mark_down(struct db *db, const char *what, unsigned int code,
    const char *message)
{
	if (!db->down) {
		db->down = true;
		db->down_since_ms = now_ms();
		log_warnx("database %s: %u %s", what, code, message);
	} else
		log_debug("database still unavailable: %u %s", code, message);
}

/*
 * Classifies a failed call, logs it once and drops a connection that cannot
 * be trusted any more. sent: the statement may have reached the server.
 */
static enum db_status
db_fail(struct db *db, enum stmt_id id, bool sent, unsigned int code,
    const char *message)
{
	/* An error packet is the server's answer: the statement did not run. */
	bool answered = code < CR_MIN_ERROR;

	metrics_record_db_error(db->metrics);
	if (db_error_is_connection(code)) {
		db_mark_down(db, "connection lost", code, message);
		db_disconnect(db);
		if (sent && !answered && statements[id].write) {
			log_warnx("database connection lost after a write was "
			    "sent: its outcome is unknown (\"%s\")",
			    statements[id].sql);
			return DB_UNKNOWN;
		}
		return DB_UNAVAILABLE;
	}
	if (db_error_is_busy(code)) {
		log_warnx("database busy in \"%s\": %u %s", statements[id].sql,
		    code, message);
		return DB_UNAVAILABLE;
	}
	/* The same error on every request (a missing table) is logged once. */
	if (code != db->last_error)
		log_warnx("database error in \"%s\": %u %s",
		    statements[id].sql, code, message);
	else
		log_debug("database error again: %u %s", code, message);
	db->last_error = code;
	/* After a client-side failure the connection's state is not known. */
	if (!answered)
		db_disconnect(db);
	return DB_ERROR;
}

static enum db_status
db_stmt_fail(struct db *db, enum stmt_id id, bool sent)
{
	MYSQL_STMT *stmt = db->stmts[id];

	return db_fail(db, id, sent, mysql_stmt_errno(stmt),
	    mysql_stmt_error(stmt));
}

/*
 * An idle connection never has data waiting: when its socket is readable,
 * the server has closed it (restart, wait_timeout, kill). Noticing this
 * before a statement is sent lets even a write run on a fresh connection.
 */
static bool
db_connection_closed_by_peer(struct db *db)
{
	struct pollfd pfd;

	pfd.fd = (int)mysql_get_socket(db->conn);
	pfd.events = POLLIN;
	pfd.revents = 0;
	return pfd.fd < 0 || poll(&pfd, 1, 0) != 0;
}

/*
 * Waits for what a non-blocking call asked for (MYSQL_WAIT_* in status), but
 * not past deadline_ms. Returns the events to hand to its _cont() call, or 0
 * once the deadline has passed.
 */
static int
db_wait(MYSQL *conn, int status, int64_t deadline_ms)
{
	struct pollfd pfd;
	int64_t left;
	int timeout, events;
	bool library_timeout;

	pfd.fd = (int)mysql_get_socket(conn);
	pfd.events = 0;
	if (status & MYSQL_WAIT_READ)
		pfd.events |= POLLIN;
	if (status & MYSQL_WAIT_WRITE)
		pfd.events |= POLLOUT;
	if (status & MYSQL_WAIT_EXCEPT)
		pfd.events |= POLLPRI;
	for (;;) {
		left = deadline_ms - now_ms();
		if (left <= 0)
			return 0;
		timeout = (int)left;
		library_timeout = (status & MYSQL_WAIT_TIMEOUT) &&
		    mysql_get_timeout_value_ms(conn) < (unsigned int)timeout;
		if (library_timeout)
			timeout = (int)mysql_get_timeout_value_ms(conn);
		pfd.revents = 0;
		switch (poll(&pfd, 1, timeout)) {
		case -1:
			if (errno != EINTR)
				return 0;
			continue;
		case 0:
			if (library_timeout)
				return MYSQL_WAIT_TIMEOUT;
			continue;
		default:
			events = 0;
			if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
				events |= MYSQL_WAIT_READ;
			if (pfd.revents & (POLLOUT | POLLERR))
				events |= MYSQL_WAIT_WRITE;
			if (pfd.revents & POLLPRI)
				events |= MYSQL_WAIT_EXCEPT;
			return events;
		}
	}
}

static enum db_status
db_connect_timed_out(struct db *db)
{
	metrics_record_db_error(db->metrics);
	db_mark_down(db, "unreachable", CR_SERVER_LOST,
	    "no answer within the connect deadline");
	return DB_UNAVAILABLE;
}

/*
 * Connect to host (an address, or "localhost": the server's socket),
 * handshake and init command, by deadline_ms.
 */
static enum db_status
db_open_at(struct db *db, const char *host, int64_t deadline_ms)
{
	const struct config *c = db->config;
	unsigned int connect_timeout = DB_CONNECT_DEADLINE_MS / 1000 + 1;
	unsigned int io_timeout = DB_IO_TIMEOUT;
	my_bool off = 0;
	MYSQL *ret = NULL;
	int status;

	db->conn = mysql_init(NULL);
	if (db->conn == NULL) {
		log_warnx("database: mysql_init failed (out of memory)");
		return DB_ERROR;
	}
	/* The deadline is ours; the library's own timeouts only back it up. */
	mysql_optionsv(db->conn, MYSQL_OPT_NONBLOCK, NULL);
	mysql_optionsv(db->conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_optionsv(db->conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_optionsv(db->conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	/* Reconnection is ours (it must prepare the statements again). */
	mysql_optionsv(db->conn, MYSQL_OPT_RECONNECT, &off);
	mysql_optionsv(db->conn, MYSQL_OPT_LOCAL_INFILE, &off);
	mysql_optionsv(db->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* created_at travels as UTC whatever the server's zone. */
	mysql_optionsv(db->conn, MYSQL_INIT_COMMAND, SESSION_INIT);
	/* CLIENT_FOUND_ROWS: an UPDATE that changes nothing still counts its row. */
	status = mysql_real_connect_start(&ret, db->conn, host, c->db_user,
	    c->db_password, c->db_name, c->db_port, NULL, CLIENT_FOUND_ROWS);
	while (status != 0) {
		status = db_wait(db->conn, status, deadline_ms);
		if (status == 0)
			return db_connect_timed_out(db);
		status = mysql_real_connect_cont(&ret, db->conn, status);
	}
	if (ret == NULL) {
		metrics_record_db_error(db->metrics);
		if (db_error_is_connection(mysql_errno(db->conn)) ||
		    db_error_is_busy(mysql_errno(db->conn))) {
			db_mark_down(db, "unreachable", mysql_errno(db->conn),
			    mysql_error(db->conn));
			return DB_UNAVAILABLE;
		}
		/* Reachable, but refusing us: a configuration problem. */
		if (mysql_errno(db->conn) != db->last_error)
			log_warnx("database refused the connection: %u %s",
			    mysql_errno(db->conn), mysql_error(db->conn));
		db->last_error = mysql_errno(db->conn);
		return DB_ERROR;
	}
	return DB_OK;
}

/*
 * The database's addresses, asked once. Connector/C asks again for as long
 * as the answer is "try again" and its connect timeout (whole seconds, read
 * from time()) has not passed: up to three resolver timeouts per connect,
 * 3 s with RES_OPTIONS=timeout:1 (compose.yaml), while the name is gone
 * from Docker's DNS (the db stopped), which held a worker past the probe
 * lease. Handing it numeric addresses leaves one resolver call per connect.
 */
static enum db_status
db_resolve(struct db *db, struct addrinfo **addrs)
{
	const struct config *c = db->config;
	struct addrinfo hints;
	char message[256];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	rc = getaddrinfo(c->db_host, NULL, &hints, addrs);
	if (rc == 0)
		return DB_OK;
	*addrs = NULL;
	metrics_record_db_error(db->metrics);
	if (rc == EAI_MEMORY) {
		log_warnx("database: getaddrinfo failed (out of memory)");
		return DB_ERROR;
	}
	/* A name that is not (or no longer) known is an outage: the db's
	 * container stopped, or not started yet. Worded as Connector/C's. */
	snprintf(message, sizeof(message), "Unknown server host '%s' (%s)",
	    c->db_host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	db_mark_down(db, "unreachable", CR_UNKNOWN_HOST, message);
	return DB_UNAVAILABLE;
}

/* Resolve, then try each address in turn, all by deadline_ms. */
static enum db_status
db_open(struct db *db, int64_t deadline_ms)
{
	const struct config *c = db->config;
	char host[NI_MAXHOST];
	struct addrinfo *addrs, *ai;
	enum db_status status;

	/* "localhost" means the server's socket to Connector/C: no lookup. */
	if (strcmp(c->db_host, "localhost") == 0)
		return db_open_at(db, c->db_host, deadline_ms);
	status = db_resolve(db, &addrs);
	if (status != DB_OK)
		return status;
	status = DB_UNAVAILABLE;
	for (ai = addrs; ai != NULL; ai = ai->ai_next) {
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host),
		    NULL, 0, NI_NUMERICHOST) != 0)
			continue;
		db_disconnect(db);
		status = db_open_at(db, host, deadline_ms);
		if (status != DB_UNAVAILABLE || now_ms() >= deadline_ms)
			break;
	}
	freeaddrinfo(addrs);
	return status;
}

static void
bind_long(MYSQL_BIND *b, int32_t *value)
{
	b->buffer_type = MYSQL_TYPE_LONG;
	b->buffer = value;
}

static void
bind_longlong(MYSQL_BIND *b, int64_t *value)
{
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = value;
}

static void
bind_version(MYSQL_BIND *b, uint64_t *value)
{
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = value;
	b->is_unsigned = 1;
}

/* A NULL string binds SQL NULL. */
static void
bind_string(MYSQL_BIND *b, const char *s, unsigned long *len, my_bool *null)
{
	*null = (my_bool)(s == NULL);
	*len = s != NULL ? strlen(s) : 0;
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)s;
	b->buffer_length = *len;
	b->length = len;
	b->is_null = null;
}

/* Prepares statement i, by deadline_ms; its errors are left to the caller. */
static enum db_status
db_prepare_one(struct db *db, enum stmt_id i, int64_t deadline_ms, int *rc)
{
	int status;

	*rc = 0;
	db->stmts[i] = mysql_stmt_init(db->conn);
	if (db->stmts[i] == NULL) {
		log_warnx("database: mysql_stmt_init failed (out of memory)");
		return DB_ERROR;
	}
	status = mysql_stmt_prepare_start(rc, db->stmts[i], statements[i].sql,
	    strlen(statements[i].sql));
	while (status != 0) {
		status = db_wait(db->conn, status, deadline_ms);
		if (status == 0)
			return db_connect_timed_out(db);
		status = mysql_stmt_prepare_cont(rc, db->stmts[i], status);
	}
	return DB_OK;
}

static enum db_status
db_prepare_all(struct db *db, int64_t deadline_ms)
{
	enum db_status status;
	int i, rc;

	for (i = STMT_SCHEMA_VERSION + 1; i < STMT_COUNT; i++) {
		if (i == STMT_PING)
			continue;
		status = db_prepare_one(db, (enum stmt_id)i, deadline_ms, &rc);
		if (status != DB_OK)
			return status;
		/* A statement that was not prepared cannot have run. */
		if (rc != 0)
			return db_stmt_fail(db, (enum stmt_id)i, false);
	}
	return DB_OK;
}

/* Runs the prepared schema statement and reads its one value, by deadline_ms. */
static enum db_status
db_read_schema_version(struct db *db, int64_t deadline_ms, uint64_t *version)
{
	MYSQL_STMT *stmt = db->stmts[STMT_SCHEMA_VERSION];
	MYSQL_BIND result;
	int rc = 0, status;

	status = mysql_stmt_execute_start(&rc, stmt);
	while (status != 0) {
		status = db_wait(db->conn, status, deadline_ms);
		if (status == 0)
			return db_connect_timed_out(db);
		status = mysql_stmt_execute_cont(&rc, stmt, status);
	}
	if (rc == 0) {
		status = mysql_stmt_store_result_start(&rc, stmt);
		while (status != 0) {
			status = db_wait(db->conn, status, deadline_ms);
			if (status == 0)
				return db_connect_timed_out(db);
			status = mysql_stmt_store_result_cont(&rc, stmt, status);
		}
	}
	if (rc != 0)
		return db_stmt_fail(db, STMT_SCHEMA_VERSION, true);
	memset(&result, 0, sizeof(result));
	bind_version(&result, version);
	*version = 0;
	if (mysql_stmt_bind_result(stmt, &result) ||
	    mysql_stmt_fetch(stmt) != 0) {
		mysql_stmt_free_result(stmt);
		return db_stmt_fail(db, STMT_SCHEMA_VERSION, true);
	}
	mysql_stmt_free_result(stmt);
	return DB_OK;
}

/*
 * The schema's version, before the other statements are prepared (they
 * would fail on an older schema, as a missing column, and look like a fault
 * of ours): DB_OUTDATED when it is older than DB_SCHEMA_VERSION. No
 * schema_migrations table is version 0 (a database of release v1).
 */
static enum db_status
db_check_schema(struct db *db, int64_t deadline_ms)
{
	enum db_status status;
	uint64_t version = 0;
	int rc;

	status = db_prepare_one(db, STMT_SCHEMA_VERSION, deadline_ms, &rc);
	if (status != DB_OK)
		return status;
	if (rc != 0) {
		if (mysql_stmt_errno(db->stmts[STMT_SCHEMA_VERSION]) !=
		    ER_NO_SUCH_TABLE)
			return db_stmt_fail(db, STMT_SCHEMA_VERSION, false);
	} else {
		status = db_read_schema_version(db, deadline_ms, &version);
		if (status != DB_OK)
			return status;
	}
	if (version >= DB_SCHEMA_VERSION) {
		if (db->outdated_version != 0 || db->outdated_until_ms != 0)
			log_info("database schema at version %llu: serving",
			    (unsigned long long)version);
		db->outdated_version = 0;
		db->outdated_until_ms = 0;
		return DB_OK;
	}
	snprintf(db->outdated_reason, sizeof(db->outdated_reason),
	    "database schema outdated: version %llu, the API needs %d (apply "
	    "the migrations)", (unsigned long long)version, DB_SCHEMA_VERSION);
	if (db->outdated_until_ms == 0 ||
	    db->outdated_version != (unsigned int)version)
		log_warnx("%s: mysql/migrate.sh, see docs/deployment.md",
		    db->outdated_reason);
	db->outdated_version = (unsigned int)version;
	db->outdated_until_ms = now_ms() + DB_SCHEMA_RECHECK_MS;
	return DB_OUTDATED;
}

/*
 * The pool believes the database down (another worker lost its connection
 * slowly), but this worker's connection is still open. A statement sent on
 * it now could end with its outcome unknown; a ping sends none and costs
 * one round trip, or at most DB_IO_TIMEOUT if the server is really gone.
 */
static enum db_status
db_check_alive(struct db *db)
{
	if (mysql_ping(db->conn) == 0) {
		db_gate_opened(db->gate);
		return DB_OK;
	}
	metrics_record_db_error(db->metrics);
	db_mark_down(db, "connection lost", mysql_errno(db->conn),
	    mysql_error(db->conn));
	db_disconnect(db);
	db_gate_failed(db->gate, now_ms(), DB_RETRY_DELAY_MS);
	return DB_UNAVAILABLE;
}

static enum db_status
db_connect(struct db *db)
{
	const struct config *c = db->config;
	enum db_status status;
	int64_t deadline_ms;

	if (db->conn != NULL) {
		if (db_connection_closed_by_peer(db)) {
			db_mark_down(db, "connection lost", CR_SERVER_GONE_ERROR,
			    "closed by the server while idle");
			db_disconnect(db);
		} else if (db_gate_is_down(db->gate))
			return db_check_alive(db);
		else
			return DB_OK;
	}
	if (db->outdated_until_ms > now_ms())
		return DB_OUTDATED;
	if (!db_gate_try(db->gate, now_ms(), DB_PROBE_LEASE_MS))
		return DB_UNAVAILABLE;
	deadline_ms = now_ms() + DB_CONNECT_DEADLINE_MS;
	status = db_open(db, deadline_ms);
	if (status == DB_OK) {
		/* The server answered: the outage, if any, is over for the pool. */
		db_gate_opened(db->gate);
		status = db_check_schema(db, deadline_ms);
	}
	if (status == DB_OK)
		status = db_prepare_all(db, deadline_ms);
	if (status != DB_OK) {
		db_disconnect(db);
		if (status == DB_UNAVAILABLE)
			db_gate_failed(db->gate, now_ms(), DB_RETRY_DELAY_MS);
		return status;
	}
	if (db->ever_connected) {
		metrics_record_db_reconnect(db->metrics);
		log_info("database connection restored after %.1f s",
		    db->down ? (double)(now_ms() - db->down_since_ms) / 1e3 :
		    0.0);
	} else
		log_info("database connection established to %s:%u",
		    c->db_host, c->db_port);
	db->ever_connected = true;
	db->down = false;
	return DB_OK;
}

/*
 * Binds params and runs statement id (sends it, for a protocol command),
 * connecting first if needed. A read whose connection was lost fast (a
 * restarted server, not a black hole) is sent once more on a new
 * connection; a write never is (see statements[]).
 */
static enum db_status
db_execute(struct db *db, enum stmt_id id, MYSQL_BIND *params)
{
	int64_t started = now_ms();
	enum db_status status;
	MYSQL_STMT *stmt;
	int attempt;

	for (attempt = 0;; attempt++) {
		status = db_connect(db);
		if (status != DB_OK)
			return status;
		stmt = db->stmts[id];
		if (id == STMT_PING) {
			if (mysql_ping(db->conn) == 0) {
				db->last_error = 0;
				return DB_OK;
			}
			status = db_fail(db, id, true, mysql_errno(db->conn),
			    mysql_error(db->conn));
		} else {
			if (params != NULL &&
			    mysql_stmt_bind_param(stmt, params))
				return db_stmt_fail(db, id, false);
			if (mysql_stmt_execute(stmt) == 0) {
				db->last_error = 0;
				return DB_OK;
			}
			status = db_stmt_fail(db, id, true);
		}
		if (db->conn != NULL)
			return status;
		/* Lost slowly (a timeout): the server is not answering, so
		 * spare the other workers a connect attempt of their own. */
		if (now_ms() - started > DB_RETRY_WINDOW_MS) {
			db_gate_failed(db->gate, now_ms(), DB_RETRY_DELAY_MS);
			return status;
		}
		if (statements[id].write || attempt > 0)
			return status;
	}
}

static void
db_bind_row(struct db_row *row)
{
	memset(row->bind, 0, sizeof(row->bind));
	bind_long(&row->bind[0], &row->id);
	row->bind[1].buffer_type = MYSQL_TYPE_STRING;
	row->bind[1].buffer = row->name;
	row->bind[1].buffer_length = sizeof(row->name);
	row->bind[1].length = &row->name_len;
	row->bind[2].buffer_type = MYSQL_TYPE_STRING;
	row->bind[2].buffer = row->description;
	row->bind[2].buffer_length = sizeof(row->description);
	row->bind[2].length = &row->description_len;
	row->bind[2].is_null = &row->description_null;
	row->bind[3].buffer_type = MYSQL_TYPE_TIMESTAMP;
	row->bind[3].buffer = &row->created_at;
	row->bind[4].buffer_type = MYSQL_TYPE_LONGLONG;
	row->bind[4].buffer = &row->version;
	row->bind[4].is_unsigned = 1;
}

/* width decimal digits of value at p, zero-padded (no NUL). */
static void
put_digits(char *p, unsigned int value, int width)
{
	while (width-- > 0) {
		p[width] = (char)('0' + value % 10);
		value /= 10;
	}
}

/* "YYYY-MM-DDTHH:MM:SSZ"; by hand, as snprintf cost 3,000 instructions a row. */
static void
format_time(const MYSQL_TIME *t, char out[21])
{
	put_digits(out, t->year % 10000, 4);
	out[4] = '-';
	put_digits(out + 5, t->month % 100, 2);
	out[7] = '-';
	put_digits(out + 8, t->day % 100, 2);
	out[10] = 'T';
	put_digits(out + 11, t->hour % 100, 2);
	out[13] = ':';
	put_digits(out + 14, t->minute % 100, 2);
	out[16] = ':';
	put_digits(out + 17, t->second % 100, 2);
	out[19] = 'Z';
	out[20] = '\0';
}

/* Copies the fetched row into *item (which then owns its strings). */
static enum db_status
db_row_to_item(const struct db_row *row, struct item *item)
{
	item->id = row->id;
	item->version = row->version;
	item->name = strndup(row->name, row->name_len);
	item->description = row->description_null ? NULL :
	    strndup(row->description, row->description_len);
	format_time(&row->created_at, item->created_at);
	if (item->name == NULL ||
	    (!row->description_null && item->description == NULL)) {
		item_finish(item);
		log_warnx("database: out of memory copying a row");
		return DB_ERROR;
	}
	return DB_OK;
}

/* The fetched row as an item whose strings are borrowed from the row. */
static void
db_row_borrow(struct db_row *row, struct item *item)
{
	row->name[row->name_len] = '\0';
	item->id = row->id;
	item->version = row->version;
	item->name = row->name;
	if (row->description_null)
		item->description = NULL;
	else {
		row->description[row->description_len] = '\0';
		item->description = row->description;
	}
	format_time(&row->created_at, item->created_at);
}

/* Fetches the next row into db->row; DB_NOT_FOUND when there is none left. */
static enum db_status
db_fetch(struct db *db, enum stmt_id id)
{
	int rc;

	rc = mysql_stmt_fetch(db->stmts[id]);
	if (rc == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	if (rc == MYSQL_DATA_TRUNCATED) {
		log_warnx("database: a row of \"%s\" is larger than the API "
		    "allows", statements[id].sql);
		return DB_ERROR;
	}
	if (rc != 0)
		return db_stmt_fail(db, id, true);
	return DB_OK;
}

/* Runs a row statement and binds its result columns to result. */
static enum db_status
db_query(struct db *db, enum stmt_id id, MYSQL_BIND *params,
    MYSQL_BIND *result)
{
	enum db_status status;

	status = db_execute(db, id, params);
	if (status != DB_OK)
		return status;
	if (mysql_stmt_bind_result(db->stmts[id], result))
		return db_stmt_fail(db, id, true);
	return DB_OK;
}

/* Runs a statement whose rows are items, bound to db->row. */
static enum db_status
db_query_items(struct db *db, enum stmt_id id, MYSQL_BIND *params)
{
	db_bind_row(&db->row);
	return db_query(db, id, params, db->row.bind);
}

/* Ends a result set (reading what is left of it) unless the connection was dropped. */
static void
db_end_rows(struct db *db, enum stmt_id id)
{
	if (db->stmts[id] != NULL)
		mysql_stmt_free_result(db->stmts[id]);
}

enum db_status
db_ping(struct db *db, const char **reason)
{
	enum db_status status;

	status = db_execute(db, STMT_PING, NULL);
	*reason = status == DB_OK ? NULL : status == DB_ERROR ?
	    "database error (see the API's log)" : status == DB_OUTDATED ?
	    db->outdated_reason : "database unavailable";
	return status;
}

static enum db_status
db_list(struct db *db, enum stmt_id id, int64_t after, int64_t upto,
    int64_t limit, db_row_fn on_row, void *ctx)
{
	MYSQL_BIND params[3];
	enum db_status status;
	struct item item;

	memset(params, 0, sizeof(params));
	bind_longlong(&params[0], &after);
	bind_longlong(&params[1], &upto);
	bind_longlong(&params[2], &limit);
	status = db_query_items(db, id, params);
	if (status != DB_OK)
		return status;
	while ((status = db_fetch(db, id)) == DB_OK) {
		db_row_borrow(&db->row, &item);
		if (on_row(ctx, &item) == DB_ROWS_STOP)
			break;
	}
	/* After a stop, what is left is read and discarded here. */
	db_end_rows(db, id);
	return status == DB_NOT_FOUND ? DB_OK : status;
}

enum db_status
db_list_items(struct db *db, int64_t after, int64_t upto, int64_t limit,
    db_row_fn on_row, void *ctx)
{
	return db_list(db, STMT_LIST, after, upto, limit, on_row, ctx);
}

enum db_status
db_stream_items(struct db *db, int64_t after, int64_t upto, int64_t limit,
    db_row_fn on_row, void *ctx)
{
	return db_list(db, STMT_LIST_STREAM, after, upto, limit, on_row, ctx);
}

enum db_status
db_page_end(struct db *db, int64_t after, int limit, int64_t *last,
    bool *more)
{
	MYSQL_BIND params[2], result;
	enum db_status status;
	int64_t offset = (int64_t)limit - 1;
	int32_t id = 0;

	*last = 0;
	*more = false;
	memset(params, 0, sizeof(params));
	memset(&result, 0, sizeof(result));
	bind_longlong(&params[0], &after);
	bind_longlong(&params[1], &offset);
	bind_long(&result, &id);
	status = db_query(db, STMT_PAGE_END, params, &result);
	if (status != DB_OK)
		return status;
	/* The page's last item, then the one after it, if any. */
	status = db_fetch(db, STMT_PAGE_END);
	if (status == DB_OK) {
		*last = id;
		status = db_fetch(db, STMT_PAGE_END);
		*more = status == DB_OK;
	}
	db_end_rows(db, STMT_PAGE_END);
	return status == DB_NOT_FOUND || status == DB_OK ? DB_OK : status;
}

enum db_status
db_get_item(struct db *db, int32_t id, struct item *item)
{
	MYSQL_BIND params[1];
	enum db_status status;

	memset(params, 0, sizeof(params));
	bind_long(&params[0], &id);
	status = db_query_items(db, STMT_GET, params);
	if (status != DB_OK)
		return status;
	status = db_fetch(db, STMT_GET);
	if (status == DB_OK)
		status = db_row_to_item(&db->row, item);
	db_end_rows(db, STMT_GET);
	return status;
}

/* Whole seconds, as the created_at column keeps them. */
static void
utc_now(MYSQL_TIME *t)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	memset(t, 0, sizeof(*t));
	t->year = (unsigned int)tm.tm_year + 1900;
	t->month = (unsigned int)tm.tm_mon + 1;
	t->day = (unsigned int)tm.tm_mday;
	t->hour = (unsigned int)tm.tm_hour;
	t->minute = (unsigned int)tm.tm_min;
	t->second = (unsigned int)tm.tm_sec;
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
}

/*
 * The version a write gives its row: random, so that an ETag never comes
 * back (not after a restore from a backup either) and the worker knows the
 * version it wrote without reading it back.
 */
enum db_status
db_new_version(uint64_t *version)
{
	ssize_t n;

	do
		n = getrandom(version, sizeof(*version), 0);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof(*version)) {
		log_warn("getrandom");
		return DB_ERROR;
	}
	return DB_OK;
}

/* The stored item is what the client sent: copies input into *item. */
static enum db_status
item_copy_input(const struct item_input *input, struct item *item)
{
	item->name = strdup(input->name);
	item->description = input->description != NULL ?
	    strdup(input->description) : NULL;
	if (item->name == NULL ||
	    (input->description != NULL && item->description == NULL)) {
		item_finish(item);
		log_warnx("database: out of memory copying an item");
		return DB_ERROR;
	}
	return DB_OK;
}

enum db_status
db_create_item(struct db *db, const struct item_input *input,
    struct item *item)
{
	unsigned long name_len, description_len;
	my_bool name_null, description_null;
	MYSQL_BIND params[4];
	enum db_status status;
	MYSQL_TIME created;
	uint64_t id, version;

	status = db_new_version(&version);
	if (status != DB_OK)
		return status;
	memset(params, 0, sizeof(params));
	bind_string(&params[0], input->name, &name_len, &name_null);
	bind_string(&params[1], input->description, &description_len,
	    &description_null);
	utc_now(&created);
	params[2].buffer_type = MYSQL_TYPE_DATETIME;
	params[2].buffer = &created;
	bind_version(&params[3], &version);
	status = db_execute(db, STMT_INSERT, params);
	if (status != DB_OK)
		return status;
	id = mysql_stmt_insert_id(db->stmts[STMT_INSERT]);
	if (id == 0 || id > ITEM_ID_MAX) {
		log_warnx("database: insert returned id %llu",
		    (unsigned long long)id);
		return DB_ERROR;
	}
	item->id = (int32_t)id;
	item->version = version;
	format_time(&created, item->created_at);
	return item_copy_input(input, item);
}

/* The stored row's created_at and version; DB_NOT_FOUND when there is none. */
static enum db_status
db_read_current(struct db *db, int32_t id, MYSQL_TIME *created,
    uint64_t *version)
{
	MYSQL_BIND params[1], result[2];
	enum db_status status;

	memset(params, 0, sizeof(params));
	memset(result, 0, sizeof(result));
	bind_long(&params[0], &id);
	result[0].buffer_type = MYSQL_TYPE_DATETIME;
	result[0].buffer = created;
	bind_version(&result[1], version);
	status = db_query(db, STMT_CURRENT, params, result);
	if (status != DB_OK)
		return status;
	status = db_fetch(db, STMT_CURRENT);
	db_end_rows(db, STMT_CURRENT);
	return status;
}

/*
 * A conditional write changed no row: the item is gone (DB_NOT_FOUND), or
 * another write replaced the version it was judged on (DB_PRECONDITION_FAILED,
 * with the version now stored in *current).
 */
static enum db_status
db_lost_race(struct db *db, int32_t id, uint64_t *current)
{
	MYSQL_TIME created;
	enum db_status status;

	status = db_read_current(db, id, &created, current);
	return status == DB_OK ? DB_PRECONDITION_FAILED : status;
}

/*
 * created_at and the version are read before the UPDATE, and the rest of
 * the answer is the input: the response is what this request wrote even if
 * another PUT commits right after it. A DELETE in between leaves the UPDATE
 * nothing to change: 404, as nothing was written. With a precondition, it
 * is judged on the version read, and the UPDATE applies only to that
 * version: a write in between makes it change nothing (412).
 */
enum db_status
db_replace_item(struct db *db, int32_t id, const struct item_input *input,
    const struct db_precondition *pre, struct item *item)
{
	unsigned long name_len, description_len;
	my_bool name_null, description_null;
	MYSQL_BIND params[5];
	enum db_status status;
	MYSQL_TIME created;
	uint64_t current, version;
	enum stmt_id stmt = pre != NULL ? STMT_UPDATE_IF : STMT_UPDATE;

	status = db_read_current(db, id, &created, &current);
	if (status != DB_OK)
		return status;
	if (pre != NULL && !pre->holds(pre->ctx, current)) {
		item->version = current;
		return DB_PRECONDITION_FAILED;
	}
	/* Never the version read: the table's trigger would replace it. */
	do
		status = db_new_version(&version);
	while (status == DB_OK && version == current);
	if (status != DB_OK)
		return status;
	memset(params, 0, sizeof(params));
	bind_string(&params[0], input->name, &name_len, &name_null);
	bind_string(&params[1], input->description, &description_len,
	    &description_null);
	bind_version(&params[2], &version);
	bind_long(&params[3], &id);
	/* Read by STMT_UPDATE_IF only: a statement binds as many as it has markers. */
	bind_version(&params[4], &current);
	status = db_execute(db, stmt, params);
	if (status != DB_OK)
		return status;
	if (mysql_stmt_affected_rows(db->stmts[stmt]) == 0) {
		if (pre == NULL)
			return DB_NOT_FOUND;
		return db_lost_race(db, id, &item->version);
	}
	item->id = id;
	item->version = version;
	format_time(&created, item->created_at);
	return item_copy_input(input, item);
}

enum db_status
db_delete_item(struct db *db, int32_t id, const struct db_precondition *pre,
    uint64_t *current)
{
	MYSQL_BIND params[2];
	enum db_status status;
	MYSQL_TIME created;
	enum stmt_id stmt = STMT_DELETE;

	memset(params, 0, sizeof(params));
	bind_long(&params[0], &id);
	if (pre != NULL) {
		status = db_read_current(db, id, &created, current);
		if (status != DB_OK)
			return status;
		if (!pre->holds(pre->ctx, *current))
			return DB_PRECONDITION_FAILED;
		bind_version(&params[1], current);
		stmt = STMT_DELETE_IF;
	}
	status = db_execute(db, stmt, params);
	if (status != DB_OK)
		return status;
	if (mysql_stmt_affected_rows(db->stmts[stmt]) == 0)
		return pre != NULL ? db_lost_race(db, id, current) : DB_NOT_FOUND;
	return DB_OK;
}
