/*
 * The database: one persistent MariaDB/MySQL connection per worker, opened
 * on first use, with every statement prepared once per connection. The only
 * file that includes mysql.h. Errors are logged here, where they are
 * understood; callers only map the status to HTTP.
 *
 * What a status promises about a write (docs/architecture.md, "Write
 * semantics"): DB_OK, it was applied and committed; DB_UNAVAILABLE, it was
 * not applied (never sent, or refused or rolled back by the server); DB_UNKNOWN,
 * it was sent and its answer was lost, so it may or may not have been
 * applied. A statement that may have reached the server is never sent again.
 */
#ifndef ITEMS_DB_H
#define ITEMS_DB_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "item.h"
#include "metrics.h"

enum db_status {
	DB_OK,
	DB_NOT_FOUND,
	DB_UNAVAILABLE,		/* not done: down, unreachable, busy or timed out; retry later (503) */
	DB_UNKNOWN,		/* a write whose answer was lost: it may have been applied (504) */
	DB_ERROR,		/* anything else; logged (500) */
	DB_OUTDATED,		/* the schema is older than this worker needs: not done (503) */
	DB_PRECONDITION_FAILED,	/* the stored version did not satisfy the precondition: not done (412) */
};

/*
 * A condition a write puts on the version stored (If-Match): holds() is
 * asked once with the version read, and the write then applies only to that
 * version, in the same statement.
 */
struct db_precondition {
	bool	(*holds)(void *ctx, uint64_t version);
	void	*ctx;
};

/* What a row callback tells db_list_items(). */
enum db_rows {
	DB_ROWS_NEXT,		/* hand over the next row */
	DB_ROWS_STOP,		/* enough: the rest is discarded */
};

/* Called once per row; item and its strings are borrowed for the call only. */
typedef enum db_rows (*db_row_fn)(void *ctx, const struct item *item);

struct db;

/* Returns a new handle (no connection yet), or NULL when memory runs out. config and metrics are borrowed. */
struct db	*db_create(const struct config *config, struct metrics *metrics);
/* Closes the connection (COM_QUIT) and frees; accepts NULL. */
void		 db_destroy(struct db *db);

/*
 * One round trip to the server (COM_PING on the worker's connection). *reason
 * (static text) says why on failure.
 */
enum db_status	 db_ping(struct db *db, const char **reason);
/*
 * What a worker sends for POST /items, for ctest/bench/insert-loop.c
 * (MariaDB's own rate of the same statement): the session's settings, run
 * once per connection, the INSERT (name, description, created_at, version),
 * prepared once, and the random version each write gives its row.
 */
const char	*db_session_sql(void);
const char	*db_insert_sql(void);
enum db_status	 db_new_version(uint64_t *version);
/*
 * Hands on_row the items with after < id <= upto, by ascending id, at most
 * limit of them, as they arrive from the server (nothing is held but the
 * current row). A failure after some rows were handed over is still reported.
 * db_list_items() is bounded in time on the server (a lock makes it fail
 * fast, DB_UNAVAILABLE); db_stream_items() is not, for the rest of a page
 * that a slow client reads as it is streamed.
 */
enum db_status	 db_list_items(struct db *db, int64_t after, int64_t upto,
		    int64_t limit, db_row_fn on_row, void *ctx);
enum db_status	 db_stream_items(struct db *db, int64_t after, int64_t upto,
		    int64_t limit, db_row_fn on_row, void *ctx);
/*
 * Where the page of limit items after `after` ends: *last is the id of its
 * limit-th item (0 when fewer follow) and *more whether any item follows it.
 */
enum db_status	 db_page_end(struct db *db, int64_t after, int limit,
		    int64_t *last, bool *more);
/* Fills *item (caller frees with item_finish). */
enum db_status	 db_get_item(struct db *db, int32_t id, struct item *item);
/* Inserts; fills *item with what was stored (caller frees). */
enum db_status	 db_create_item(struct db *db, const struct item_input *input,
		    struct item *item);
/*
 * Full replacement, created_at kept; fills *item (caller frees) with exactly
 * what this request wrote, whatever other requests do to the row meanwhile.
 */
enum db_status	 db_replace_item(struct db *db, int32_t id,
		    const struct item_input *input,
		    const struct db_precondition *pre, struct item *item);
/*
 * pre: NULL for none. DB_PRECONDITION_FAILED leaves the version stored in
 * item->version (replace) or *current (delete), for the answer's ETag.
 */
enum db_status	 db_delete_item(struct db *db, int32_t id,
		    const struct db_precondition *pre, uint64_t *current);

#endif
