#!/usr/bin/env python3
"""Contract v1.1 (docs/api.md "Entity tags and conditional requests", the
order of the checks, "Database schema older than the worker needs"):

- `ETag`: a strong, quoted tag on every answer that carries one item (GET,
  HEAD, POST 201, PUT 200), the same for GET and HEAD of one state, a new
  one after every PUT (carried by its answer); none on lists or on a 204;
- `If-None-Match` on GET/HEAD (weak comparison): 304 with the ETag, no body,
  `Cache-Control: no-store`; `*`; lists with odd spacing; 200 for an old
  tag; 404 before the precondition; 400 naming the header when malformed;
- `If-Match` on PUT/DELETE (strong comparison): applied on the current tag,
  `*` or a list holding it; otherwise 412 with the current ETag and nothing
  written; the checks before it (401/403, 415, 400 body, 400 header syntax,
  404) win over it; the headers are ignored where the contract says so;
- the comparison and the write are one atomic step: of 16 PUTs (DELETEs, a
  mix of both) sent together with one tag to 4 workers exactly one is
  applied, and the stored item is the one it wrote;
- requests without preconditions behave as in v1;
- `created_at` past 2038 (a DATETIME holding UTC) and now in UTC;
- a database whose schema is older than the worker needs: 503 on /status
  ("database schema outdated: version N, the API needs M ...") and on the
  item routes, logged, and served again within about a second of the
  migration being applied, without a restart.
"""

# run.py: about 10 s (three stacks of its own; 50 rounds of races)

import calendar
import json
import os
import re
import signal
import time
import uuid

import fcgi_client
import stack as harness
from stack import main, run_concurrently, wait_until

TOKEN = "conditional-token-Vb7s2QpX"
TIME_ZONE = "Asia/Kathmandu"      # UTC+05:45: local time is never UTC
RACERS = 16
ROUNDS = 10                       # of each race (at least 5)
MIX_ROUNDS = 30                   # PUT and DELETE: its window is narrower
ABSENT_ID = 2147483647            # a valid id no test creates
# docs/api.md: "an opaque string between double quotes" (RFC 9110 8.8.3:
# opaque = %x21 / %x23-7E / obs-text); strong: no W/ prefix.
ETAG_RE = re.compile(r'\A"[\x21\x23-\x7e\x80-\xff]+"\Z')
CHANGED = {"error": "the item has changed since the tag you sent: "
                    "read it again"}
MALFORMED = ["abc", '"x', '*, "x"', "", "W/x", '"a" "b"', 'W/ "x"']
OUTDATED_ITEMS = {"error": "database schema outdated: apply the migrations"}
OUTDATED_STATUS_RE = re.compile(
    r"\Adatabase schema outdated: version (\d+), the API needs (\d+) "
    r"\(apply the migrations\)\Z")


def cache_directives(r):
    value = r.headers.get("cache-control", "")
    return [d.strip().lower() for d in value.split(",") if d.strip()]


def weak(tag):
    return "W/" + tag


def brief(r):
    """A short description of a Response for failure messages."""
    if not isinstance(r, harness.Response):
        return repr(r)
    keep = {k: v for k, v in r.headers.items()
            if k in ("etag", "content-type", "cache-control", "location")}
    return "%d %r %r" % (r.status, keep, r.body[:200])


class ConditionalBase(harness.StackTestCase):

    # -- requests ----------------------------------------------------------

    def get(self, ident, headers=None, method="GET"):
        return self.stack.request(method, "/items/%s" % ident, None,
                                  headers or {})

    def put(self, ident, body, if_match=None, headers=None):
        h = self.stack.auth() if headers is None else dict(headers)
        if if_match is not None:
            h["If-Match"] = if_match
        return self.stack.request("PUT", "/items/%s" % ident, body, h)

    def delete(self, ident, if_match=None, headers=None):
        h = ({"Authorization": "Bearer %s" % self.stack.token}
             if headers is None else dict(headers))
        if if_match is not None:
            h["If-Match"] = if_match
        return self.stack.request("DELETE", "/items/%s" % ident, None, h)

    def new_item(self, label="item"):
        """POST a fresh item; (item, its tag from the 201)."""
        name = "%s %s" % (label, uuid.uuid4().hex[:10])
        r = self.stack.request("POST", "/items",
                               {"name": name, "description": "first"},
                               self.stack.auth())
        item = self.assertJSON(r, 201)
        return item, self.assertETag(r)

    # -- assertions --------------------------------------------------------

    def assertETag(self, r):
        """A well-formed strong entity tag in the ETag header; returns it."""
        self.assertIn("etag", r.headers, "no ETag header in the answer "
                      "%s" % brief(r))
        tag = r.headers["etag"]
        self.assertRegex(tag, ETAG_RE, "ETag of %s is not a strong quoted "
                         "tag" % brief(r))
        return tag

    def assertNoStore(self, r):
        self.assertIn("no-store", cache_directives(r),
                      "Cache-Control of %s" % brief(r))

    def current(self, ident):
        """GET the item (must be 200): (item, tag)."""
        r = self.get(ident)
        return self.assertJSON(r, 200), self.assertETag(r)

    def assertStored(self, ident, item, tag=None):
        """The item reads back exactly as `item` (and with tag `tag`)."""
        got, got_tag = self.current(ident)
        self.assertEqual(got, item, "stored item of /items/%s" % ident)
        if tag is not None:
            self.assertEqual(got_tag, tag, "ETag of /items/%s" % ident)

    def assertGone(self, ident):
        self.assertError(self.get(ident), 404)

    def assertPrecondition412(self, r, current_tag):
        """412, the contract's error, the current tag; `current_tag` None:
        any well-formed tag."""
        self.assertEqual(self.assertJSON(r, 412), CHANGED, r)
        tag = self.assertETag(r)
        if current_tag is not None:
            self.assertEqual(tag, current_tag, "412 must carry the ETag of "
                             "the item as stored: %s" % brief(r))
        self.assertNoStore(r)


class ConditionalTest(ConditionalBase):
    stack_options = {"workers": 4, "token": TOKEN, "env": {"TZ": TIME_ZONE}}

    def setUp(self):
        self.assertEqual(self.stack.request("GET", "/status").status, 200,
                         "stack healthy before the test")

    # -- ETag --------------------------------------------------------------

    def test_etag_on_every_single_item_answer(self):
        """POST 201, GET, HEAD and PUT 200 carry a strong quoted tag; GET
        and HEAD of one state give the POST's tag (twice: stable without a
        write); a PUT gives a new tag, the one a following GET returns."""
        item, post_tag = self.new_item("etag")
        ident = item["id"]
        r1 = self.get(ident)
        self.assertEqual(self.assertJSON(r1, 200), item)
        self.assertEqual(self.assertETag(r1), post_tag,
                         "GET of the state POST created: POST's tag")
        r2 = self.get(ident)
        self.assertEqual(self.assertETag(r2), post_tag,
                         "GET twice without a write: the same tag")
        h = self.get(ident, method="HEAD")
        self.assertEqual(h.status, 200, brief(h))
        self.assertEqual(h.body, b"", "HEAD has no body")
        self.assertEqual(self.assertETag(h), post_tag, "HEAD's tag is GET's")

        r = self.put(ident, {"name": "etag changed", "description": None})
        put_item = self.assertJSON(r, 200)
        put_tag = self.assertETag(r)
        self.assertNotEqual(put_tag, post_tag, "a PUT that changes the item "
                            "changes its tag")
        self.assertStored(ident, put_item, put_tag)
        h = self.get(ident, method="HEAD")
        self.assertEqual(self.assertETag(h), put_tag)

        # "every write replaces [the row version] with a new random value":
        # a PUT of the same content still gives a new tag.
        r = self.put(ident, {"name": "etag changed", "description": None})
        self.assertEqual(self.assertJSON(r, 200), put_item)
        again = self.assertETag(r)
        self.assertNotEqual(again, put_tag, "a PUT gives a new tag")
        self.assertStored(ident, put_item, again)

    def test_each_state_has_its_own_tag(self):
        """Tags of successive states of one item are all distinct (five
        PUTs); the tag of a seeded, never-written item is well-formed."""
        item, tag = self.new_item("states")
        seen = {tag}
        for i in range(5):
            r = self.put(item["id"], {"name": "state %d" % i})
            seen.add(self.assertETag(r))
        self.assertEqual(len(seen), 6, "each state has its own tag")
        first = self.stack.request("GET", "/items?limit=1").json()
        if first:
            self.assertETag(self.get(first[0]["id"]))

    def test_no_etag_on_lists_or_204(self):
        self.new_item("list")
        for method in ("GET", "HEAD"):
            for path in ("/items", "/items?limit=2", "/items?after=0"):
                with self.subTest(method=method, path=path):
                    r = self.stack.request(method, path)
                    self.assertEqual(r.status, 200, brief(r))
                    self.assertNotIn("etag", r.headers, "a list has no tag")
        for with_tag in (False, True):
            with self.subTest(if_match=with_tag):
                item, tag = self.new_item("delete")
                r = self.delete(item["id"], tag if with_tag else None)
                self.assertEqual(r.status, 204, brief(r))
                self.assertEqual(r.body, b"")
                self.assertNotIn("etag", r.headers, "a 204 has no tag")

    # -- If-None-Match -------------------------------------------------------

    def test_if_none_match_current_is_304(self):
        item, tag = self.new_item("inm")
        ident = item["id"]
        values = {
            "current": tag,
            "weak": weak(tag),
            "star": "*",
            "list": '"nope-1",%s' % tag,
            "list with odd spacing": ' "nope-1" ,W/"nope-2",\t  %s  ' % tag,
            "weak in a list": '"nope-1", %s, "nope-3"' % weak(tag),
            "empty list elements": '"nope-1", ,%s,' % tag,
        }
        for method in ("GET", "HEAD"):
            for label, value in values.items():
                with self.subTest(method=method, value=label):
                    r = self.get(ident, {"If-None-Match": value}, method)
                    self.assertEqual(r.status, 304, brief(r))
                    self.assertEqual(r.body, b"", "a 304 has no body")
                    self.assertEqual(self.assertETag(r), tag,
                                     "a 304 carries the current tag")
                    self.assertNoStore(r)
                    self.assertIn("x-request-id", r.headers)

    def test_if_none_match_old_tag_is_200(self):
        item, old = self.new_item("inm old")
        ident = item["id"]
        r = self.put(ident, {"name": "inm new"})
        new_item, new = self.assertJSON(r, 200), self.assertETag(r)
        for value in (old, weak(old), '"x", %s' % old, '"%s"' % ("0" * 16)):
            with self.subTest(value=value):
                r = self.get(ident, {"If-None-Match": value})
                self.assertEqual(self.assertJSON(r, 200), new_item)
                self.assertEqual(self.assertETag(r), new)
                h = self.get(ident, {"If-None-Match": value}, "HEAD")
                self.assertEqual(h.status, 200, brief(h))
                self.assertEqual(h.body, b"")
                self.assertEqual(self.assertETag(h), new)

    def test_if_none_match_unknown_id_is_404(self):
        for value in ("*", '"0123456789abcdef"', weak('"x"')):
            with self.subTest(value=value):
                self.assertError(self.get(ABSENT_ID, {"If-None-Match": value}),
                                 404)
                h = self.get(ABSENT_ID, {"If-None-Match": value}, "HEAD")
                self.assertEqual(h.status, 404, brief(h))

    def test_if_none_match_malformed_is_400(self):
        item, tag = self.new_item("inm bad")
        for value in MALFORMED + ["%s %s" % (tag, tag), "*, *"]:
            for ident in (item["id"], ABSENT_ID):
                with self.subTest(value=value, id=ident):
                    r = self.get(ident, {"If-None-Match": value})
                    self.assertError(r, 400, r"If-None-Match")
                    self.assertNotIn("etag", r.headers)
                    h = self.get(ident, {"If-None-Match": value}, "HEAD")
                    self.assertEqual(h.status, 400, brief(h))

    def test_worker_304_has_no_body(self):
        """Straight to the worker (nginx drops any body of a 304 itself):
        Status 304, the tag, no body; an empty If-None-Match is 400 (nginx
        may or may not pass an empty header on)."""
        item, tag = self.new_item("fcgi")
        path = "/items/%d" % item["id"]
        params = {
            "REQUEST_METHOD": "GET", "DOCUMENT_URI": path,
            "REQUEST_URI": path, "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_ID": "cond-%d" % time.monotonic_ns(),
            "CONTENT_LENGTH": "0", "HTTP_IF_NONE_MATCH": tag,
        }
        sock = os.path.join(self.stack.run_dir, "api", "fcgi.sock")
        r = fcgi_client.request(sock, params, b"", timeout=10.0)
        self.assertEqual(r.status, 304, brief(r))
        self.assertEqual(r.body, b"", "the worker's 304 has no body")
        self.assertEqual(r.headers.get("etag"), tag, r)
        params["HTTP_IF_NONE_MATCH"] = ""
        r = fcgi_client.request(sock, params, b"", timeout=10.0)
        self.assertEqual(r.status, 400, brief(r))
        self.assertIn("if-none-match",
                      json.loads(r.body.decode())["error"].lower())

    # -- If-Match: applied -------------------------------------------------

    def test_if_match_applies_put(self):
        for label in ("current", "star", "list", "list with odd spacing"):
            with self.subTest(value=label):
                item, tag = self.new_item("im put")
                value = {"current": tag, "star": "*",
                         "list": '"nope", %s' % tag,
                         "list with odd spacing":
                             '  W/"nope",%s ,\t"other"' % tag}[label]
                body = {"name": "applied " + label, "description": label}
                r = self.put(item["id"], body, value)
                got = self.assertJSON(r, 200)
                self.assertItem(got, body["name"], body["description"], True)
                self.assertEqual(got["created_at"], item["created_at"])
                new = self.assertETag(r)
                self.assertNotEqual(new, tag)
                self.assertStored(item["id"], got, new)

    def test_if_match_applies_delete(self):
        for label in ("current", "star", "list"):
            with self.subTest(value=label):
                item, tag = self.new_item("im delete")
                value = {"current": tag, "star": "*",
                         "list": '"nope",W/"nope2",%s' % tag}[label]
                r = self.delete(item["id"], value)
                self.assertEqual(r.status, 204, brief(r))
                self.assertEqual(r.body, b"")
                self.assertGone(item["id"])

    # -- If-Match: refused ---------------------------------------------------

    def stale(self, label):
        """An item changed since its first tag: (item as stored, current
        tag, stale tag)."""
        item, old = self.new_item(label)
        r = self.put(item["id"], {"name": item["name"], "description": "v2"})
        return self.assertJSON(r, 200), self.assertETag(r), old

    def test_if_match_stale_put_is_412(self):
        stored, cur, old = self.stale("im stale put")
        for value in (old, '"nope", %s' % old, weak(cur),
                      '%s, "x"' % weak(cur), '"%s"' % ("0" * 16)):
            with self.subTest(value=value):
                r = self.put(stored["id"], {"name": "must not be written"},
                             value)
                self.assertPrecondition412(r, cur)
                self.assertStored(stored["id"], stored, cur)

    def test_if_match_stale_delete_is_412(self):
        stored, cur, old = self.stale("im stale delete")
        for value in (old, weak(cur), '"x", %s' % weak(cur)):
            with self.subTest(value=value):
                r = self.delete(stored["id"], value)
                self.assertPrecondition412(r, cur)
                self.assertStored(stored["id"], stored, cur)

    def test_if_match_unknown_id_is_404(self):
        item, tag = self.new_item("im gone")
        self.assertEqual(self.delete(item["id"]).status, 204)
        for ident in (item["id"], ABSENT_ID):
            for value in (tag, "*", '"x"'):
                with self.subTest(id=ident, value=value):
                    self.assertError(self.put(ident, {"name": "x"}, value),
                                     404)
                    self.assertError(self.delete(ident, value), 404)
        self.assertGone(item["id"])

    def test_if_match_without_token_is_401(self):
        stored, cur, old = self.stale("im token")
        bad = [None, {"Authorization": "Bearer wrong-" + TOKEN},
               {"Authorization": "Basic " + TOKEN}]
        for hdrs in bad:
            for value in (old, cur, "*", "abc"):
                with self.subTest(auth=hdrs, value=value):
                    h = dict(hdrs or {})
                    h["Content-Type"] = "application/json"
                    r = self.put(stored["id"], {"name": "no token"}, value, h)
                    self.assertError(r, 401)
                    self.assertIn("bearer",
                                  r.headers.get("www-authenticate", "").lower())
                    r = self.delete(stored["id"], value, hdrs or {})
                    self.assertError(r, 401)
        self.assertStored(stored["id"], stored, cur)

    def test_body_is_checked_before_if_match(self):
        """415 and 400 (body) before the precondition (stale tag) and
        before the header's syntax."""
        stored, cur, old = self.stale("im body")
        for value in (old, "abc"):
            with self.subTest(value=value, case="bad body"):
                r = self.put(stored["id"], b"{}", value)
                self.assertError(r, 400, r"\bname\b")
                r = self.put(stored["id"], b'{"name":"a","extra":1}', value)
                self.assertError(r, 400, r"extra")
                r = self.put(stored["id"], b"{", value)
                self.assertError(r, 400)
            with self.subTest(value=value, case="media type"):
                h = self.stack.auth({"Content-Type": "text/plain"})
                r = self.put(stored["id"], {"name": "x"}, value, h)
                self.assertError(r, 415)
        self.assertStored(stored["id"], stored, cur)

    def test_if_match_malformed_is_400(self):
        stored, cur, old = self.stale("im malformed")
        for value in MALFORMED + ["%s %s" % (cur, cur), "*, *"]:
            for ident in (stored["id"], ABSENT_ID):
                with self.subTest(value=value, id=ident):
                    r = self.put(ident, {"name": "malformed"}, value)
                    self.assertError(r, 400, r"If-Match")
                    r = self.delete(ident, value)
                    self.assertError(r, 400, r"If-Match")
        self.assertStored(stored["id"], stored, cur)

    # -- what is ignored, v1 behaviour -----------------------------------------

    def test_ignored_preconditions(self):
        """If-Match on GET/HEAD/POST, If-None-Match on POST/PUT/DELETE,
        If-Modified-Since and If-Unmodified-Since: ignored."""
        stored, cur, old = self.stale("ignored")
        ident = stored["id"]
        for value in (old, '"x"', "abc"):
            with self.subTest(header="If-Match", method="GET", value=value):
                r = self.get(ident, {"If-Match": value})
                self.assertEqual(self.assertJSON(r, 200), stored)
                self.assertEqual(self.assertETag(r), cur)
                h = self.get(ident, {"If-Match": value}, "HEAD")
                self.assertEqual(h.status, 200, brief(h))
            with self.subTest(header="If-Match", method="POST", value=value):
                r = self.stack.request("POST", "/items", {"name": "post im"},
                                       self.stack.auth({"If-Match": value}))
                self.assertJSON(r, 201)
                self.assertETag(r)
        with self.subTest(header="If-Modified-Since", method="GET"):
            r = self.get(ident, {"If-Modified-Since":
                                 "Sat, 01 Jan 2100 00:00:00 GMT"})
            self.assertEqual(self.assertJSON(r, 200), stored)
        for value in ("*", cur, "abc"):
            with self.subTest(header="If-None-Match", method="POST",
                              value=value):
                r = self.stack.request("POST", "/items", {"name": "post inm"},
                                       self.stack.auth({"If-None-Match":
                                                        value}))
                self.assertJSON(r, 201)
            with self.subTest(header="If-None-Match", method="PUT",
                              value=value):
                body = {"name": "put inm " + value}
                r = self.put(ident, body, headers=self.stack.auth(
                    {"If-None-Match": value}))
                stored = self.assertJSON(r, 200)
                self.assertEqual(stored["name"], body["name"])
                cur = self.assertETag(r)
        with self.subTest(header="If-Unmodified-Since", method="PUT"):
            r = self.put(ident, {"name": "put ius"}, headers=self.stack.auth(
                {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}))
            self.assertEqual(self.assertJSON(r, 200)["name"], "put ius")
        for value in ("*", "abc"):
            with self.subTest(header="If-None-Match", method="DELETE",
                              value=value):
                item, _ = self.new_item("delete inm")
                r = self.delete(item["id"], headers={
                    "Authorization": "Bearer " + TOKEN,
                    "If-None-Match": value})
                self.assertEqual(r.status, 204, brief(r))
                self.assertGone(item["id"])

    def test_without_preconditions_as_v1(self):
        """A client that sends no If-Match overwrites an item another
        client changed (200) and deletes it (204)."""
        item = self.stack.create("v1 " + uuid.uuid4().hex[:8])
        self.assertEqual(self.put(item["id"], {"name": "other"}).status, 200)
        r = self.put(item["id"], {"name": "v1 client", "description": "d"})
        got = self.assertJSON(r, 200)
        self.assertItem(got, "v1 client", "d", True)
        self.assertStored(item["id"], got)
        self.assertEqual(self.put(item["id"], {"name": "again"}).status, 200)
        r = self.delete(item["id"])
        self.assertEqual(r.status, 204, brief(r))
        self.assertGone(item["id"])

    # -- races ---------------------------------------------------------------

    def race(self, ident, tag, kinds):
        """Send len(kinds) writes ("PUT" or "DELETE") with If-Match `tag`
        together; return [(kind, body or None, Response)]."""
        bodies = [{"name": "racer %d %s" % (i, uuid.uuid4().hex[:6]),
                   "description": "written by racer %d" % i}
                  if kind == "PUT" else None for i, kind in enumerate(kinds)]
        auth = self.stack.auth({"If-Match": tag})
        del_auth = {"Authorization": "Bearer " + TOKEN, "If-Match": tag}
        results = run_concurrently(len(kinds), lambda i: self.stack.request(
            kinds[i], "/items/%d" % ident, bodies[i],
            auth if kinds[i] == "PUT" else del_auth))
        for r in results:
            self.assertIsInstance(r, harness.Response, r)
        return list(zip(kinds, bodies, results))

    @staticmethod
    def tally(outcomes):
        return sorted("%s %d" % (k, r.status) for k, _, r in outcomes)

    def test_race_puts_same_tag(self):
        """16 PUTs with the current tag, released together on 4 workers:
        one 200, fifteen 412 (each with the winner's tag); the stored item
        is the 200's body and its tag the 200's tag. Ten rounds."""
        for rnd in range(ROUNDS):
            with self.subTest(round=rnd):
                item, tag = self.new_item("race put")
                out = self.race(item["id"], tag, ["PUT"] * RACERS)
                won = [(b, r) for _, b, r in out if r.status == 200]
                self.assertEqual(len(won), 1, self.tally(out))
                self.assertEqual(sum(r.status == 412 for _, _, r in out),
                                 RACERS - 1, self.tally(out))
                body, r = won[0]
                got = self.assertJSON(r, 200)
                self.assertItem(got, body["name"], body["description"], True)
                self.assertEqual(got["created_at"], item["created_at"])
                win_tag = self.assertETag(r)
                self.assertNotEqual(win_tag, tag)
                self.assertStored(item["id"], got, win_tag)
                for _, _, lost in out:
                    if lost is not r:
                        self.assertPrecondition412(lost, win_tag)

    def test_race_deletes_same_tag(self):
        """16 DELETEs with the current tag: one 204; the others 412 (the
        item did not match) or 404 (already gone when judged); then 404."""
        for rnd in range(ROUNDS):
            with self.subTest(round=rnd):
                item, tag = self.new_item("race delete")
                out = self.race(item["id"], tag, ["DELETE"] * RACERS)
                statuses = [r.status for _, _, r in out]
                self.assertEqual(statuses.count(204), 1, self.tally(out))
                self.assertTrue(set(statuses) <= {204, 404, 412},
                                self.tally(out))
                for _, _, r in out:
                    if r.status == 412:
                        self.assertEqual(self.assertJSON(r, 412), CHANGED)
                        if "etag" in r.headers:
                            self.assertETag(r)
                    elif r.status == 404:
                        self.assertError(r, 404)
                self.assertGone(item["id"])

    def test_race_put_and_delete_same_tag(self):
        """8 PUTs and 8 DELETEs with one tag: exactly one applied. A PUT
        won: all others 412, the item is its body with its tag. A DELETE
        won: the others 412 or 404, the item is gone."""
        kinds = ["PUT", "DELETE"] * (RACERS // 2)
        for rnd in range(MIX_ROUNDS):
            with self.subTest(round=rnd):
                item, tag = self.new_item("race mix")
                out = self.race(item["id"], tag, kinds)
                won = [(k, b, r) for k, b, r in out if r.status in (200, 204)]
                self.assertEqual(len(won), 1, self.tally(out))
                kind, body, r = won[0]
                others = [o for o in out if o[2] is not r]
                if kind == "PUT":
                    self.assertEqual(r.status, 200)
                    got = self.assertJSON(r, 200)
                    self.assertItem(got, body["name"], body["description"],
                                    True)
                    win_tag = self.assertETag(r)
                    self.assertStored(item["id"], got, win_tag)
                    for _, _, lost in others:
                        self.assertPrecondition412(lost, win_tag)
                else:
                    self.assertEqual(r.status, 204)
                    self.assertTrue(
                        all(o[2].status in (404, 412) for o in others),
                        self.tally(out))
                    self.assertGone(item["id"])

    # -- created_at ------------------------------------------------------------

    def test_created_at_past_2038(self):
        item = self.stack.create("2040 " + uuid.uuid4().hex[:8])
        try:
            self.stack.sql("UPDATE items SET created_at = '2040-06-01 "
                           "12:00:00' WHERE id = %d" % item["id"])
        except harness.StackError as e:
            self.fail("the created_at column cannot hold 2040: %s" % e)
        got = self.assertJSON(self.get(item["id"]), 200)
        self.assertEqual(got["created_at"], "2040-06-01T12:00:00Z", got)
        listed = [i for i in self.stack.all_items() if i["id"] == item["id"]]
        self.assertEqual([i["created_at"] for i in listed],
                         ["2040-06-01T12:00:00Z"])
        r = self.put(item["id"], {"name": "after 2038"})
        self.assertEqual(self.assertJSON(r, 200)["created_at"],
                         "2040-06-01T12:00:00Z", "PUT keeps created_at")

    def test_created_at_now_utc(self):
        before = time.time()
        item = self.stack.create("now " + uuid.uuid4().hex[:8])
        after = time.time()
        stamp = calendar.timegm(time.strptime(item["created_at"],
                                              "%Y-%m-%dT%H:%M:%SZ"))
        self.assertTrue(before - 3 <= stamp <= after + 3,
                        "created_at %s is not now in UTC (%s; stack TZ=%s)"
                        % (item["created_at"],
                           time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(before)), TIME_ZONE))
        got = self.assertJSON(self.get(item["id"]), 200)
        self.assertEqual(got["created_at"], item["created_at"])


class NoTokenConditionalTest(ConditionalBase):
    """Writes disabled: 403 before any precondition."""
    stack_options = {"workers": 1, "no_token": True}

    def test_if_match_with_writes_disabled_is_403(self):
        first = self.stack.request("GET", "/items?limit=1").json()
        self.assertTrue(first, "the seed has items")
        ident = first[0]["id"]
        r = self.get(ident)
        stored = self.assertJSON(r, 200)
        # The 403s do not depend on the ETag; the tag is checked at the end.
        cur = r.headers.get("etag", '"0000000000000000"')
        auth = {"Authorization": "Bearer whatever",
                "Content-Type": "application/json"}
        for value in (cur, '"0123456789abcdef"', "*", weak(cur), "abc"):
            for hdrs in (auth, {"Content-Type": "application/json"}):
                with self.subTest(value=value, auth="Authorization" in hdrs):
                    r = self.put(ident, {"name": "x"}, value, hdrs)
                    self.assertEqual(self.assertJSON(r, 403),
                                     {"error": "writes are disabled"})
                    r = self.delete(ident, value, hdrs)
                    self.assertEqual(self.assertJSON(r, 403),
                                     {"error": "writes are disabled"})
                    r = self.put(ABSENT_ID, {"name": "x"}, value, hdrs)
                    self.assertEqual(r.status, 403, brief(r))
        self.assertStored(ident, stored)
        self.assertEqual(self.assertETag(self.get(ident)), cur)


class SchemaVersionTest(ConditionalBase):
    """The newest migration row removed: the workers (restarted, so that
    each connects afresh) refuse to serve; the row put back: they serve
    again within about a second, no restart."""
    stack_options = {"workers": 2, "token": TOKEN}
    RECOVERY = 3.0     # docs: "within about a second"

    def versions(self):
        out = self.stack.sql("SELECT version FROM items.schema_migrations "
                             "ORDER BY version")
        return [v for v in out.split("\n") if v.strip()]

    @staticmethod
    def number(version):
        m = re.match(r"\s*0*(\d+)", version)
        return int(m.group(1)) if m else None

    def outdated_lines(self, since=0):
        found = []
        for line in self.stack.log_lines("pool.log")[since:]:
            if "database schema outdated" not in line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"msg": line, "pid": None}
            found.append(obj)
        return found

    def test_outdated_schema_is_503_until_migrated(self):
        s = self.stack
        has = s.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                    "TABLE_SCHEMA = 'items' AND TABLE_NAME = "
                    "'schema_migrations'").strip()
        self.assertEqual(has, "1", "no table items.schema_migrations: the "
                         "stack's database has no migration records")
        versions = self.versions()
        self.assertGreaterEqual(len(versions), 2, versions)
        newest = versions[-1]
        # Keep the exact row (every column) to put it back.
        s.sql("CREATE DATABASE IF NOT EXISTS conditional_saved; "
              "DROP TABLE IF EXISTS conditional_saved.row; "
              "CREATE TABLE conditional_saved.row AS SELECT * FROM "
              "items.schema_migrations ORDER BY version DESC LIMIT 1")
        before_count = int(s.sql("SELECT COUNT(*) FROM items").strip())
        since = len(s.log_lines("pool.log"))
        s.sql("DELETE FROM items.schema_migrations ORDER BY version DESC "
              "LIMIT 1")
        restored = False
        try:
            self.assertEqual(self.versions(), versions[:-1])
            # Fresh connections: replace every worker.
            old = s.worker_pids()
            for pid in old:
                os.kill(pid, signal.SIGKILL)
            fresh = s.wait_workers(2, exclude=old)
            self.assertFalse(set(fresh) & set(old), fresh)

            def status_503():
                r = s.request("GET", "/status")
                return r if r.status == 503 else None
            r = wait_until(status_503, 3.0, 0.1)
            self.assertIsNotNone(r, "/status still %r with the newest "
                                 "migration (%s) removed"
                                 % (s.request("GET", "/status"), newest))
            data = self.assertJSON(r, 503)
            self.assertEqual(set(data), {"status", "database_connection",
                                         "message"}, data)
            self.assertEqual(data["status"], "KO")
            self.assertEqual(data["database_connection"], "KO")
            self.assertTrue(data["message"].startswith(
                "database schema outdated"), data)
            m = OUTDATED_STATUS_RE.match(data["message"])
            self.assertIsNotNone(m, data)
            have, need = int(m.group(1)), int(m.group(2))
            self.assertEqual(have, self.number(versions[-2]), data)
            self.assertGreater(need, have, data)
            h = s.request("HEAD", "/status")
            self.assertEqual(h.status, 503, brief(h))

            # Every worker, every item route.
            for _ in range(3):
                for method, path, body in (
                        ("GET", "/items", None),
                        ("GET", "/items?limit=1", None),
                        ("GET", "/items/1", None),
                        ("POST", "/items", {"name": "outdated"}),
                        ("PUT", "/items/1", {"name": "outdated"}),
                        ("DELETE", "/items/2", None)):
                    with self.subTest(method=method, path=path):
                        r = s.request(method, path, body,
                                      s.auth() if method != "GET" else None)
                        self.assertEqual(self.assertJSON(r, 503),
                                         OUTDATED_ITEMS, r)
                        self.assertNoStore(r)
                h = s.request("HEAD", "/items/1")
                self.assertEqual(h.status, 503, brief(h))
            self.assertEqual(int(s.sql("SELECT COUNT(*) FROM items").strip()),
                             before_count, "nothing written")

            # Logged, once per worker (not once per request).
            lines = wait_until(lambda: self.outdated_lines(since), 2.0)
            self.assertTrue(lines, "no 'database schema outdated' line in "
                            "pool.log")
            pids = [o.get("pid") for o in lines]
            self.assertEqual(len(pids), len(set(pids)),
                             "logged more than once by a worker: %s" % lines)

            # The migration applied again: served within about a second.
            s.sql("INSERT INTO items.schema_migrations SELECT * FROM "
                  "conditional_saved.row")
            restored = True
            self.assertEqual(self.versions(), versions)
            begin = time.monotonic()
            ok = wait_until(lambda: s.request("GET", "/status").status == 200,
                            self.RECOVERY, 0.1)
            self.assertTrue(ok, "/status %r %.1f s after the migration "
                            "was applied" % (s.request("GET", "/status"),
                                             time.monotonic() - begin))
            r = s.request("GET", "/status")
            self.assertEqual(self.assertJSON(r, 200)["status"], "OK")
            ok = wait_until(lambda: all(
                s.request("GET", "/items?limit=1").status == 200
                for _ in range(6)), self.RECOVERY, 0.1)
            self.assertTrue(ok, "/items not served again: %r"
                            % s.request("GET", "/items?limit=1"))
            self.assertEqual(set(s.worker_pids()), set(fresh),
                             "served again without a restart")
            self.new_item("migrated")
        finally:
            if not restored:
                s.sql("INSERT IGNORE INTO items.schema_migrations SELECT * "
                      "FROM conditional_saved.row")
            s.sql("DROP DATABASE IF EXISTS conditional_saved")


if __name__ == "__main__":
    main()
