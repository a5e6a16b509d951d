/*
 * params_parse_id(): the {id} segment of /items/{id} (after nginx decoded
 * the URI). Oracle: accepted exactly when the segment is one or more ASCII
 * digits whose value is 1..2147483647 (leading zeros allowed: /items/007 is
 * item 7), and then the value is the one written.
 */
#include "fuzz.h"
#include "params.h"

static int
model_id(const char *s, int32_t *id)
{
	static const char max[] = "2147483647";
	size_t len = strlen(s), i;
	int64_t v = 0;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	while (len > 1 && s[0] == '0') {
		s++;
		len--;
	}
	if (len > sizeof(max) - 1 ||
	    (len == sizeof(max) - 1 && memcmp(s, max, len) > 0))
		return -1;
	for (i = 0; i < len; i++)
		v = v * 10 + (s[i] - '0');
	if (v < 1)
		return -1;
	*id = (int32_t)v;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *segment = fuzz_cstring(data, size);
	int32_t id = -1, expected_id = -2;
	int rc, expected;

	rc = params_parse_id(segment, &id);
	expected = model_id(segment, &expected_id);
	FUZZ_CHECK(rc == expected, "accepts exactly the ids of the contract");
	if (rc == 0)
		FUZZ_CHECK(id == expected_id && id >= 1, "the id written");
	free(segment);
	return 0;
}
