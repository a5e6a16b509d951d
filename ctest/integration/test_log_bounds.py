#!/usr/bin/env python3
"""The worker's access log line is bounded (docs/security.md, "Log lines"):
client-controlled fields of any length neither crash a worker nor make a
line that is not JSON or longer than PIPE_BUF (4096 bytes).

- Through nginx: methods of every length from 3,900 to 4,100 bytes (where an
  unchecked line builder once overflowed its stack buffer, once per pid
  width) on /items and /status: nginx itself answers 501 in JSON, nothing
  is a 502, and no worker is replaced.
- Straight to the worker's FastCGI socket (what a peer behind nginx can
  send): methods, paths and request ids of many lengths up to 64 KiB, with
  multi-byte UTF-8, quotes, backslashes, control characters and invalid
  bytes: the worker answers 404/405 in JSON, no worker is replaced, and each
  request's pool.log line is a JSON object of at most 4096 bytes whose
  method and path are cut to their bounds, marked with "..." and
  "truncated": true.
"""

import json
import os

import fcgi_client
import stack as harness
from stack import main, wait_until

LINE_MAX = 4096         # PIPE_BUF: LOG_LINE_MAX in fcgi-app/src/log.h
METHOD_MAX = 32         # LOG_METHOD_MAX
PATH_MAX = 1024         # LOG_PATH_MAX
REQUEST_ID_MAX = 64     # LOG_REQUEST_ID_MAX
MARKER = "..."
SERVER_FAILURES = (500, 502, 503, 504)

# Lengths across the bounds of each field, of the line, and far past them.
BIG = [8191, 8192, 16384, 32768, 65535, 65536]
METHOD_LENGTHS = sorted(set(range(0, 70)) | set(range(1000, 1030)) |
                        set(range(3900, 4200)) | set(BIG))
PATH_LENGTHS = sorted(set(range(8, 40)) | set(range(1000, 1100)) |
                      set(range(3900, 4200)) | set(BIG))
# Fillers whose escaped form is longer than the bytes sent, or that are
# not UTF-8 at all: (name, unit).
FILLERS = [
    ("e-acute", "\u00e9".encode()),         # 2 bytes
    ("euro", "\u20ac".encode()),            # 3 bytes
    ("emoji", "\U0001f600".encode()),       # 4 bytes
    ("quote", b'"'),                        # escaped as 2 bytes
    ("backslash", b"\\"),                   # 2 bytes
    ("control", b"\x01"),                   # 6 bytes (\u0001)
    ("invalid", b"\xff"),                   # 6 bytes (\ufffd)
    ("cut-sequence", b"\xe2\x82"),          # 2 x 6 bytes
    ("mixed", "a\u00e9\"\\\x1f\U0001f600".encode() + b"\xc0\x80"),
]
FILLER_LENGTHS = [1, 31, 32, 33, 1023, 1024, 1025, 4095, 4096, 4097, 65536]


def escaped(raw):
    """(escaped length, expected text) of raw bytes as the worker writes
    them in a JSON string: '"' and '\\' take 2 bytes, control characters
    and each byte that is not part of valid UTF-8 take 6 (the latter
    become U+FFFD)."""
    text = raw.decode("utf-8", "surrogateescape")
    size = 0
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":
            size += 6
            out.append("\ufffd")
            continue
        if c in "\"\\":
            size += 2
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            size += 6
        else:
            size += len(c.encode("utf-8"))
        out.append(c)
    return size, "".join(out)


def raw_length(raw, key):
    """Length of the JSON form of key's value, read in the raw line:
    ,"key":" cannot occur inside a value, whose quotes are all escaped."""
    pattern = b',"' + key.encode() + b'":"'
    i = raw.index(pattern) + len(pattern)
    n = 0
    while raw[i:i + 1] != b'"':
        step = 2 if raw[i:i + 1] == b"\\" else 1
        i += step
        n += step
    return n


def filled(unit, length):
    """`length` bytes made of `unit` repeated (the last copy may be cut)."""
    return (unit * (length // len(unit) + 1))[:length]


class LogBoundsTest(harness.StackTestCase):
    stack_options = {"workers": 2, "token": "log-bounds-token-0123456789"}

    # -- helpers -----------------------------------------------------------

    def fcgi_address(self):
        path = os.path.join(self.stack.run_dir, "api", "fcgi.sock")
        if os.path.exists(path):
            return path
        return ("127.0.0.1", self.stack.fcgi_port)

    def fcgi(self, method, path, request_id):
        params = {
            "REQUEST_METHOD": method,
            "DOCUMENT_URI": path,
            "REQUEST_URI": path,
            "QUERY_STRING": "",
            "CONTENT_TYPE": "",
            "CONTENT_LENGTH": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_ID": request_id,
        }
        return fcgi_client.request(self.fcgi_address(), params)

    def pool_log_from(self, offset):
        with open(self.stack.log_path("pool.log"), "rb") as f:
            f.seek(offset)
            return f.read()

    def pool_log_size(self):
        return os.path.getsize(self.stack.log_path("pool.log"))

    def assertJSONAnswer(self, r, status, what):
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        ctype = r.headers.get("content-type", "")
        self.assertTrue(ctype.startswith("application/json"),
                        "%s: %r" % (what, r))
        body = json.loads(r.body.decode("utf-8"))
        self.assertIsInstance(body, dict, what)
        self.assertIn("error", body, what)

    def lines_by(self, offset, key, wanted):
        """{value of `key`: [(entry, raw line)]} for every worker JSON line
        written after `offset`; asserts that each is a JSON object of at
        most LINE_MAX bytes (newline included). Waits until every value in
        `wanted` has a line."""
        found = {}

        def collect():
            found.clear()
            for raw in self.pool_log_from(offset).split(b"\n")[:-1]:
                if not raw.startswith(b"{"):
                    continue    # multiwatch and spawn-fcgi's own lines
                self.assertLessEqual(len(raw) + 1, LINE_MAX,
                                     "line of %d bytes" % (len(raw) + 1))
                entry = json.loads(raw.decode("utf-8"))
                self.assertIsInstance(entry, dict, raw[:200])
                if key in entry:
                    found.setdefault(entry[key], []).append((entry, raw))
            return all(w in found for w in wanted)
        wait_until(collect, 5.0)
        missing = [w for w in wanted if w not in found]
        self.assertEqual(missing[:5], [], "%d requests without a log line"
                         % len(missing))
        return found

    def assertBoundedField(self, found, key, sent, bound):
        """In the line `found` (entry, raw), entry[key] is the sent bytes as
        the worker logs them: whole when their escaped form fits in `bound`
        bytes, else cut to it and marked (a trailing "..." and
        "truncated": true)."""
        entry, raw = found
        what = "%s of %d bytes" % (key, len(sent))
        self.assertIn(key, entry, what)
        value = entry[key]
        self.assertIsInstance(value, str, what)
        length = raw_length(raw, key)
        self.assertLessEqual(length, bound, what)
        size, expected = escaped(sent)
        if size <= bound:
            self.assertEqual(value, expected, what)
            return
        self.assertTrue(value.endswith(MARKER), "%s: %r" % (what,
                                                            value[-40:]))
        self.assertIs(entry.get("truncated"), True, what)
        self.assertTrue(expected.startswith(value[:-len(MARKER)]), what)
        # Cut on a character boundary, as close to the bound as one
        # escaped character (at most 6 bytes) allows.
        self.assertGreater(length + 6, bound, what)

    # -- through nginx -------------------------------------------------------

    def test_method_length_sweep_through_nginx(self):
        pids = self.stack.worker_pids()
        statuses = {}
        failures = []
        bad = []
        for path in ("/items", "/status"):
            for n in range(3900, 4101):
                r = self.stack.request("X" * n, path)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status in SERVER_FAILURES:
                    failures.append((path, n, r.status))
                try:
                    self.assertJSONAnswer(r, 501, "method of %d" % n)
                    self.assertEqual(r.headers.get("x-content-type-options"),
                                     "nosniff", r)
                    self.assertIn("x-request-id", r.headers, r)
                except AssertionError as e:
                    bad.append((path, n, r.status, str(e)[:200]))
        self.assertEqual(failures, [], "statuses %r" % statuses)
        self.assertEqual(bad[:5], [], "%d of 402 answers wrong; statuses %r"
                         % (len(bad), statuses))
        self.assertEqual(self.stack.worker_pids(), pids,
                         "a worker died during the sweep")

    def test_known_methods_still_reach_the_worker(self):
        # The worker's own 405 and its Allow header, not nginx's 501.
        for method, path, allow in (("PATCH", "/items", "GET, HEAD, POST"),
                                    ("OPTIONS", "/status", "GET, HEAD"),
                                    ("DELETE", "/status", "GET, HEAD")):
            with self.subTest(method=method, path=path):
                r = self.stack.request(method, path)
                self.assertJSONAnswer(r, 405, method)
                self.assertEqual(r.headers.get("allow"), allow, r)

    # -- straight to the worker ----------------------------------------------

    def test_fastcgi_methods_of_every_length(self):
        pids = self.stack.worker_pids()
        offset = self.pool_log_size()
        sent = {}
        for n in METHOD_LENGTHS:
            sent["lb-m-%d" % n] = ("M" * n).encode()
        for name, unit in FILLERS:
            for n in FILLER_LENGTHS:
                sent["lb-m-%s-%d" % (name, n)] = filled(unit, n)
        for rid, method in sent.items():
            r = self.fcgi(method, "/items", rid)
            self.assertJSONAnswer(r, 405, rid)
            self.assertEqual(r.headers.get("allow"), "GET, HEAD, POST", rid)
        found = self.lines_by(offset, "request_id", sent)
        for rid, method in sent.items():
            self.assertEqual(len(found[rid]), 1, rid)
            entry = found[rid][0][0]
            self.assertEqual(entry.get("status"), 405, entry)
            self.assertBoundedField(found[rid][0], "method", method,
                                    METHOD_MAX)
            self.assertEqual(entry.get("path"), "/items", rid)
        self.assertEqual(self.stack.worker_pids(), pids,
                         "a worker died during the requests")

    def test_fastcgi_paths_of_every_length(self):
        pids = self.stack.worker_pids()
        offset = self.pool_log_size()
        sent = {}
        for n in PATH_LENGTHS:
            sent["lb-p-%d" % n] = filled(b"/items/x", n)
        for name, unit in FILLERS:
            for n in FILLER_LENGTHS:
                sent["lb-p-%s-%d" % (name, n)] = b"/items/" + filled(unit, n)
        # With a long method too: the route (404) is decided first.
        methods = {rid: b"GET" if len(path) % 2 else b"P" * len(path)
                   for rid, path in sent.items()}
        for rid, path in sent.items():
            r = self.fcgi(methods[rid], path, rid)
            self.assertJSONAnswer(r, 404, rid)
        found = self.lines_by(offset, "request_id", sent)
        for rid, path in sent.items():
            self.assertEqual(len(found[rid]), 1, rid)
            entry = found[rid][0][0]
            self.assertEqual(entry.get("status"), 404, entry)
            self.assertBoundedField(found[rid][0], "path", path, PATH_MAX)
            self.assertBoundedField(found[rid][0], "method", methods[rid],
                                    METHOD_MAX)
        self.assertEqual(self.stack.worker_pids(), pids,
                         "a worker died during the requests")

    def test_fastcgi_request_ids_of_every_length(self):
        pids = self.stack.worker_pids()
        offset = self.pool_log_size()
        sent = {}
        for n in sorted(set(range(0, 100)) | set(range(3900, 4200)) |
                        set(BIG)):
            sent["/items/rid%d" % n] = filled(b"rid%d-" % n, n)
        for path, rid in sent.items():
            r = self.fcgi(b"GET", path, rid)
            self.assertJSONAnswer(r, 404, path)
        found = self.lines_by(offset, "path", sent)
        for path, rid in sent.items():
            self.assertEqual(len(found[path]), 1, path)
            self.assertBoundedField(found[path][0], "request_id", rid,
                                    REQUEST_ID_MAX)
        self.assertEqual(self.stack.worker_pids(), pids,
                         "a worker died during the requests")


if __name__ == "__main__":
    main()
