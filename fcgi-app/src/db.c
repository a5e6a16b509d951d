#include "db.h"

#include <errno.h>
#include <mysql.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "db_gate.h"
#include "log.h"

/*
 * Timeouts, in seconds (the unit Connector/C takes). The API answers within
 * 2 s even when the database host drops packets: a connect attempt gives up
 * after 1 s, a read or write after 1 s. While the database is down, the
 * pool-wide gate (db_gate.h) lets one worker probe it every DB_RETRY_DELAY
 * and the others answer 503 at once, so service resumes within about
 * DB_RETRY_DELAY + a connect after the database is back.
 */
#define DB_CONNECT_TIMEOUT	1
#define DB_IO_TIMEOUT		1
#define DB_RETRY_DELAY		0.25
/* A statement that failed on a lost connection is retried only if this was quick. */
#define DB_RETRY_WINDOW		0.25

enum stmt_id {
	STMT_PING,
	STMT_LIST,
	STMT_GET,
	STMT_INSERT,
	STMT_UPDATE,
	STMT_DELETE,
	STMT_COUNT
};

/*
 * Every statement of the application. Only idempotent ones are retried after
 * a lost connection: an INSERT or DELETE may have run before the loss.
 */
static const struct {
	const char	*sql;
	bool		 idempotent;
} statements[STMT_COUNT] = {
	[STMT_PING] = { "SELECT 1", true },
	[STMT_LIST] = { "SELECT id, name, description, created_at FROM items"
	    " WHERE id > ? ORDER BY id LIMIT ?", true },
	[STMT_GET] = { "SELECT id, name, description, created_at FROM items"
	    " WHERE id = ?", true },
	[STMT_INSERT] = { "INSERT INTO items (name, description, created_at)"
	    " VALUES (?, ?, ?)", false },
	[STMT_UPDATE] = { "UPDATE items SET name = ?, description = ?"
	    " WHERE id = ?", true },
	[STMT_DELETE] = { "DELETE FROM items WHERE id = ?", false },
};

/* Where a fetched row lands; bound once per execution of a row statement. */
struct db_row {
	int32_t		id;
	char		name[ITEM_NAME_MAX_BYTES + 1];
	unsigned long	name_len;
	char		description[ITEM_DESCRIPTION_MAX_BYTES + 1];
	unsigned long	description_len;
	my_bool		description_null;
	MYSQL_TIME	created_at;
	MYSQL_BIND	bind[4];
};

struct db {
	const struct config	*config;
	struct metrics		*metrics;
	MYSQL			*conn;
	MYSQL_STMT		*stmts[STMT_COUNT];
	bool			 ever_connected;
	bool			 down;		/* an outage is under way (and logged) */
	double			 down_since;
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

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
 * Errors that mean the connection is unusable: every client-side error
 * (CR_*, 2000..2999: gone away, lost, cannot connect) and the server telling
 * us it is going away.
 */
static bool
db_error_is_connection(unsigned int code)
{
	return (code >= CR_MIN_ERROR && code <= CR_MAX_ERROR) ||
	    code == ER_SERVER_SHUTDOWN || code == ER_CONNECTION_KILLED ||
	    code == ER_ABORTING_CONNECTION || code == ER_CON_COUNT_ERROR ||
	    code == ER_TOO_MANY_USER_CONNECTIONS;
}

/* Busy rather than broken: worth a retry by the client. */
static bool
db_error_is_transient(unsigned int code)
{
	return code == ER_LOCK_WAIT_TIMEOUT || code == ER_LOCK_DEADLOCK;
}

static void
db_mark_down(struct db *db, const char *what, unsigned int code,
    const char *message)
{
	if (!db->down) {
		db->down = true;
		db->down_since = now_seconds();
		log_warnx("database %s: %u %s", what, code, message);
	} else
		log_debug("database still unavailable: %u %s", code, message);
}

/* Classifies a failed call, logs it once, and drops a broken connection. */
static enum db_status
db_fail(struct db *db, enum stmt_id id, unsigned int code, const char *message)
{
	metrics_record_db_error(db->metrics);
	if (db_error_is_connection(code)) {
		db_mark_down(db, "connection lost", code, message);
		db_disconnect(db);
		return DB_UNAVAILABLE;
	}
	if (db_error_is_transient(code)) {
		log_warnx("database busy in \"%s\": %u %s", statements[id].sql,
		    code, message);
		return DB_UNAVAILABLE;
	}
	log_warnx("database error in \"%s\": %u %s", statements[id].sql, code,
	    message);
	return DB_ERROR;
}

static enum db_status
db_stmt_fail(struct db *db, enum stmt_id id)
{
	MYSQL_STMT *stmt = db->stmts[id];

	return db_fail(db, id, mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
}

/*
 * An idle connection never has data waiting: when its socket is readable,
 * the server has closed it (restart, wait_timeout, kill). Noticing this
 * before a statement lets even a non-idempotent one run on a fresh connection.
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

static int
db_prepare_all(struct db *db)
{
	int i;

	for (i = 0; i < STMT_COUNT; i++) {
		db->stmts[i] = mysql_stmt_init(db->conn);
		if (db->stmts[i] == NULL)
			return -1;
		if (mysql_stmt_prepare(db->stmts[i], statements[i].sql,
		    strlen(statements[i].sql)) != 0) {
			db_stmt_fail(db, (enum stmt_id)i);
			return -1;
		}
	}
	return 0;
}

static enum db_status
db_connect(struct db *db)
{
	const struct config *c = db->config;
	unsigned int connect_timeout = DB_CONNECT_TIMEOUT;
	unsigned int io_timeout = DB_IO_TIMEOUT;
	my_bool off = 0;

	if (db->conn != NULL) {
		if (!db_connection_closed_by_peer(db))
			return DB_OK;
		db_mark_down(db, "connection lost", CR_SERVER_GONE_ERROR,
		    "closed by the server while idle");
		db_disconnect(db);
	}
	/* The probe's lease outlasts a connect attempt that times out. */
	if (!db_gate_try(db->gate, now_ms(), DB_CONNECT_TIMEOUT * 1000 + 500))
		return DB_UNAVAILABLE;
	db->conn = mysql_init(NULL);
	if (db->conn == NULL) {
		log_warnx("database: mysql_init failed (out of memory)");
		return DB_ERROR;
	}
	mysql_optionsv(db->conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_optionsv(db->conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_optionsv(db->conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	/* Reconnection is ours (it must prepare the statements again). */
	mysql_optionsv(db->conn, MYSQL_OPT_RECONNECT, &off);
	mysql_optionsv(db->conn, MYSQL_OPT_LOCAL_INFILE, &off);
	mysql_optionsv(db->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* created_at travels as UTC whatever the server's zone. */
	mysql_optionsv(db->conn, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	/* CLIENT_FOUND_ROWS: an UPDATE that changes nothing still counts its row. */
	if (mysql_real_connect(db->conn, c->db_host, c->db_user,
	    c->db_password, c->db_name, c->db_port, NULL,
	    CLIENT_FOUND_ROWS) == NULL) {
		metrics_record_db_error(db->metrics);
		db_mark_down(db, "unreachable", mysql_errno(db->conn),
		    mysql_error(db->conn));
		goto fail;
	}
	if (db_prepare_all(db) == -1)
		goto fail;
	if (db->ever_connected) {
		metrics_record_db_reconnect(db->metrics);
		log_info("database connection restored after %.1f s",
		    db->down ? now_seconds() - db->down_since : 0.0);
	} else
		log_info("database connection established to %s:%u",
		    c->db_host, c->db_port);
	db_gate_opened(db->gate);
	db->ever_connected = true;
	db->down = false;
	return DB_OK;
fail:
	db_disconnect(db);
	db_gate_failed(db->gate, now_ms(), (int64_t)(DB_RETRY_DELAY * 1000));
	return DB_UNAVAILABLE;
}

/*
 * Binds params and runs statement id, connecting first if needed. After a
 * lost connection an idempotent statement is tried once more on a new one,
 * but only if the failure came fast (a restarted server, not a black hole).
 */
static enum db_status
db_execute(struct db *db, enum stmt_id id, MYSQL_BIND *params)
{
	double started = now_seconds();
	enum db_status status;
	MYSQL_STMT *stmt;
	int attempt;

	for (attempt = 0;; attempt++) {
		status = db_connect(db);
		if (status != DB_OK)
			return status;
		stmt = db->stmts[id];
		if ((params == NULL || !mysql_stmt_bind_param(stmt, params)) &&
		    mysql_stmt_execute(stmt) == 0)
			return DB_OK;
		status = db_stmt_fail(db, id);
		if (status != DB_UNAVAILABLE || db->conn != NULL)
			return status;
		/* Lost slowly (a timeout): the server is not answering, so
		 * spare the other workers a connect attempt of their own. */
		if (now_seconds() - started > DB_RETRY_WINDOW) {
			db_gate_failed(db->gate, now_ms(),
			    (int64_t)(DB_RETRY_DELAY * 1000));
			return status;
		}
		if (!statements[id].idempotent || attempt > 0)
			return status;
	}
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

/* Fetches one row; DB_NOT_FOUND when there is none left. */
static enum db_status
db_fetch_item(struct db *db, enum stmt_id id, struct item *item)
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
		return db_stmt_fail(db, id);
	return db_row_to_item(&db->row, item);
}

/* Runs a row statement and binds its result columns. */
static enum db_status
db_query_rows(struct db *db, enum stmt_id id, MYSQL_BIND *params)
{
	enum db_status status;

	status = db_execute(db, id, params);
	if (status != DB_OK)
		return status;
	db_bind_row(&db->row);
	if (mysql_stmt_bind_result(db->stmts[id], db->row.bind))
		return db_stmt_fail(db, id);
	return DB_OK;
}

/* Ends a result set unless the connection was dropped on the way. */
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
	MYSQL_BIND result;
	int32_t one = 0;

	*reason = "database unavailable";
	status = db_execute(db, STMT_PING, NULL);
	if (status != DB_OK)
		return status;
	memset(&result, 0, sizeof(result));
	bind_long(&result, &one);
	if (mysql_stmt_bind_result(db->stmts[STMT_PING], &result) ||
	    mysql_stmt_fetch(db->stmts[STMT_PING]) != 0) {
		status = db_stmt_fail(db, STMT_PING);
		db_end_rows(db, STMT_PING);
		return status;
	}
	db_end_rows(db, STMT_PING);
	if (one != 1) {
		*reason = "database answered SELECT 1 wrongly";
		return DB_ERROR;
	}
	*reason = NULL;
	return DB_OK;
}

static int
item_list_push(struct item_list *list, const struct item *item)
{
	struct item *items;
	size_t cap;

	if (list->count == list->cap) {
		cap = list->cap ? list->cap * 2 : 16;
		items = realloc(list->items, cap * sizeof(*items));
		if (items == NULL)
			return -1;
		list->items = items;
		list->cap = cap;
	}
	list->items[list->count++] = *item;
	return 0;
}

enum db_status
db_list_items(struct db *db, int64_t after, int limit, struct item_list *list)
{
	MYSQL_BIND params[2];
	enum db_status status;
	int64_t fetch = (int64_t)limit + 1;	/* one more tells if a next page exists */
	struct item item;

	memset(list, 0, sizeof(*list));
	memset(params, 0, sizeof(params));
	bind_longlong(&params[0], &after);
	bind_longlong(&params[1], &fetch);
	status = db_query_rows(db, STMT_LIST, params);
	if (status != DB_OK)
		return status;
	for (;;) {
		status = db_fetch_item(db, STMT_LIST, &item);
		if (status == DB_NOT_FOUND) {
			status = DB_OK;
			break;
		}
		if (status != DB_OK)
			break;
		if (list->count == (size_t)limit) {
			list->more = 1;
			item_finish(&item);
			continue;
		}
		if (item_list_push(list, &item) == -1) {
			item_finish(&item);
			log_warnx("database: out of memory listing items");
			status = DB_ERROR;
			break;
		}
	}
	db_end_rows(db, STMT_LIST);
	if (status != DB_OK)
		item_list_finish(list);
	return status;
}

enum db_status
db_get_item(struct db *db, int32_t id, struct item *item)
{
	MYSQL_BIND params[1];
	enum db_status status;

	memset(params, 0, sizeof(params));
	bind_long(&params[0], &id);
	status = db_query_rows(db, STMT_GET, params);
	if (status != DB_OK)
		return status;
	status = db_fetch_item(db, STMT_GET, item);
	db_end_rows(db, STMT_GET);
	return status;
}

/* Whole seconds, as the TIMESTAMP column keeps them. */
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
	MYSQL_BIND params[3];
	enum db_status status;
	MYSQL_TIME created;
	uint64_t id;

	memset(params, 0, sizeof(params));
	bind_string(&params[0], input->name, &name_len, &name_null);
	bind_string(&params[1], input->description, &description_len,
	    &description_null);
	utc_now(&created);
	params[2].buffer_type = MYSQL_TYPE_TIMESTAMP;
	params[2].buffer = &created;
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
	format_time(&created, item->created_at);
	return item_copy_input(input, item);
}

enum db_status
db_replace_item(struct db *db, int32_t id, const struct item_input *input,
    struct item *item)
{
	unsigned long name_len, description_len;
	my_bool name_null, description_null;
	MYSQL_BIND params[3];
	enum db_status status;

	memset(params, 0, sizeof(params));
	bind_string(&params[0], input->name, &name_len, &name_null);
	bind_string(&params[1], input->description, &description_len,
	    &description_null);
	bind_long(&params[2], &id);
	status = db_execute(db, STMT_UPDATE, params);
	if (status != DB_OK)
		return status;
	if (mysql_stmt_affected_rows(db->stmts[STMT_UPDATE]) == 0)
		return DB_NOT_FOUND;
	/* Read back for created_at, which only the row knows. */
	return db_get_item(db, id, item);
}

enum db_status
db_delete_item(struct db *db, int32_t id)
{
	MYSQL_BIND params[1];
	enum db_status status;

	memset(params, 0, sizeof(params));
	bind_long(&params[0], &id);
	status = db_execute(db, STMT_DELETE, params);
	if (status != DB_OK)
		return status;
	return mysql_stmt_affected_rows(db->stmts[STMT_DELETE]) == 0 ?
	    DB_NOT_FOUND : DB_OK;
}
