/*
 * netaddr.c: IPv4 CIDR parsing (every malformed shape refused, host bits
 * cleared), membership at the network's edges, and the local address
 * lookup on this machine's loopback.
 *
 * Every text is parsed from the very end of a malloc'd block of exactly its
 * length plus the NUL, so that ASan reports any read past it.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "netaddr.h"

static enum netaddr_status
parse(const char *text, struct netaddr_net *net)
{
	size_t size = strlen(text) + 1;
	enum netaddr_status st;
	char *copy = malloc(size);

	if (copy == NULL) {
		CHECK_FAIL("out of memory");
		return NETADDR_SYSTEM;
	}
	memcpy(copy, text, size);
	st = netaddr_parse(copy, net);
	free(copy);
	return st;
}

static uint32_t
ip(const char *text)
{
	struct in_addr in;

	if (inet_pton(AF_INET, text, &in) != 1) {
		CHECK_FAIL("bad test address");
		return 0;
	}
	return ntohl(in.s_addr);
}

static void
test_parse_good(void)
{
	static const struct {
		const char *text, *network;
		unsigned prefix;
	} cases[] = {
		{ "172.31.253.0/24", "172.31.253.0", 24 },
		{ "172.31.253.77/24", "172.31.253.0", 24 },	/* host bits cleared */
		{ "10.0.0.0/8", "10.0.0.0", 8 },
		{ "0.0.0.0/0", "0.0.0.0", 0 },
		{ "255.255.255.255/0", "0.0.0.0", 0 },
		{ "192.0.2.1/32", "192.0.2.1", 32 },
		{ "192.0.2.129/25", "192.0.2.128", 25 },
		{ "192.0.2.3/31", "192.0.2.2", 31 },
		{ "127.0.0.1/1", "0.0.0.0", 1 },
		{ "200.0.0.1/1", "128.0.0.0", 1 },
	};
	struct netaddr_net net;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i].text);
		memset(&net, 0xa5, sizeof(net));
		CHECK_INT_EQ(parse(cases[i].text, &net), NETADDR_OK);
		CHECK_INT_EQ(net.network, ip(cases[i].network));
		CHECK_INT_EQ(net.prefix, cases[i].prefix);
	}
	CHECK_CASE(NULL);
}

static void
test_parse_bad(void)
{
	static const char *const cases[] = {
		"", "/", "/24", "172.31.253.0", "172.31.253.0/", "172.31.253.0/33",
		"172.31.253.0/99", "172.31.253.0/100", "172.31.253.0/024",
		"172.31.253.0/00", "172.31.253.0/-1", "172.31.253.0/+8",
		"172.31.253.0/ 8", "172.31.253.0/8 ", " 172.31.253.0/8",
		"172.31.253.0/8/8", "172.31.253/24", "172.31.253.0.1/24",
		"256.0.0.0/8", "1.2.3.04/8x", "::1/128", "fe80::/10",
		"172.31.253.0/24;", "a.b.c.d/24", "172.31.253.0/2a",
		"172.31.253.0/4294967320", "1111111111111111111111111/8",
		"172.31.253.0\n/24",
	};
	struct netaddr_net net;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_CASE(cases[i]);
		CHECK_INT_EQ(parse(cases[i], &net), NETADDR_MALFORMED);
	}
	CHECK_CASE(NULL);
}

/* Lengths across the 18-character limit: nothing longer is ever read. */
static void
test_parse_lengths(void)
{
	char text[64];
	struct netaddr_net net;
	size_t len;

	for (len = 0; len < sizeof(text) - 4; len++) {
		memset(text, '1', len);
		memcpy(text + len, "/8", 3);
		CHECK_INT_EQ(parse(text, &net), NETADDR_MALFORMED);
	}
	/* The longest valid text is 18 characters. */
	CHECK_INT_EQ(parse("255.255.255.255/32", &net), NETADDR_OK);
	CHECK_INT_EQ(parse("255.255.255.255/320", &net), NETADDR_MALFORMED);
}

/* An address given as a slice, at the very end of its heap block (no NUL). */
static enum netaddr_status
parse_ipv4(const char *text, size_t len, uint32_t *addr)
{
	enum netaddr_status st;
	char *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL) {
		CHECK_FAIL("out of memory");
		return NETADDR_SYSTEM;
	}
	memcpy(copy, text, len);
	st = netaddr_parse_ipv4(copy, len, addr);
	free(copy);
	return st;
}

static void
test_parse_ipv4(void)
{
	static const char *const bad[] = {
		"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", " 1.2.3.4",
		"1.2.3.4/8", "::1", "a.b.c.d", "1..2.3",
	};
	char text[64];
	uint32_t addr = 0;
	size_t i, len;

	CHECK_INT_EQ(parse_ipv4("172.31.253.20", 13, &addr), NETADDR_OK);
	CHECK_INT_EQ(addr, ip("172.31.253.20"));
	/* A slice of a longer list: only its bytes count. */
	CHECK_INT_EQ(parse_ipv4("10.0.0.1,10.0.0.2", 8, &addr), NETADDR_OK);
	CHECK_INT_EQ(addr, ip("10.0.0.1"));
	CHECK_INT_EQ(parse_ipv4("255.255.255.255", 15, &addr), NETADDR_OK);
	/* A NUL inside the slice: not the shorter address before it. */
	CHECK_INT_EQ(parse_ipv4("1.2.3.4\0junk", 12, &addr), NETADDR_MALFORMED);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_CASE(bad[i]);
		CHECK_INT_EQ(parse_ipv4(bad[i], strlen(bad[i]), &addr),
		    NETADDR_MALFORMED);
	}
	CHECK_CASE(NULL);
	/* Lengths across the 16-byte copy: never more is copied. */
	for (len = 0; len < sizeof(text); len++) {
		memset(text, '1', len);
		CHECK_INT_EQ(parse_ipv4(text, len, &addr), NETADDR_MALFORMED);
	}
}

static void
test_contains(void)
{
	struct netaddr_net net;

	CHECK_INT_EQ(parse("172.31.253.0/24", &net), NETADDR_OK);
	CHECK(netaddr_contains(&net, ip("172.31.253.0")));
	CHECK(netaddr_contains(&net, ip("172.31.253.10")));
	CHECK(netaddr_contains(&net, ip("172.31.253.255")));
	CHECK(!netaddr_contains(&net, ip("172.31.252.255")));
	CHECK(!netaddr_contains(&net, ip("172.31.254.0")));
	CHECK(!netaddr_contains(&net, ip("10.31.253.10")));

	CHECK_INT_EQ(parse("0.0.0.0/0", &net), NETADDR_OK);
	CHECK(netaddr_contains(&net, ip("0.0.0.0")));
	CHECK(netaddr_contains(&net, ip("255.255.255.255")));

	CHECK_INT_EQ(parse("192.0.2.7/32", &net), NETADDR_OK);
	CHECK(netaddr_contains(&net, ip("192.0.2.7")));
	CHECK(!netaddr_contains(&net, ip("192.0.2.6")));
	CHECK(!netaddr_contains(&net, ip("192.0.2.8")));
}

static void
test_local(void)
{
	struct netaddr_net net;
	char out[INET_ADDRSTRLEN];

	/* Every Linux host has 127.0.0.1 on lo. */
	CHECK_INT_EQ(parse("127.0.0.0/8", &net), NETADDR_OK);
	CHECK_INT_EQ(netaddr_local(&net, out), NETADDR_OK);
	CHECK_STR_EQ(out, "127.0.0.1");
	/* 0.0.0.0 is never an interface's address. */
	CHECK_INT_EQ(parse("0.0.0.0/32", &net), NETADDR_OK);
	CHECK_INT_EQ(netaddr_local(&net, out), NETADDR_NOT_FOUND);
}

int
main(void)
{
	test_parse_good();
	test_parse_bad();
	test_parse_lengths();
	test_parse_ipv4();
	test_contains();
	test_local();
	return check_finish();
}
