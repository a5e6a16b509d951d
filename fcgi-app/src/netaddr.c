/*
 * IPv4 CIDR parsing and matching, and this host's address inside a network.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* "a.b.c.d" is at most 15 characters; "/32" three more. */
#define CIDR_TEXT_MAX	18

static uint32_t
prefix_mask(unsigned prefix)
{
	/* A shift by 32 is undefined: /0 is its own case. */
	return prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
}

enum netaddr_status
netaddr_parse_ipv4(const char *text, size_t len, uint32_t *addr)
{
	char copy[INET_ADDRSTRLEN];
	struct in_addr in;

	/* A NUL inside the slice would end the copy early: "1.2.3.4\0junk". */
	if (len == 0 || len >= sizeof(copy) || memchr(text, '\0', len) != NULL)
		return NETADDR_MALFORMED;
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (inet_pton(AF_INET, copy, &in) != 1)
		return NETADDR_MALFORMED;
	*addr = ntohl(in.s_addr);
	return NETADDR_OK;
}

enum netaddr_status
netaddr_parse(const char *text, struct netaddr_net *net)
{
	const char *slash, *digits;
	unsigned prefix = 0;
	uint32_t address;

	if (strlen(text) > CIDR_TEXT_MAX)
		return NETADDR_MALFORMED;
	slash = strchr(text, '/');
	if (slash == NULL ||
	    netaddr_parse_ipv4(text, (size_t)(slash - text), &address) != NETADDR_OK)
		return NETADDR_MALFORMED;
	/* One or two decimal digits, no sign, no space, no leading zero. */
	digits = slash + 1;
	if (digits[0] < '0' || digits[0] > '9')
		return NETADDR_MALFORMED;
	if (digits[0] == '0' && digits[1] != '\0')
		return NETADDR_MALFORMED;
	for (; *digits != '\0'; digits++) {
		if (*digits < '0' || *digits > '9' || prefix > 3)
			return NETADDR_MALFORMED;
		prefix = prefix * 10 + (unsigned)(*digits - '0');
	}
	if (prefix > 32)
		return NETADDR_MALFORMED;
	net->prefix = prefix;
	net->mask = prefix_mask(prefix);
	net->network = address & net->mask;
	return NETADDR_OK;
}

bool
netaddr_contains(const struct netaddr_net *net, uint32_t addr)
{
	return (addr & net->mask) == net->network;
}

enum netaddr_status
netaddr_local(const struct netaddr_net *net, char out[INET_ADDRSTRLEN])
{
	struct ifaddrs *list, *ifa;
	const struct sockaddr_in *sin;
	enum netaddr_status status = NETADDR_NOT_FOUND;
	uint32_t found = 0;

	if (getifaddrs(&list) == -1)
		return NETADDR_SYSTEM;
	for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != AF_INET)
			continue;
		sin = (const struct sockaddr_in *)(const void *)ifa->ifa_addr;
		if (!netaddr_contains(net, ntohl(sin->sin_addr.s_addr)))
			continue;
		/* One address listed on two interfaces is still one address. */
		if (status == NETADDR_OK && found != sin->sin_addr.s_addr) {
			status = NETADDR_AMBIGUOUS;
			break;
		}
		found = sin->sin_addr.s_addr;
		status = NETADDR_OK;
	}
	freeifaddrs(list);
	if (status == NETADDR_OK &&
	    inet_ntop(AF_INET, &found, out, INET_ADDRSTRLEN) == NULL)
		status = NETADDR_SYSTEM;
	return status;
}
