#!/usr/bin/env python3
"""A stack started with NO_TOKEN=1: every write answers 403
{"error":"writes are disabled"}, whatever the Authorization header; reads
keep working."""

import json

import stack as harness
from stack import main

DISABLED = {"error": "writes are disabled"}


class WritesDisabledTest(harness.StackTestCase):
    stack_options = {"workers": 2, "no_token": True}

    def test_status_ok(self):
        r = self.stack.request("GET", "/status")
        self.assertEqual(self.assertJSON(r, 200)["status"], "OK")

    def test_writes_forbidden(self):
        before = self.stack.all_items()
        self.assertEqual(len(before), 5, "the seed items")
        one = before[0]["id"]
        body = json.dumps({"name": "nope"})
        for auth in (None, "Bearer ", "Bearer anything", "Bearer null"):
            headers = {"Content-Type": "application/json"}
            if auth is not None:
                headers["Authorization"] = auth
            for method, path, data in (("POST", "/items", body),
                                       ("PUT", "/items/%d" % one, body),
                                       ("DELETE", "/items/%d" % one, None)):
                with self.subTest(method=method, authorization=auth):
                    r = self.stack.request(method, path, data, headers)
                    self.assertEqual(self.assertJSON(r, 403), DISABLED)
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    def test_reads_still_work(self):
        items = self.assertJSON(self.stack.request("GET", "/items"), 200)
        self.assertEqual(len(items), 5)
        r = self.stack.request("GET", "/items/%d" % items[0]["id"])
        self.assertEqual(self.assertJSON(r, 200), items[0])


if __name__ == "__main__":
    main()
