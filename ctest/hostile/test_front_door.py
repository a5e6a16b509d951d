#!/usr/bin/env python3
"""Hostile HTTP at the front door, through nginx: oversized headers, URIs and
bodies; path tricks; methods nginx must never forward; malformed and
ambiguous requests (request smuggling). docs/security.md lists what each
case does and why.

    python3 ctest/hostile/test_front_door.py     # starts its own stack
"""

import json

import hostile
from hostile import main, raw_exchange

TOKEN = "hostile-front-door-token"
STATUS_BODY = {"status": "OK", "database_connection": "OK",
               "message": "<<< OK >>>"}


def get(path, extra=b""):
    return (b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n" + extra + b"Connection: close\r\n\r\n")


class FrontDoor(hostile.HostileTestCase):
    stack_options = {"workers": 2, "token": TOKEN}

    def send(self, data, timeout=10.0):
        return raw_exchange(self.port, data, timeout)

    def post(self, path, body, headers=b"", method=b"POST"):
        return self.send(
            method + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\n" + headers +
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) +
            body)

    # -- sizes ---------------------------------------------------------------

    def test_header_over_8k_is_400_json(self):
        r = self.send(get("/items", b"X-Big: " + b"a" * 9000 + b"\r\n"))
        self.assertJSONError(r, 400)

    def test_headers_over_4x8k_total_is_400_json(self):
        extra = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 7000) for i in range(6))
        r = self.send(get("/items", extra))
        self.assertJSONError(r, 400)

    def test_headers_just_under_limits_pass(self):
        # large_client_header_buffers 4 8k: three 7 kB headers fit.
        extra = b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 7000) for i in range(3))
        r = self.send(get("/status", extra))
        self.assertEqual(r.status, 200, r)

    def test_uri_over_8k_is_414_json(self):
        r = self.send(get("/items?x=" + "y" * 9000))
        self.assertJSONError(r, 414)

    def test_body_over_128k_is_413_json(self):
        body = b'{"name":"' + b"n" * (128 * 1024) + b'"}'
        r = self.post("/items", body)
        self.assertJSONError(r, 413)

    def test_body_of_exactly_128k_is_not_413(self):
        # At the limit nginx passes it on; the worker judges the content
        # (a description over 65535 bytes: 400).
        prefix, suffix = b'{"name":"x","description":"', b'"}'
        body = prefix + b"d" * (128 * 1024 - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(body), 128 * 1024)
        r = self.post("/items", body)
        self.assertJSONError(r, 400)

    def test_chunked_body_over_128k_is_413_json(self):
        chunk = b"z" * 8192
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                        for _ in range(17)) + b"0\r\n\r\n"
        r = self.send(
            b"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + body)
        self.assertJSONError(r, 413)

    def test_big_body_refused_before_the_token_is_checked(self):
        # nginx refuses by the announced length alone: no worker involved.
        r = self.send(b"PUT /items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 10000000\r\nConnection: close\r\n\r\n")
        self.assertJSONError(r, 413)

    # -- methods -------------------------------------------------------------

    def test_trace_and_connect_refused_and_not_forwarded(self):
        before = len(self.pool_log_requests())
        cases = [
            b"TRACE /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + TOKEN.encode() +
            b"\r\nCookie: secret=1\r\nConnection: close\r\n\r\n",
            b"TRACE /status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            b"CONNECT /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n",
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n"
            b"Connection: close\r\n\r\n",
        ]
        for data in cases:
            with self.subTest(request=data.split(b"\r\n")[0]):
                r = self.send(data)
                self.assertIn(r.status, (400, 405), r)
                self.assertJSONError(r)
                # No cross-site tracing: nothing of the request echoed.
                self.assertNotIn(TOKEN.encode(), r.raw)
                self.assertNotIn(b"secret=1", r.raw)
        methods = {m for m, _ in self.pool_log_requests()[before:]}
        self.assertFalse(methods & {"TRACE", "CONNECT"},
                         "nginx forwarded %r" % methods)

    def test_other_methods_get_405_json_with_allow(self):
        for method, path in (("OPTIONS", "/items"), ("PATCH", "/items/1"),
                             ("PROPFIND", "/"), ("DELETE", "/")):
            with self.subTest(method=method, path=path):
                r = self.send(method.encode() + b" " + path.encode() +
                              b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                self.assertJSONError(r, 405)
                self.assertIn("allow", r.headers, r)
                self.assertNotIn(method, r.headers["allow"], r)

    def test_unknown_methods_on_the_api_are_501_json_not_forwarded(self):
        # A method the API has no meaning for never reaches a worker (nor
        # its log): nginx answers 501 itself, with the security headers.
        # The long one made the worker's log line overflow its buffer once.
        before = len(self.pool_log_requests())
        sent = ("PROPFIND", "MKCOL", "FOO", "X" * 3972)
        for method, path in zip(sent, ("/items", "/items/1", "/status",
                                       "/items")):
            with self.subTest(method=method[:20], path=path):
                r = self.send(method.encode() + b" " + path.encode() +
                              b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Authorization: Bearer " + TOKEN.encode() +
                              b"\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n")
                self.assertJSONError(r, 501)
                self.assertEqual(r.headers.get("x-content-type-options"),
                                 "nosniff", r)
                self.assertIn("x-request-id", r.headers, r)
        methods = {m for m, _ in self.pool_log_requests()[before:]}
        self.assertFalse(methods & set(sent), "nginx forwarded %r" % methods)

    # -- path tricks (documented in docs/security.md) ------------------------

    def check_path(self, path, expect):
        r = self.send(get(path))
        with self.subTest(path=path, expect=expect):
            if expect == "status":
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), STATUS_BODY)
            elif expect == "list":
                self.assertEqual(r.status, 200, r)
                self.assertIsInstance(r.json(), list)
            elif expect == "item1":
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["id"], 1)
            elif expect == "404json":
                self.assertJSONError(r, 404)
            elif expect == "404":
                self.assertEqual(r.status, 404, r)
            elif expect == "400json":
                self.assertJSONError(r, 400)
            else:
                raise AssertionError(expect)
        return r

    def test_dot_segments_are_resolved_inside_the_url_space(self):
        for path in ("/items/../status", "/items/%2e%2e/status",
                     "/items/%2E%2E/status", "/items/./../status",
                     "/items/..%2fstatus", "/./status"):
            self.check_path(path, "status")

    def test_dot_segments_above_the_root_are_400_json(self):
        for path in ("/../etc/passwd", "/items/../../etc/passwd",
                     "/%2e%2e/etc/passwd", "/items/..%2f..%2f..%2fetc%2fpasswd"):
            r = self.check_path(path, "400json")
            self.assertNotIn(b"root:", r.raw)

    def test_repeated_slashes_are_merged(self):
        self.check_path("//items", "list")
        self.check_path("///items//1", "item1")

    def test_encoded_nul_is_400_json(self):
        for path in ("/items%00", "/items/1%00", "/status%00", "/%00",
                     "/index.html%00.json"):
            self.check_path(path, "400json")

    def test_encoded_characters_are_decoded_before_routing(self):
        self.check_path("/items/%31", "item1")
        self.check_path("/%69tems", "list")
        self.check_path("/items%2f1", "item1")
        self.check_path("/items/001", "item1")

    def test_near_misses_are_404(self):
        for path in ("/items/", "/items/1/", "/status/", "/items/1%2f",
                     "/items/1;x", "/items/1%20", "/items/+1", "/items/0x1",
                     "/items\\..\\status", "/items/2147483648",
                     "/items/..%252fstatus"):
            self.check_path(path, "404json")
        # Paths are case-sensitive: not an API path, so nginx's static 404.
        self.check_path("/ITEMS", "404")
        # The metrics are on the internal listener only.
        self.check_path("/metrics", "404")

    def test_query_tricks(self):
        r = self.send(get("/items?limit=%00"))
        self.assertJSONError(r, 400)
        # "limit%00x" is another parameter, ignored; so is a raw NUL escape
        # in an unknown parameter.
        r = self.send(get("/items?limit%00x=5&other=%00"))
        self.assertEqual(r.status, 200, r)
        self.assertGreater(len(r.json()), 0)

    # -- malformed and ambiguous requests ------------------------------------

    def test_malformed_requests_are_400_json(self):
        cases = {
            "garbage": b"GARBAGE\r\n\r\n",
            "control character in the path":
                b"GET /items\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            "no Host in HTTP/1.1": b"GET /items HTTP/1.1\r\n\r\n",
            "two Host headers":
                b"GET /items HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "header without a colon":
                b"GET /items HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            "bad HTTP version": b"GET /items HTTP/9.Z\r\nHost: x\r\n\r\n",
            "CONNECT to an authority":
                b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                # 505 for a version nginx cannot parse, else 400.
                self.assertJSONError(self.send(data), statuses=(400, 405, 505))

    def test_request_smuggling_shapes_are_refused(self):
        body = b'{"name":"smuggled"}'
        cases = {
            "Content-Length and Transfer-Encoding":
                b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "two Content-Length":
                b"Content-Length: %d\r\nContent-Length: 4\r\n" % len(body),
            "negative Content-Length": b"Content-Length: -1\r\n",
            "unknown Transfer-Encoding":
                b"Transfer-Encoding: gzip, chunked\r\n",
        }
        for name, headers in cases.items():
            with self.subTest(case=name):
                r = self.send(
                    b"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                    b"Content-Type: application/json\r\n" + headers +
                    b"Connection: close\r\n\r\n" + body)
                # 501 for a transfer coding nginx does not implement.
                self.assertJSONError(r, statuses=(400, 501))
        # Nothing was created by any of them.
        names = [json.loads(self.send(get("/items?limit=1000")).body)]
        self.assertNotIn("smuggled", [i["name"] for i in names[0]])

    def test_errors_carry_the_security_headers(self):
        for data in (get("/items%00"), get("/items/abc"),
                     get("/items", b"X-Big: " + b"a" * 9000 + b"\r\n")):
            with self.subTest(request=data[:30]):
                r = self.send(data)
                self.assertEqual(r.headers.get("x-content-type-options"),
                                 "nosniff", r)
                self.assertIn("x-request-id", r.headers, r)


if __name__ == "__main__":
    main()
