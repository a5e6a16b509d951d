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
