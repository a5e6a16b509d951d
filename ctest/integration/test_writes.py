#!/usr/bin/env python3
"""Writes (POST, PUT, DELETE) through nginx: authorisation (401), media type
(415), size (413), every 400 case of the Writes section, exact round trips of
text, PUT as full replacement keeping created_at, DELETE, created_at in UTC.

The stack runs with TZ=Asia/Kathmandu (UTC+05:45) so that a created_at
produced or read in local time instead of UTC shows up."""

import base64
import calendar
import json
import time

import stack as harness
from stack import main

TOKEN = "writes-token-Zq8mXw3kLp0vRt6y"
TIME_ZONE = "Asia/Kathmandu"


def js(obj):
    """Compact JSON, non-ASCII as raw UTF-8."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


WHITESPACE_NAMES = [" ", "   ", "\t", "\n", "\r\n", "\x0b\x0c", "\u0085",
                    "\u00a0", "\u1680", "\u2000", "\u2003\u2009", "\u2028",
                    "\u2029", "\u202f", "\u205f", "\u3000", " \u3000\u00a0 "]

# (body, regex the error reason must match, or None for "any reason").
BAD_BODIES = [
    # Not one JSON object.
    (b"", None),
    (b" ", None),
    (b"[]", None),
    (b'[{"name":"a"}]', None),
    (b'"name"', None),
    (b"1", None),
    (b"null", None),
    (b"true", None),
    # Invalid JSON.
    (b"{", None),
    (b'{"name":"a",}', None),
    (b"{'name':'a'}", None),
    (b'{name:"a"}', None),
    (b'{"name":"a"} {"name":"b"}', None),
    (b'{"name":"a"}x', None),
    (b'{"name":"a"}{}', None),
    (b'{"name":"a","description":NaN}', None),
    (b'{"name":"a\nb"}', None),            # raw control character
    (b'{"name":"\\x41"}', None),           # invalid escape
    # Unknown keys.
    (b'{"name":"a","id":5}', r"\bid\b"),
    (b'{"name":"a","created_at":"2020-01-01T00:00:00Z"}', r"created_at"),
    (b'{"name":"a","extra":1}', r"extra"),
    (b'{"name":"a","Name":"b"}', r"Name"),
    (b'{"name":"a","description":null,"descr":null}', r"descr\b"),
    # Duplicate keys.
    (b'{"name":"a","name":"b"}', r"\bname\b"),
    (b'{"name":"a","name":"a"}', r"\bname\b"),
    (b'{"name":"a","description":"x","description":"y"}', r"description"),
    (b'{"name":"a","description":null,"description":null}', r"description"),
    # Missing or wrongly typed name.
    (b"{}", r"\bname\b"),
    (b'{"description":"x"}', r"\bname\b"),
    (b'{"name":null}', r"\bname\b"),
    (b'{"name":1}', r"\bname\b"),
    (b'{"name":true}', r"\bname\b"),
    (b'{"name":["a"]}', r"\bname\b"),
    (b'{"name":{"a":1}}', r"\bname\b"),
    # Wrongly typed description.
    (b'{"name":"a","description":1}', r"description"),
    (b'{"name":"a","description":false}', r"description"),
    (b'{"name":"a","description":["x"]}', r"description"),
    (b'{"name":"a","description":{}}', r"description"),
    # Empty or white-space-only names, Unicode white space included.
    (b'{"name":""}', r"\bname\b"),
] + [(js({"name": w}), r"\bname\b") for w in WHITESPACE_NAMES] + [
    # Too long: 256 code points (4-byte emoji, then ASCII).
    (js({"name": "\U0001F600" * 256}), r"\bname\b"),
    (js({"name": "a" * 256}), r"\bname\b"),
    # Description over 65535 bytes (counted in bytes, not code points).
    (js({"name": "a", "description": "d" * 65536}), r"description"),
    (js({"name": "a", "description": "\u20ac" * 21845 + "d"}), r"description"),
    (js({"name": "a", "description": "\U0001F600" * 16384}), r"description"),
    # Invalid UTF-8.
    (b'{"name":"\xff"}', None),
    (b'{"name":"caf\xc3"}', None),
    (b'{"name":"\xc0\xaf"}', None),          # overlong
    (b'{"name":"\xed\xa0\x80"}', None),      # encoded surrogate
    (b'{"name":"\xf4\x90\x80\x80"}', None),  # above U+10FFFF
    (b'{"name":"a","description":"\xfe"}', None),
    (b'{"name":"\\ud800"}', None),           # lone surrogate escape
    # U+0000 in a string.
    (b'{"name":"a\\u0000b"}', None),
    (b'{"name":"a","description":"\\u0000"}', None),
]

TEXTS = [
    ("Robert'); DROP TABLE items;--", "'; DELETE FROM items; -- \" \\ `"),
    ("<script>alert(1)</script>", "<b>bold</b> &amp; <img src=x onerror=1>"),
    ("\U0001F3C6\u26BD Champions", "\U0001F1EB\U0001F1F7 \U0001F600"),
    ("Zin\u00e9dine Zidane", "L\u00e9gende, c\u00e9l\u00e8bre, na\u00efve"),
    ("  untrimmed name  ", "  untrimmed description \n"),
    ("tab\there", "line1\nline2\r\nline3"),
    ("%s %n %x %%", "%d %p \\N \\0"),
    ("e\u0301 combining", "\u2028\u2029 separators"),
    ("\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd RTL"),
    ("null", "null"),
    ("x", ""),
    ("\U0001F600" * 255, "\u20ac" * 21845),
    ("n" * 255, "d" * 65535),
]


class WritesTest(harness.StackTestCase):
    stack_options = {"workers": 2, "token": TOKEN,
                     "env": {"TZ": TIME_ZONE}}

    def post(self, body, headers=None):
        return self.stack.request("POST", "/items", body,
                                  headers if headers is not None
                                  else self.stack.auth())

    def put(self, ident, body, headers=None):
        return self.stack.request("PUT", "/items/%s" % ident, body,
                                  headers if headers is not None
                                  else self.stack.auth())

    def delete(self, ident, headers=None):
        return self.stack.request("DELETE", "/items/%s" % ident, None,
                                  headers if headers is not None
                                  else {"Authorization": "Bearer " + TOKEN})

    def get_item(self, ident):
        return self.stack.request("GET", "/items/%s" % ident)

    def assertCreated(self, r, name, description):
        item = self.assertJSON(r, 201)
        self.assertItem(item, name, description, check_text=True)
        self.assertEqual(r.headers.get("location"), "/items/%d" % item["id"])
        got = self.assertJSON(self.get_item(item["id"]), 200)
        self.assertEqual(got, item)
        return item

    # -- POST ----------------------------------------------------------------

    def test_post_created(self):
        before = len(self.stack.all_items())
        r = self.post(js({"name": "Fabien Barthez",
                          "description": "Gardien de but."}))
        item = self.assertCreated(r, "Fabien Barthez", "Gardien de but.")
        self.assertEqual(len(self.stack.all_items()), before + 1)
        self.assertIn(item, self.stack.all_items())

    def test_created_at_is_utc_now(self):
        r = self.post(js({"name": "clock"}))
        item = self.assertJSON(r, 201)
        stamp = calendar.timegm(time.strptime(item["created_at"],
                                              "%Y-%m-%dT%H:%M:%SZ"))
        self.assertLess(abs(stamp - time.time()), 120,
                        "created_at %s is not the current UTC time (stack "
                        "TZ=%s)" % (item["created_at"], TIME_ZONE))

    def test_description_null_or_omitted(self):
        for body in ({"name": "no description"},
                     {"name": "null description", "description": None}):
            with self.subTest(body=body):
                r = self.post(js(body))
                self.assertCreated(r, body["name"], None)

    def test_exact_text_round_trip(self):
        for name, description in TEXTS:
            with self.subTest(name=name[:40]):
                item = self.assertCreated(
                    self.post(js({"name": name, "description": description})),
                    name, description)
                # \u escapes in the request mean the same text.
                escaped = json.dumps({"name": name,
                                      "description": description},
                                     ensure_ascii=True).encode()
                if len(escaped) <= 128 * 1024:
                    self.assertCreated(self.post(escaped), name, description)
                listed = [i for i in self.stack.all_items()
                          if i["id"] == item["id"]]
                self.assertEqual(listed, [item])

    def test_bad_bodies_400_post(self):
        before = self.stack.all_items()
        for body, reason in BAD_BODIES:
            with self.subTest(body=body[:60]):
                self.assertError(self.post(body), 400, reason)
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    def test_bad_bodies_400_put(self):
        item = self.stack.create("put target", "unchanged")
        for body, reason in BAD_BODIES:
            with self.subTest(body=body[:60]):
                self.assertError(self.put(item["id"], body), 400, reason)
        self.assertEqual(self.get_item(item["id"]).json(), item)

    # -- authorisation -------------------------------------------------------

    def bad_auth_headers(self):
        basic = base64.b64encode(("user:" + TOKEN).encode()).decode()
        values = [None, "", "Bearer", "Bearer ", "Bearer wrong",
                  "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1],
                  "Bearer " + TOKEN.upper(), "Bearer " + TOKEN[1:] + "Z",
                  "Basic " + basic, TOKEN, "Token " + TOKEN]
        for v in values:
            h = {"Content-Type": "application/json"}
            if v is not None:
                h["Authorization"] = v
            yield v, h

    def assertUnauthorized(self, r):
        self.assertError(r, 401)
        self.assertRegex(r.headers.get("www-authenticate", ""), r"(?i)^bearer",
                         r)

    def test_401_missing_or_wrong_token(self):
        item = self.stack.create("auth target", "unchanged")
        before = self.stack.all_items()
        for value, headers in self.bad_auth_headers():
            with self.subTest(authorization=value):
                self.assertUnauthorized(self.post(js({"name": "no"}), headers))
                self.assertUnauthorized(self.put(item["id"],
                                                 js({"name": "no"}), headers))
                self.assertUnauthorized(self.delete(item["id"], headers))
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    # -- media type ----------------------------------------------------------

    def test_415_content_type(self):
        item = self.stack.create("type target", "unchanged")
        before = self.stack.all_items()
        auth = {"Authorization": "Bearer " + TOKEN}
        for ctype in (None, "text/plain", "application/jsonx",
                      "application/json-patch+json", "text/json",
                      "application/x-www-form-urlencoded",
                      "multipart/form-data; boundary=x", "application/",
                      "json", "application/javascript"):
            with self.subTest(content_type=ctype):
                h = dict(auth)
                if ctype is not None:
                    h["Content-Type"] = ctype
                self.assertError(self.post(js({"name": "no"}), h), 415)
                self.assertError(self.put(item["id"], js({"name": "no"}), h),
                                 415)
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    def test_content_type_parameters_accepted(self):
        for ctype in ("application/json; charset=utf-8",
                      "application/json;charset=UTF-8",
                      "application/json; charset=\"utf-8\""):
            with self.subTest(content_type=ctype):
                h = self.stack.auth({"Content-Type": ctype})
                self.assertCreated(self.post(js({"name": ctype}), h),
                                   ctype, None)

    # -- size ----------------------------------------------------------------

    def padded(self, size, name="padded"):
        """A valid object padded with JSON white space to `size` bytes."""
        body = js({"name": name, "description": "big body"})
        self.assertLess(len(body), size)
        return body[:-1] + b" " * (size - len(body)) + b"}"

    def test_body_at_limit_accepted(self):
        body = self.padded(128 * 1024, "exactly 128 KiB")
        self.assertEqual(len(body), 131072)
        self.assertCreated(self.post(body), "exactly 128 KiB", "big body")
        item = self.stack.create("put at limit")
        r = self.put(item["id"], self.padded(131072, "put 128 KiB"))
        self.assertEqual(self.assertJSON(r, 200)["name"], "put 128 KiB")

    def test_413_above_limit(self):
        item = self.stack.create("size target", "unchanged")
        before = self.stack.all_items()
        for size in (131073, 200 * 1024, 1024 * 1024):
            with self.subTest(size=size):
                r = self.post(self.padded(size))
                self.assertError(r, 413)
                self.assertIn("x-request-id", r.headers)
                self.assertError(self.put(item["id"], self.padded(size)), 413)
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    def test_chunked_bodies(self):
        """A chunked body (no Content-Length) is the same body; over 128 KiB
        it is a JSON 413 too."""
        r = self.stack.request("POST", "/items", js({"name": "chunked \u00e9",
                                                     "description": "c"}),
                               self.stack.auth(), chunked=True)
        item = self.assertCreated(r, "chunked \u00e9", "c")
        r = self.stack.request("PUT", "/items/%d" % item["id"],
                               self.padded(131072, "chunked put"),
                               self.stack.auth(), chunked=True)
        self.assertEqual(self.assertJSON(r, 200)["name"], "chunked put")
        before = self.stack.all_items()
        r = self.stack.request("POST", "/items", self.padded(131073),
                               self.stack.auth(), chunked=True)
        self.assertError(r, 413)
        self.assertEqual(self.stack.all_items(), before)

    # -- PUT -----------------------------------------------------------------

    def test_put_full_replacement(self):
        item = self.stack.create("before", "old description")
        r = self.put(item["id"], js({"name": "after"}))
        updated = self.assertJSON(r, 200)
        self.assertEqual(updated, {"id": item["id"], "name": "after",
                                   "description": None,
                                   "created_at": item["created_at"]})
        self.assertEqual(self.get_item(item["id"]).json(), updated)
        r = self.put(item["id"], js({"name": " \u00e9t\u00e9 ",
                                     "description": "<p>new</p>"}))
        self.assertEqual(self.assertJSON(r, 200)["description"], "<p>new</p>")
        self.assertEqual(self.get_item(item["id"]).json(), r.json())

    def test_put_keeps_created_at(self):
        item = self.stack.create("old item", "from 2001")
        self.stack.sql("SET time_zone = '+00:00'; UPDATE items SET "
                       "created_at = '2001-02-03 04:05:06' WHERE id = %d"
                       % item["id"])
        got = self.get_item(item["id"]).json()
        self.assertEqual(got["created_at"], "2001-02-03T04:05:06Z",
                         "stored UTC time read back in another zone")
        r = self.put(item["id"], js({"name": "renamed", "description": "x"}))
        self.assertEqual(self.assertJSON(r, 200)["created_at"],
                         "2001-02-03T04:05:06Z")
        self.assertEqual(self.get_item(item["id"]).json()["created_at"],
                         "2001-02-03T04:05:06Z")

    def test_put_unknown_or_invalid_id_404(self):
        before = self.stack.all_items()
        for ident in ("2147483647", "0", "-1", "2147483648", "abc", "1a",
                      "+1"):
            with self.subTest(id=ident):
                self.assertError(self.put(ident, js({"name": "ghost"})), 404)
        self.assertEqual(self.stack.all_items(), before, "nothing written")

    # -- DELETE --------------------------------------------------------------

    def test_delete(self):
        item = self.stack.create("to delete", "bye")
        r = self.delete(item["id"])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertError(self.get_item(item["id"]), 404)
        self.assertNotIn(item["id"], [i["id"] for i in self.stack.all_items()])
        self.assertError(self.delete(item["id"]), 404)
        self.assertError(self.put(item["id"], js({"name": "zombie"})), 404)
        self.assertError(self.get_item(item["id"]), 404)

    # -- the query cache (mysql/my.cnf) --------------------------------------

    def qcache_hits(self):
        return int(self.stack.sql("SHOW GLOBAL STATUS LIKE 'Qcache_hits'")
                   .split()[1])

    def test_reads_from_the_query_cache_see_every_write(self):
        """The workers' reads are answered from MariaDB's query cache, and a
        read right after an acknowledged write still sees that write: the
        write invalidates the cached results when it commits."""
        self.assertEqual(self.stack.sql("SELECT @@global.query_cache_type")
                         .strip(), "ON")
        item = self.stack.create("cached", "v1")
        path = "/items/%d" % item["id"]
        page = "/items?after=%d&limit=5" % (item["id"] - 1)
        for _ in range(2):
            self.assertEqual(self.get_item(item["id"]).json(), item)
            self.assertEqual(self.stack.request("GET", page).json(), [item])
        hits = self.qcache_hits()
        self.assertEqual(self.get_item(item["id"]).json(), item)
        self.assertEqual(self.stack.request("GET", page).json(), [item])
        self.assertGreaterEqual(self.qcache_hits(), hits + 2,
                                "the repeated reads did not hit the cache")
        # PUT, then both reads at once: the new version, never the cached one.
        updated = self.assertJSON(self.put(item["id"], js(
            {"name": "cached", "description": "v2"})), 200)
        self.assertEqual(self.get_item(item["id"]).json(), updated)
        self.assertEqual(self.stack.request("GET", page).json(), [updated])
        # POST: the next page holds the new item at once.
        added = self.assertJSON(self.post(js({"name": "after it"})), 201)
        self.assertEqual(self.stack.request("GET", page).json(),
                         [updated, added])
        # DELETE: gone from both reads at once.
        self.assertEqual(self.delete(item["id"]).status, 204)
        self.assertError(self.stack.request("GET", path), 404)
        self.assertEqual(self.stack.request("GET", page).json(), [added])

    def test_delete_unknown_or_invalid_id_404(self):
        before = self.stack.all_items()
        for ident in ("2147483647", "0", "-1", "2147483648", "abc", "+1",
                      "1.0"):
            with self.subTest(id=ident):
                self.assertError(self.delete(ident), 404)
        self.assertEqual(self.stack.all_items(), before)


if __name__ == "__main__":
    main()
