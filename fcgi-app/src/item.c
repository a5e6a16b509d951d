#include "item.h"

#include <stdlib.h>

void
item_finish(struct item *item)
{
	if (item == NULL)
		return;
	free(item->name);
	free(item->description);
	item->name = NULL;
	item->description = NULL;
}

void
item_input_finish(struct item_input *input)
{
	if (input == NULL)
		return;
	free(input->name);
	free(input->description);
	input->name = NULL;
	input->description = NULL;
}

void
item_list_finish(struct item_list *list)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; i < list->count; i++)
		item_finish(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
	list->cap = 0;
}
