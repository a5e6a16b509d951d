/*
 * IPv4 networks in CIDR notation, and this host's address inside one.
 *
 * The api container is attached to two networks (edge: front and api;
 * data: api and db) at addresses Docker chooses. The pool must listen on
 * its edge address only, so items-pool asks for "my address inside
 * EDGE_SUBNET" (items-fcgi --address-in CIDR) instead of a fixed address
 * that would stop `docker compose up --scale api=3` from working.
 */
#ifndef ITEMS_NETADDR_H
#define ITEMS_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>	/* INET_ADDRSTRLEN */

struct netaddr_net {
	uint32_t	network;	/* host byte order, host bits zero */
	uint32_t	mask;		/* host byte order */
	unsigned	prefix;		/* 0..32 */
};

enum netaddr_status {
	NETADDR_OK = 0,
	NETADDR_MALFORMED,	/* not a.b.c.d/n */
	NETADDR_NOT_FOUND,	/* no local address inside the network */
	NETADDR_AMBIGUOUS,	/* more than one local address inside it */
	NETADDR_SYSTEM,		/* getifaddrs() failed: see errno */
};

/*
 * Parses the dotted quad text[0..len) (not NUL-terminated, never read past
 * text[len - 1]) into *addr, host byte order. Pure. NETADDR_OK or
 * NETADDR_MALFORMED (empty, too long, a NUL inside, or not what inet_pton(3)
 * takes).
 */
enum netaddr_status netaddr_parse_ipv4(const char *text, size_t len,
	    uint32_t *addr);

/*
 * Parses "a.b.c.d/n" (dotted quad as inet_pton(3) takes it, n from 0 to 32,
 * nothing before or after) into *net; host bits set in the address are
 * cleared ("172.31.253.7/24" is 172.31.253.0/24). Pure.
 */
enum netaddr_status netaddr_parse(const char *text, struct netaddr_net *net);

/* Whether addr (host byte order) lies inside net. Pure. */
bool	netaddr_contains(const struct netaddr_net *net, uint32_t addr);

/*
 * Writes into out this host's one IPv4 interface address inside net (from
 * getifaddrs(3)), as text. A network holding two of our addresses is
 * refused: listening on either would be a guess.
 */
enum netaddr_status netaddr_local(const struct netaddr_net *net,
	    char out[INET_ADDRSTRLEN]);

#endif
