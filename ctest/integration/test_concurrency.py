#!/usr/bin/env python3
"""Concurrent writes through nginx with a pool of 2 workers: none lost, none
mixed up, and racing DELETEs of one item succeed exactly once."""

import json

import stack as harness
from stack import main, run_concurrently

THREADS = 50


class ConcurrencyTest(harness.StackTestCase):
    stack_options = {"workers": 2, "token": "concurrency-token-42x"}

    def body(self, i, tag):
        return {"name": "%s %02d \u00e9\U0001F600" % (tag, i),
                "description": "%s description %d <'\";--> " % (tag, i) * 3}

    def test_50_concurrent_posts(self):
        before = self.stack.all_items()

        def post(i):
            return self.stack.request("POST", "/items",
                                      json.dumps(self.body(i, "post")),
                                      self.stack.auth(), timeout=30)
        results = run_concurrently(THREADS, post)
        statuses = [getattr(r, "status", r) for r in results]
        self.assertEqual(statuses, [201] * THREADS)
        created = [r.json() for r in results]
        ids = [c["id"] for c in created]
        self.assertEqual(len(set(ids)), THREADS, "distinct ids")
        for i, item in enumerate(created):
            self.assertItem(item, **self.body(i, "post"), check_text=True)
            self.assertEqual(results[i].headers.get("location"),
                             "/items/%d" % item["id"])
            got = self.stack.request("GET", "/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(got, 200), item)
        after = self.stack.all_items()
        self.assertEqual(len(after), len(before) + THREADS)
        self.assertEqual(sorted(after, key=lambda x: x["id"]), after)
        for item in created:
            self.assertIn(item, after)

    def test_50_concurrent_puts_and_reads(self):
        items = [self.stack.create("put %d" % i) for i in range(THREADS)]

        def put_or_get(i):
            if i % 5 == 4:
                return self.stack.request("GET", "/items?limit=1000",
                                          timeout=30)
            return self.stack.request(
                "PUT", "/items/%d" % items[i]["id"],
                json.dumps(self.body(i, "put")), self.stack.auth(),
                timeout=30)
        results = run_concurrently(THREADS, put_or_get)
        for i, r in enumerate(results):
            with self.subTest(i=i):
                self.assertEqual(getattr(r, "status", r), 200)
                if i % 5 == 4:
                    continue
                expected = dict(items[i], **self.body(i, "put"))
                self.assertEqual(r.json(), expected)
                got = self.stack.request("GET", "/items/%d" % items[i]["id"])
                self.assertEqual(got.json(), expected)

    def test_racing_deletes_of_one_item(self):
        item = self.stack.create("delete me once")

        def delete(_):
            return self.stack.request(
                "DELETE", "/items/%d" % item["id"], None,
                {"Authorization": "Bearer " + self.stack.token}, timeout=30)
        results = run_concurrently(10, delete)
        statuses = sorted(getattr(r, "status", r) for r in results)
        self.assertEqual(statuses, [204] + [404] * 9)
        self.assertEqual(self.stack.request(
            "GET", "/items/%d" % item["id"]).status, 404)

    def db_status(self):
        out = self.stack.sql("SHOW GLOBAL STATUS WHERE Variable_name IN "
                             "('Connections', 'Com_stmt_prepare')")
        return {k: int(v) for k, v in (l.split("\t") for l in
                                          out.splitlines())}

    def mixed_requests(self, rounds):
        """Every kind of DB statement, `rounds` times, sequentially."""
        for i in range(rounds):
            item = self.stack.create("persistent %d" % i)
            path = "/items/%d" % item["id"]
            for method, p, body in (("GET", "/items", None),
                                    ("GET", path, None),
                                    ("GET", "/status", None),
                                    ("PUT", path, '{"name":"p"}'),
                                    ("DELETE", path, None)):
                r = self.stack.request(method, p, body, self.stack.auth())
                self.assertLess(r.status, 300, r)

    def test_persistent_connections_and_statements(self):
        """One DB connection per worker, reused; statements prepared once
        per connection (not per request)."""
        self.mixed_requests(4 * self.stack.workers)  # warm every worker up
        before = self.db_status()
        self.mixed_requests(10)
        after = self.db_status()
        # The only new connection is the one reading the status itself.
        self.assertEqual(after["Connections"] - before["Connections"], 1,
                         "the workers opened new DB connections")
        self.assertEqual(after["Com_stmt_prepare"], before["Com_stmt_prepare"],
                         "statements prepared again on a live connection")
        users = self.stack.sql("SELECT COUNT(*) FROM information_schema."
                               "PROCESSLIST WHERE USER = 'items'")
        self.assertEqual(int(users), self.stack.workers)


if __name__ == "__main__":
    main()
