/*
 * netaddr_parse_ipv4(): all of the input as a slice, in a heap buffer of
 * exactly its size (NULs included); netaddr_parse(): the input up to its
 * first NUL as a C string (FCGI_LISTEN_SUBNET, FCGI_WEB_SERVER_ADDRS and the
 * --address-in argument come from the environment or the command line).
 * Oracle, written by hand rather than through inet_pton(3): an address is
 * four decimal numbers from 0 to 255 joined by dots, each one to three
 * digits without a leading zero (glibc's rule); a network is an address, a
 * '/', and a prefix from 0 to 32 written the same way. For a network, the
 * parsed value has its host bits cleared, and netaddr_contains() takes its
 * first and last address and refuses the ones just outside it.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "netaddr.h"

/* A decimal number s[0..len) of 1..3 digits, no leading zero, at most max. */
static bool
model_number(const uint8_t *s, size_t len, unsigned max, unsigned *out)
{
	unsigned value = 0;
	size_t i;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		value = value * 10 + (unsigned)(s[i] - '0');
	}
	if (value > max)
		return false;
	*out = value;
	return true;
}

static bool
model_ipv4(const uint8_t *s, size_t len, uint32_t *out)
{
	uint32_t addr = 0;
	size_t start = 0, i;
	unsigned octet;
	int parts = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (parts == 4 || !model_number(s + start, i - start, 255, &octet))
			return false;
		addr = addr << 8 | octet;
		parts++;
		start = i + 1;
	}
	if (parts != 4)
		return false;
	*out = addr;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct netaddr_net net;
	uint32_t got = 0, want = 0, mask, last;
	const uint8_t *slash;
	unsigned prefix = 0;
	bool model_ok;
	uint8_t *copy;
	char *text;
	size_t len;

	/* The slice. */
	copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		abort();
	if (size > 0)
		memcpy(copy, data, size);
	model_ok = model_ipv4(data, size, &want);
	FUZZ_CHECK((netaddr_parse_ipv4((const char *)copy, size, &got) ==
	    NETADDR_OK) == model_ok, "parse_ipv4 accepts what the model does");
	if (model_ok)
		FUZZ_CHECK(got == want, "parse_ipv4 value");
	free(copy);

	/* The C string, as a network. */
	text = fuzz_cstring(data, size);
	len = strlen(text);
	slash = memchr(text, '/', len);
	model_ok = slash != NULL &&
	    model_ipv4((const uint8_t *)text, (size_t)(slash - (const uint8_t *)text), &want) &&
	    model_number(slash + 1, len - (size_t)(slash + 1 - (const uint8_t *)text), 32, &prefix);
	FUZZ_CHECK((netaddr_parse(text, &net) == NETADDR_OK) == model_ok,
	    "parse accepts what the model does");
	if (model_ok) {
		mask = prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
		FUZZ_CHECK(net.prefix == prefix && net.mask == mask, "prefix");
		FUZZ_CHECK(net.network == (want & mask), "host bits cleared");
		last = net.network | ~mask;
		FUZZ_CHECK(netaddr_contains(&net, net.network), "first address");
		FUZZ_CHECK(netaddr_contains(&net, last), "last address");
		FUZZ_CHECK(netaddr_contains(&net, want), "the address given");
		if (net.network != 0)
			FUZZ_CHECK(!netaddr_contains(&net, net.network - 1),
			    "the address before");
		if (last != UINT32_MAX)
			FUZZ_CHECK(!netaddr_contains(&net, last + 1),
			    "the address after");
	}
	free(text);
	return 0;
}
