#!/usr/bin/env python3
"""Numbers of any size in POST/PUT bodies, through nginx: one beyond int64
or one no double holds (1e999999, -1e400, a 400-digit integer; jansson
refuses those) is a number like any other. It answers 400 with the reason
of the place it stands in (name, description, an unknown member, nested in
one), a body that is also invalid JSON still answers its syntax error, and
nothing is written."""

import re

import stack as harness
from stack import main

TOKEN = "numbers-token-Hn4cVq9sWe2bLx7u"

HUGE = [b"1e999999", b"-1e400", b"1.5E+400", b"12345678901234567890123",
        b"-12345678901234567890123", b"9" * 400]

NAME = "name: must be a string"
DESCRIPTION = "description: must be a string or null"


def unknown(key):
    return 'unknown field "%s" (allowed: name, description)' % key


# (body, the exact reason).
CASES = [(b'{"name":%s}' % n, NAME) for n in HUGE] + [
    (b'{"name":"x","description":%s}' % n, DESCRIPTION) for n in HUGE] + [
    (b'{"name":"x","id":%s}' % n, unknown("id")) for n in HUGE] + [
    (b'{"name":[1e999999]}', NAME),
    (b'{"name":{"k":[-1e400]},"description":"d"}', NAME),
    (b'{"name":"x","description":[-1e400,1e400]}', DESCRIPTION),
    (b'{"id":1e999999,"name":"x"}', unknown("id")),
    (b'{"name":"x","extra":[1,[-1e400,{"k":1e999999}]]}', unknown("extra")),
    (b'{"extra":{"a":{"b":[%s]}},"name":"x"}' % (b"9" * 400),
     unknown("extra")),
    # Close to the 128 KiB limit: one more parse, not one per number.
    (b'{"name":"x","many":[%s1e999]}' % (b"1e999," * 20000), unknown("many")),
    # Invalid JSON as well: the syntax error, where it is.
    (b'{"name" 1e400}',
     "invalid JSON: ':' expected near '1e400' (line 1, column 13)"),
    (b'{"name":1e400,}',
     "invalid JSON: string or '}' expected near '}' (line 1, column 15)"),
    (b'{"name":"x",\n "a":[1e5-1e400]}',
     "invalid JSON: ']' expected near '-1e400' (line 2, column 15)"),
]


class NumberFieldsTest(harness.StackTestCase):
    stack_options = {"workers": 2, "token": TOKEN}

    def assertReason(self, r, reason):
        self.assertError(r, 400, "^%s$" % re.escape(reason))

    def test_post_400_names_the_field(self):
        before = self.stack.all_items()
        workers = self.stack.worker_pids()
        for body, reason in CASES:
            with self.subTest(body=body[:60]):
                self.assertReason(self.stack.request(
                    "POST", "/items", body, self.stack.auth()), reason)
        self.assertEqual(self.stack.all_items(), before, "nothing written")
        self.assertEqual(self.stack.worker_pids(), workers, "no worker died")

    def test_put_400_names_the_field(self):
        item = self.stack.create("put target", "unchanged")
        for body, reason in CASES:
            with self.subTest(body=body[:60]):
                self.assertReason(self.stack.request(
                    "PUT", "/items/%d" % item["id"], body,
                    self.stack.auth()), reason)
        got = self.stack.request("GET", "/items/%d" % item["id"])
        self.assertEqual(self.assertJSON(got, 200), item, "PUT target kept")

    def test_put_body_checked_before_the_database(self):
        # The body is refused (400) before the id is looked up (404).
        self.assertReason(self.stack.request(
            "PUT", "/items/999999", b'{"name":1e999999}', self.stack.auth()),
            NAME)


if __name__ == "__main__":
    main()
