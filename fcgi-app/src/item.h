/* An item of the API, as stored and as returned. */
#ifndef ITEMS_ITEM_H
#define ITEMS_ITEM_H

#include <stddef.h>
#include <stdint.h>

/* Limits of the contract, which are also the column sizes in mysql/migrations/. */
#define ITEM_NAME_MAX_CHARS	255
#define ITEM_NAME_MAX_BYTES	(ITEM_NAME_MAX_CHARS * 4)
#define ITEM_DESCRIPTION_MAX_BYTES 65535
#define ITEM_ID_MAX		INT32_MAX

struct item {
	int32_t	 id;
	char	*name;			/* owned */
	char	*description;		/* owned; NULL is JSON null */
	char	 created_at[21];	/* "YYYY-MM-DDTHH:MM:SSZ" */
	uint64_t version;		/* the row version: its ETag (etag.h) */
};

/* What a client may write: the validated body of POST and PUT. */
struct item_input {
	char	*name;			/* owned */
	char	*description;		/* owned; NULL is JSON null */
};

/* Frees the strings an item owns; accepts NULL. */
void	item_finish(struct item *item);
void	item_input_finish(struct item_input *input);

#endif
