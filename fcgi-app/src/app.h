/* What every handler may use: the process-wide state of a worker, all borrowed. */
#ifndef ITEMS_APP_H
#define ITEMS_APP_H

#include "config.h"
#include "db.h"
#include "metrics.h"

struct app {
	const struct config	*config;
	struct db		*db;
	struct metrics		*metrics;
};

#endif
