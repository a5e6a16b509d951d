/*
 * params_parse_id(): the {id} segment of /items/{id} (after nginx decoded
 * the URI). Oracle (fuzz.h's model of docs/api.md): accepted exactly when
 * the segment is one or more ASCII digits whose value is 1..2147483647
 * (leading zeros allowed: /items/007 is item 7), and then the value written
 * prints as the segment's significant digits.
 */
#include "fuzz.h"
#include "params.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *segment = fuzz_cstring(data, size);
	const char *digits = NULL;
	size_t ndigits = 0;
	int32_t id = -1;
	int rc, expected;

	rc = params_parse_id(segment, &id);
	expected = fuzz_decimal_in_range(segment, strlen(segment), "1",
	    "2147483647", &digits, &ndigits) ? 0 : -1;
	FUZZ_CHECK(rc == expected, "accepts exactly the ids of the contract");
	if (rc == 0)
		FUZZ_CHECK(fuzz_prints_as(id, digits, ndigits),
		    "the id written is the one sent");
	free(segment);
	return 0;
}
