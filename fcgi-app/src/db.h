/*
 * The database: one persistent MariaDB/MySQL connection per worker, opened
 * on first use, with every statement prepared once per connection. The only
 * file that includes mysql.h. Errors are logged here, where they are
 * understood; callers only map the status to HTTP.
 */
#ifndef ITEMS_DB_H
#define ITEMS_DB_H

#include <stdint.h>

#include "config.h"
#include "item.h"
#include "metrics.h"

enum db_status {
	DB_OK,
	DB_NOT_FOUND,
	DB_UNAVAILABLE,		/* down, unreachable or lost: worth a retry later (503) */
	DB_ERROR,		/* anything else; logged (500) */
};

struct db;

/* Returns a new handle (no connection yet), or NULL when memory runs out. config and metrics are borrowed. */
struct db	*db_create(const struct config *config, struct metrics *metrics);
/* Closes the connection (COM_QUIT) and frees; accepts NULL. */
void		 db_destroy(struct db *db);

/* One round trip to the server. *reason (static text) says why on failure. */
enum db_status	 db_ping(struct db *db, const char **reason);
/* Fills *list (caller frees with item_list_finish) with up to limit items with id > after. */
enum db_status	 db_list_items(struct db *db, int64_t after, int limit,
		    struct item_list *list);
/* Fills *item (caller frees with item_finish). */
enum db_status	 db_get_item(struct db *db, int32_t id, struct item *item);
/* Inserts; fills *item with what was stored (caller frees). Never retried. */
enum db_status	 db_create_item(struct db *db, const struct item_input *input,
		    struct item *item);
/* Full replacement, created_at kept; fills *item (caller frees). */
enum db_status	 db_replace_item(struct db *db, int32_t id,
		    const struct item_input *input, struct item *item);
enum db_status	 db_delete_item(struct db *db, int32_t id);

#endif
