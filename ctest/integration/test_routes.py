#!/usr/bin/env python3
"""Every route and status code of the read side of the contract, through
nginx: /, /status, /items (pagination, Link, parameter validation),
/items/{id} (404 rules), HEAD, 405 + Allow, unknown paths, Content-Type,
X-Request-ID (and its appearance in the worker's JSON log line)."""

import json
import re
import time

import stack as harness
from stack import main, wait_until

LINK_RE = re.compile(r'^</items\?after=(\d+)&limit=(\d+)>; rel="next"$')


class RoutesTest(harness.StackTestCase):
    stack_options = {"workers": 2, "token": "routes-token-0123456789"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # 5 seed items + 100 created = 105 items, more than the default page
        # of 100; the tests below only read.
        for i in range(100):
            cls.stack.create("routes item %d" % i, "description %d" % i)
        cls.items = cls.stack.all_items()

    def get(self, path, **kw):
        return self.stack.request("GET", path, **kw)

    # -- / and /status -----------------------------------------------------

    def test_front_page(self):
        r = self.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith(
            "text/html"), r)
        self.assertIn(b"<html", r.body.lower())

    def test_status_ok(self):
        r = self.get("/status")
        self.assertEqual(self.assertJSON(r, 200), {
            "status": "OK", "database_connection": "OK",
            "message": "<<< OK >>>"})

    # -- /items --------------------------------------------------------------

    def test_items_default_page(self):
        self.assertGreater(len(self.items), 100)
        r = self.get("/items")
        items = self.assertJSON(r, 200)
        self.assertIsInstance(items, list)
        for item in items:
            self.assertItem(item)
        ids = [i["id"] for i in items]
        self.assertEqual(ids, sorted(set(ids)), "ascending, distinct ids")
        self.assertEqual(items, self.items[:100], "default limit is 100")
        self.assertEqual(r.headers.get("link"),
                         '</items?after=%d&limit=100>; rel="next"' % ids[-1])
        self.assertEqual(self.get("/items?after=0").json(), items)

    def test_items_after(self):
        pivot = self.items[3]["id"]
        page = self.assertJSON(
            self.get("/items?after=%d&limit=1000" % pivot), 200)
        self.assertEqual(page, [i for i in self.items if i["id"] > pivot])

    def test_items_past_the_end(self):
        last = self.items[-1]["id"]
        for after in (last, 2147483647, 2147483648):
            r = self.get("/items?after=%d" % after)
            self.assertEqual(self.assertJSON(r, 200), [], after)
            self.assertNotIn("link", r.headers, r)

    def test_link_header_only_when_more_follow(self):
        n = len(self.items)
        # A page that is full but is the last page: no Link.
        r = self.get("/items?limit=%d" % n)
        self.assertEqual(len(self.assertJSON(r, 200)), n)
        self.assertNotIn("link", r.headers, "exactly full last page: %r" % r)
        # The same from the middle: exactly the remaining items.
        after = self.items[n - 5 - 1]["id"]
        r = self.get("/items?after=%d&limit=5" % after)
        self.assertEqual(self.assertJSON(r, 200), self.items[-5:])
        self.assertNotIn("link", r.headers, r)
        # One short: Link to the rest.
        r = self.get("/items?limit=%d" % (n - 1))
        page = self.assertJSON(r, 200)
        self.assertEqual(len(page), n - 1)
        self.assertEqual(r.headers.get("link"),
                         '</items?after=%d&limit=%d>; rel="next"'
                         % (page[-1]["id"], n - 1))

    def test_walk_all_pages(self):
        for limit in (1, 7, 50, 100, 1000):
            seen, path, pages = [], "/items?limit=%d" % limit, 0
            while path:
                pages += 1
                self.assertLessEqual(pages, len(self.items), "Link loop")
                r = self.get(path)
                page = self.assertJSON(r, 200)
                self.assertLessEqual(len(page), limit)
                self.assertTrue(page, "an empty page behind a Link: %s" % path)
                seen.extend(page)
                link = r.headers.get("link")
                if link is None:
                    path = None
                    continue
                m = LINK_RE.match(link)
                self.assertTrue(m, "Link header %r" % link)
                self.assertEqual(int(m.group(1)), page[-1]["id"])
                self.assertEqual(int(m.group(2)), limit)
                self.assertEqual(len(page), limit, "short page with a Link")
                path = link[1:link.index(">")]
            self.assertEqual(seen, self.items, "limit=%d" % limit)
            self.assertEqual(pages, -(-len(self.items) // limit))

    def test_limit_bounds_accepted(self):
        self.assertEqual(len(self.assertJSON(self.get("/items?limit=1"),
                                             200)), 1)
        self.assertEqual(self.assertJSON(self.get("/items?limit=1000"), 200),
                         self.items)
        self.assertEqual(self.assertJSON(
            self.get("/items?after=0&limit=2"), 200), self.items[:2])
        self.assertEqual(self.assertJSON(
            self.get("/items?limit=2&after=0"), 200), self.items[:2])

    def test_bad_query_400(self):
        cases = [
            "limit=0", "limit=1001", "limit=-1", "limit=+1", "limit=",
            "limit", "limit=abc", "limit=1.5", "limit=0x10", "limit=1e2",
            "limit=%201", "limit=1%20", "limit=99999999999999999999",
            "limit=10&limit=10", "limit=10&limit=20",
            "after=-1", "after=+0", "after=", "after", "after=a",
            "after=1.0", "after=0x1", "after=1&after=1", "after=1&after=2",
            "limit=5&after=1&limit=5",
        ]
        for query in cases:
            with self.subTest(query=query):
                self.assertError(self.get("/items?" + query), 400)

    # -- /items/{id} ---------------------------------------------------------

    def test_item_by_id(self):
        for item in (self.items[0], self.items[-1]):
            r = self.get("/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(r, 200), item)

    def test_item_404(self):
        missing = ["2147483647", str(self.items[-1]["id"] + 1), "0",
                   "2147483648", "4294967297", "99999999999999999999", "-1",
                   "1a", "a1", "+1", "1.0", "1%20", "%201", "abc", "1e3",
                   "0x1", ""]
        for ident in missing:
            with self.subTest(id=ident):
                self.assertError(self.get("/items/" + ident), 404)

    def test_unknown_api_paths_404_json(self):
        for path in ("/items/1/extra", "/items/1/", "/items/", "/status/x",
                     "/itemsx", "/statusx"):
            with self.subTest(path=path):
                self.assertError(self.get(path), 404)

    def test_unknown_path_404(self):
        r = self.get("/no-such-page-here")
        self.assertEqual(r.status, 404, r)

    def test_metrics_not_on_public_port(self):
        for path in ("/metrics", "/metrics/"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path).status, 404)

    # -- HEAD ----------------------------------------------------------------

    def test_head_is_get_without_body(self):
        paths = ["/", "/status", "/items", "/items?limit=2",
                 "/items/%d" % self.items[0]["id"], "/items/2147483647",
                 "/items?limit=0"]
        for path in paths:
            with self.subTest(path=path):
                g = self.stack.request("GET", path)
                h = self.stack.request("HEAD", path)
                self.assertEqual(h.status, g.status)
                self.assertEqual(h.body, b"")
                self.assertTrue(g.body)
                for name in ("content-type", "link", "allow"):
                    self.assertEqual(h.headers.get(name),
                                     g.headers.get(name), name)
                if "content-length" in h.headers:
                    self.assertEqual(int(h.headers["content-length"]),
                                     len(g.body))

    # -- 405 -------------------------------------------------------------

    def test_method_not_allowed(self):
        auth = self.stack.auth()
        one = "/items/%d" % self.items[0]["id"]
        cases = [
            ("POST", "/status", {"GET", "HEAD"}),
            ("PUT", "/status", {"GET", "HEAD"}),
            ("DELETE", "/status", {"GET", "HEAD"}),
            ("PUT", "/items", {"GET", "HEAD", "POST"}),
            ("DELETE", "/items", {"GET", "HEAD", "POST"}),
            ("PATCH", "/items", {"GET", "HEAD", "POST"}),
            ("OPTIONS", "/items", {"GET", "HEAD", "POST"}),
            ("POST", one, {"GET", "HEAD", "PUT", "DELETE"}),
            ("PATCH", one, {"GET", "HEAD", "PUT", "DELETE"}),
            ("POST", "/", {"GET", "HEAD"}),
            ("DELETE", "/", {"GET", "HEAD"}),
        ]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = self.stack.request(method, path,
                                       body='{"name":"x"}', headers=auth)
                self.assertError(r, 405)
                allow = {m.strip().upper()
                         for m in r.headers.get("allow", "").split(",")
                         if m.strip()}
                self.assertEqual(allow, allowed, r)
        # Nothing was written by the 405s.
        self.assertEqual(self.stack.all_items(), self.items)

    # -- X-Request-ID --------------------------------------------------------

    def test_request_id_on_every_response(self):
        one = "/items/%d" % self.items[0]["id"]
        ids = set()
        for method, path in [("GET", "/"), ("GET", "/status"),
                             ("GET", "/items"), ("GET", one),
                             ("HEAD", one), ("GET", "/items/0"),
                             ("GET", "/items?limit=0"),
                             ("GET", "/items/1/extra"),
                             ("GET", "/no-such-page-here"),
                             ("PATCH", "/items")]:
            with self.subTest(method=method, path=path):
                r = self.stack.request(method, path)
                rid = r.headers.get("x-request-id", "")
                self.assertRegex(rid, r"^[\x21-\x7e]{8,}$", r)
                ids.add(rid)
        self.assertEqual(len(ids), 10, "request ids must be distinct")

    def test_request_id_in_worker_log(self):
        path = "/items/%d" % self.items[1]["id"]
        r = self.get(path)
        self.assertEqual(r.status, 200)
        rid = r.headers.get("x-request-id")
        self.assertTrue(rid, r)

        def find():
            for line in self.stack.log_lines("pool.log"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("request_id") == rid:
                    return entry
            return None
        entry = wait_until(find, 3.0)
        self.assertIsNotNone(entry, "no pool.log line with request_id %s"
                             % rid)
        self.assertEqual(entry.get("method"), "GET", entry)
        self.assertEqual(entry.get("path", "").split("?")[0], path, entry)
        self.assertEqual(entry.get("status"), 200, entry)
        self.assertIsInstance(entry.get("duration_ms"), (int, float), entry)
        self.assertGreaterEqual(entry["duration_ms"], 0, entry)
        self.assertIsInstance(entry.get("time"), str, entry)
        # Exactly one log line for that request.
        count = sum(1 for line in self.stack.log_lines("pool.log")
                    if rid in line)
        self.assertEqual(count, 1)

    def test_responses_are_quick(self):
        begin = time.monotonic()
        for _ in range(20):
            self.assertEqual(self.get("/items?limit=3").status, 200)
        self.assertLess(time.monotonic() - begin, 5.0)


if __name__ == "__main__":
    main()
