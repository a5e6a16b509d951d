#!/usr/bin/env python3
"""Writes are rate-limited per client address at nginx (limit_req keyed by
$binary_remote_addr for POST, PUT and DELETE only); over the limit: 429 with
a JSON body. Reads are never limited, and another address keeps its own
allowance. The stack is started with a low limit (WRITE_RATE, WRITE_BURST:
the template variables of nginx/nginx.conf.template).

    python3 ctest/hostile/test_rate_limit.py     # starts its own stack

docs/security.md ("Write rate limit") describes the configuration.
"""

import json

import hostile
from hostile import main, raw_exchange

TOKEN = "hostile-rate-token"
RATE, BURST = "2r/s", 5
class RateLimit(hostile.HostileTestCase):
    stack_options = {"workers": 2, "token": TOKEN,
                     "env": {"WRITE_RATE": RATE, "WRITE_BURST": str(BURST)}}

    def write(self, n, source=None, token=TOKEN, method=b"POST",
              path=b"/items"):
        body = json.dumps({"name": "rate %s" % n}).encode()
        return raw_exchange(
            self.port,
            method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) +
            body, timeout=10, source=source)

    def read(self, path=b"/items?limit=1", source=None):
        return raw_exchange(
            self.port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n", timeout=10, source=source)

    def burst(self, count, **kw):
        return [self.write(i, **kw).status for i in range(count)]

    def test_writes_over_the_limit_get_429_json(self):
        # Each test writes from its own loopback address: the allowance of
        # one test's address is not used up by another test.
        src = "127.0.0.6"
        statuses = self.burst(3 * BURST, source=src)
        print("\nburst of %d writes from one address (rate %s, burst %d): %s"
              % (3 * BURST, RATE, BURST, statuses))
        self.assertIn(429, statuses, statuses)
        # The burst is served in full before any refusal.
        self.assertEqual(statuses[:BURST], [201] * BURST, statuses)
        r = self.write("over", source=src)
        self.assertEqual(r.status, 429, r)
        self.assertJSONError(r, 429)
        self.assertIn("x-request-id", r.headers, r)

    def test_reads_are_never_limited(self):
        src = "127.0.0.7"
        self.burst(3 * BURST, source=src)  # now over its write limit
        statuses = [self.read(source=src).status for _ in range(50)]
        self.assertEqual(set(statuses), {200}, statuses)
        self.assertEqual(self.write("still over", source=src).status, 429)

    def test_the_limit_is_per_client_address(self):
        self.burst(3 * BURST, source="127.0.0.8")
        self.assertEqual(self.write("limited", source="127.0.0.8").status, 429)
        # Another loopback address is another client, with its own allowance.
        r = self.write("other client", source="127.0.0.9")
        self.assertEqual(r.status, 201, r)

    def test_token_guessing_is_slowed_down_too(self):
        """Writes with a wrong token count against the limit: guessing the
        token is held to WRITE_RATE per address."""
        statuses = self.burst(3 * BURST, token="wrong-guess",
                              source="127.0.0.3")
        self.assertIn(401, statuses, statuses)
        self.assertIn(429, statuses, statuses)

    def test_put_and_delete_are_limited(self):
        for method, path in ((b"PUT", b"/items/1"), (b"DELETE", b"/items/99999")):
            with self.subTest(method=method):
                source = "127.0.0.4" if method == b"PUT" else "127.0.0.5"
                statuses = [self.write(i, source=source, method=method,
                                       path=path).status
                            for i in range(3 * BURST)]
                self.assertIn(429, statuses, statuses)


if __name__ == "__main__":
    main()
