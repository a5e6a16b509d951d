#!/usr/bin/env python3
"""Rules of docs/api.md that had no test, checked through nginx against a
real stack (and, for the worker's own guards, over its FastCGI socket):

- `Cache-Control: no-store` on every API answer, and not on the page;
- nginx's access log: one JSON object per line with every field of its
  `log_format json`, the request id the client saw in X-Request-ID;
- the worker's log: `level`/`pid` on every line, the request line's fields,
  and the database loss and recovery messages;
- the order of the write checks (route, method, token, media type 415,
  size 413, body 400), and the worker's own 413 guard at 128 KiB + 1 byte.
"""

import json
import os
import re
import signal
import time

import fcgi_client
import stack as harness
from stack import alive, main, run_concurrently, wait_until

TOKEN = "contract-token-5f1e9a"
WORKERS = 2
BODY_MAX = 128 * 1024            # docs/api.md: "At most 128 KiB"
LOG_DEADLINE = 5.0               # nginx flushes its access log every 1 s
DB_DEADLINE = 5.0                # for the worker's outage messages
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")
NGINX_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                           r"(Z|[+-]\d{2}:\d{2})$")
WORKER_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                            r"(\.\d+)?Z$")
LEVELS = {"debug", "info", "warn", "error"}
# docs/api.md "Logs": what a request line of the worker has.
REQUEST_LINE_KEYS = {"time", "level", "pid", "request_id", "method",
                     "status", "duration_ms", "path"}


def cache_directives(r):
    value = r.headers.get("cache-control", "")
    return [d.strip().lower() for d in value.split(",") if d.strip()]


def parse_json_lines(lines):
    """(objects, bad lines) of the lines that start with "{" (spawn-fcgi and
    multiwatch write plain text to the same file)."""
    good, bad = [], []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        (good if isinstance(obj, dict) else bad).append(obj)
    return good, bad


def access_log_keys(run_dir):
    """The field names of `log_format json` in the nginx.conf in use."""
    with open(os.path.join(run_dir, "nginx", "nginx.conf")) as f:
        conf = f.read()
    m = re.search(r"log_format\s+json\b(.*?);\s*$", conf, re.S | re.M)
    if m is None:
        raise AssertionError("no log_format json in the rendered nginx.conf")
    return re.findall(r'"(\w+)":', m.group(1))


class ContractTest(harness.StackTestCase):
    stack_options = {"workers": WORKERS, "token": TOKEN}

    def setUp(self):
        self.assertEqual(self.stack.request("GET", "/status").status, 200,
                         "stack healthy before the test")

    # -- helpers -----------------------------------------------------------

    def fcgi(self, method, path, body=b"", content_type=None, token=TOKEN):
        """One request straight to the pool's unix socket, with the
        parameters nginx would pass (items-fastcgi.conf)."""
        params = {
            "REQUEST_METHOD": method, "DOCUMENT_URI": path,
            "REQUEST_URI": path, "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_ID": "direct-%d" % time.monotonic_ns(),
            "CONTENT_LENGTH": str(len(body)),
        }
        if content_type is not None:
            params["CONTENT_TYPE"] = content_type
        if token is not None:
            params["HTTP_AUTHORIZATION"] = "Bearer " + token
        sock = os.path.join(self.stack.run_dir, "api", "fcgi.sock")
        return fcgi_client.request(sock, params, body, timeout=10.0)

    def assertFcgiError(self, r, status):
        self.assertEqual(r.status, status, r)
        mime = r.headers.get("content-type", "").split(";")[0].strip()
        self.assertEqual(mime, "application/json", r)
        data = json.loads(r.body.decode("utf-8"))
        self.assertEqual(set(data), {"error"}, r)
        self.assertTrue(data["error"].strip(), r)
        return data["error"]

    @staticmethod
    def body_of_size(name, size):
        """A valid item body of exactly `size` bytes (white space padding,
        which JSON allows between tokens)."""
        head, tail = '{"name":%s,' % json.dumps(name), '"description":null}'
        pad = size - len(head) - len(tail)
        assert pad >= 0
        return (head + " " * pad + tail).encode("ascii")

    def worker_log_entries(self, since=0):
        objs, bad = parse_json_lines(self.stack.log_lines("pool.log")[since:])
        self.assertEqual(bad, [], "pool.log lines that are not JSON objects")
        return objs

    def wait_worker_msg(self, pattern, since, deadline, poke=None):
        """The first worker log line after line `since` whose msg matches;
        `poke()` is called between polls (to make the workers act)."""
        regex = re.compile(pattern)

        def found():
            for e in self.worker_log_entries(since):
                if isinstance(e.get("msg"), str) and regex.search(e["msg"]):
                    return e
            if poke is not None:
                poke()
            return None
        return wait_until(found, deadline, interval=0.1)

    def connect_every_worker(self):
        """Each live worker has opened its database connection (its first
        connect would otherwise be part of what is measured)."""
        self.assertTrue(self.stack.connect_workers(WORKERS),
                        "not every worker connected to the database")

    # -- 1. Cache-Control --------------------------------------------------

    def test_cache_control_no_store_on_every_api_answer(self):
        """docs/api.md: "API responses carry Cache-Control: no-store": the
        worker's answers (reads, writes, its errors) and nginx's own errors
        on API paths. A cached 200 of /status or of an item would hide an
        outage or a write from the next reader."""
        item = self.stack.create("cache-control", "kept")
        auth = self.stack.auth()
        valid = {"name": "cache-control put"}
        cases = [
            ("GET", "/status", None, {}, 200),
            ("HEAD", "/status", None, {}, 200),
            ("GET", "/items", None, {}, 200),
            ("GET", "/items?limit=1", None, {}, 200),
            ("HEAD", "/items", None, {}, 200),
            ("GET", "/items/%d" % item["id"], None, {}, 200),
            ("HEAD", "/items/%d" % item["id"], None, {}, 200),
            ("GET", "/items/2147483647", None, {}, 404),
            ("GET", "/items/abc", None, {}, 404),
            ("GET", "/status/nope", None, {}, 404),
            ("GET", "/items?limit=0", None, {}, 400),
            ("PATCH", "/items", None, {}, 405),
            ("OPTIONS", "/status", None, {}, 405),
            ("POST", "/items", valid, {"Content-Type": "application/json"},
             401),
            ("POST", "/items", valid, self.stack.auth(
                {"Content-Type": "text/plain"}), 415),
            ("POST", "/items", "{", auth, 400),
            ("POST", "/items", {"name": "cache-control post"}, auth, 201),
            ("PUT", "/items/%d" % item["id"], valid, auth, 200),
            # nginx's own answer from a named location
            ("POST", "/items", b"x" * (BODY_MAX + 1), auth, 413),
            ("DELETE", "/items/%d" % item["id"], None, auth, 204),
        ]
        for method, path, body, headers, status in cases:
            with self.subTest(method=method, path=path, status=status):
                r = self.stack.request(method, path, body, headers)
                self.assertEqual(r.status, status, r)
                self.assertIn("no-store", cache_directives(r), r)
                self.assertRegex(r.headers.get("x-request-id", ""),
                                 REQUEST_ID_RE, r)

    def test_cache_control_no_store_on_nginx_errors_of_api_paths(self):
        """The same rule for the errors nginx answers itself on /status and
        /items through an internal URI (/.errors/*.json): a method it does
        not implement (501), a request line too long (414), headers too
        large (400). They are answers to API requests: no-store."""
        cases = [
            ("FOO", "/items", {}, 501),
            ("FOO", "/status", {}, 501),
            ("GET", "/items?q=" + "a" * 9000, {}, 414),
            ("GET", "/status", {"X-Big": "a" * 9000}, 400),
        ]
        for method, path, headers, status in cases:
            with self.subTest(method=method, path=path[:20], status=status):
                r = self.stack.request(method, path, None, headers)
                self.assertError(r, status)
                self.assertIn("no-store", cache_directives(r), r)

    def test_page_is_not_no_store(self):
        """The page (static, nginx) may be kept by a browser: it revalidates
        (nginx.conf.template's map), it is never no-store, and it still has
        a Cache-Control (the map has a default)."""
        for path in ("/", "/index.html", "/app.js", "/style.css"):
            for method in ("GET", "HEAD"):
                with self.subTest(method=method, path=path):
                    r = self.stack.request(method, path)
                    self.assertEqual(r.status, 200, r)
                    directives = cache_directives(r)
                    self.assertTrue(directives, "no Cache-Control: %r" % r)
                    self.assertNotIn("no-store", directives, r)

    # -- 3. nginx's access log ---------------------------------------------

    def test_nginx_access_log_is_json_with_the_request_id(self):
        """docs/api.md: nginx's access log is JSON. Every line parses, has
        exactly the fields of `log_format json`, and the line of each request
        carries the X-Request-ID the client got, its method, raw URI (quotes
        and backslashes escaped, not breaking the line) and status."""
        keys = access_log_keys(self.stack.run_dir)
        self.assertTrue({"time", "request_id", "method", "uri", "status"}
                        <= set(keys), keys)
        self.assertEqual(len(keys), len(set(keys)), keys)
        item = self.stack.create("access-log")
        requests = [
            ("GET", "/status", None, {}),
            ("GET", "/items?limit=2&after=0", None, {}),
            ("HEAD", "/items/%d" % item["id"], None, {}),
            ("GET", "/items/abc", None, {}),
            ("POST", "/items", {"name": "x"},
             {"Content-Type": "application/json"}),
            ("GET", '/items?limit=1&q="quoted"\\back', None, {}),
            ("GET", "/", None, {}),
        ]
        sent = {}
        for method, path, body, headers in requests:
            r = self.stack.request(method, path, body, headers)
            rid = r.headers.get("x-request-id", "")
            self.assertRegex(rid, REQUEST_ID_RE, r)
            self.assertNotIn(rid, sent, "request id reused")
            sent[rid] = (method, path, r)

        def logged():
            objs, bad = parse_json_lines(
                self.stack.log_lines("nginx-access.log"))
            mine = {o.get("request_id"): o for o in objs
                    if o.get("request_id") in sent}
            return (objs, bad, mine) if len(mine) == len(sent) else None
        result = wait_until(logged, LOG_DEADLINE, interval=0.2)
        self.assertIsNotNone(result, "not every request in nginx-access.log "
                             "within %.0f s" % LOG_DEADLINE)
        objs, bad, mine = result
        lines = self.stack.log_lines("nginx-access.log")
        self.assertEqual(bad, [], "access log lines that are not JSON")
        self.assertEqual(len(objs), len(lines),
                         "access log lines that are not JSON objects")
        for obj in objs:
            self.assertEqual(list(obj), keys, obj)
        for rid, (method, path, r) in sent.items():
            with self.subTest(method=method, path=path):
                line = mine[rid]
                self.assertEqual(line["request_id"], rid)
                self.assertEqual(line["method"], method, line)
                self.assertEqual(line["uri"], path, line)
                self.assertIs(type(line["status"]), int, line)
                self.assertEqual(line["status"], r.status, line)
                self.assertRegex(line["time"], NGINX_TIME_RE, line)
                self.assertEqual(line["remote_addr"], "127.0.0.1", line)
                self.assertIs(type(line["bytes"]), int, line)
                self.assertEqual(line["bytes"], len(r.body), line)
                self.assertIsInstance(line["request_time"], (int, float))
                self.assertGreaterEqual(line["request_time"], 0)
                self.assertIsInstance(line["upstream_time"], str, line)
                if path.startswith(("/items", "/status")):
                    self.assertRegex(line["upstream_time"], r"^\d+\.\d+$",
                                     line)
                else:
                    self.assertIn(line["upstream_time"], ("", "-"), line)

    def test_nginx_access_log_keeps_the_client_method(self):
        """The access log line of a request nginx refuses itself (501 for a
        method the API does not implement) names the method the client
        sent, not the GET of nginx's internal redirect to the error body:
        the log is where an operator looks for who sent what."""
        r = self.stack.request("FOO", "/items")
        self.assertError(r, 501)
        rid = r.headers.get("x-request-id", "")

        def logged():
            objs, _ = parse_json_lines(
                self.stack.log_lines("nginx-access.log"))
            return next((o for o in objs if o.get("request_id") == rid), None)
        line = wait_until(logged, LOG_DEADLINE, interval=0.2)
        self.assertIsNotNone(line, "no access log line for %s" % rid)
        self.assertEqual((line["method"], line["uri"], line["status"]),
                         ("FOO", "/items", 501), line)

    # -- 4. the worker's log -----------------------------------------------

    def test_worker_request_lines_have_level_and_pid(self):
        """docs/api.md "Logs": a worker's request line has time, level, pid,
        request_id, method, status, duration_ms and path; level is "info"
        and pid is a live worker's. Every JSON line of the pool's log has a
        time, a known level and an integer pid."""
        self.connect_every_worker()
        workers = set(self.stack.worker_pids())
        sent = {}
        for method, path, body, headers in (
                ("GET", "/status", None, {}),
                ("GET", "/items/abc", None, {}),
                ("POST", "/items", {"name": "x"},
                 {"Content-Type": "application/json"}),
                ("GET", "/items?limit=1", None, {})):
            r = self.stack.request(method, path, body, headers)
            sent[r.headers["x-request-id"]] = (method, path, r.status)

        def logged():
            mine = {e["request_id"]: e for e in self.worker_log_entries()
                    if e.get("request_id") in sent}
            return mine if len(mine) == len(sent) else None
        mine = wait_until(logged, LOG_DEADLINE, interval=0.1)
        self.assertIsNotNone(mine, "request lines missing from pool.log")
        for rid, (method, path, status) in sent.items():
            with self.subTest(method=method, path=path):
                e = mine[rid]
                self.assertTrue(REQUEST_LINE_KEYS <= set(e), e)
                self.assertEqual(e["level"], "info", e)
                self.assertIs(type(e["pid"]), int, e)
                self.assertIn(e["pid"], workers, e)
                self.assertTrue(alive(e["pid"]), e)
                self.assertEqual((e["method"], e["path"], e["status"]),
                                 (method, path.split("?")[0], status), e)
                self.assertIsInstance(e["duration_ms"], (int, float), e)
                self.assertGreaterEqual(e["duration_ms"], 0, e)
                self.assertRegex(e["time"], WORKER_TIME_RE, e)
        for e in self.worker_log_entries():
            self.assertIn(e.get("level"), LEVELS, e)
            self.assertIs(type(e.get("pid")), int, e)
            self.assertRegex(str(e.get("time")), WORKER_TIME_RE, e)

    def test_worker_logs_database_loss_and_recovery(self):
        """docs/api.md "Logs": database loss (`database connection lost`,
        `database unreachable`) and recovery (`database connection restored
        after N s`) each have a msg, with level and pid. Stops the database:
        a worker holding a connection loses it; a fresh worker (the first
        one is killed and replaced during the outage) finds it unreachable;
        after the restart the first message's worker reports the outage's
        length."""
        self.connect_every_worker()
        since = len(self.stack.log_lines("pool.log"))
        workers = self.stack.worker_pids()

        def poke():
            self.stack.request("GET", "/items?limit=1")

        self.stack.db_stop()
        down_at = time.monotonic()
        try:
            lost = self.wait_worker_msg(r"^database connection lost\b",
                                        since, DB_DEADLINE, poke)
            self.assertIsNotNone(lost, "no 'database connection lost'")
            lost_at = time.monotonic()
            # A worker that never had a connection: the database is
            # unreachable to it.
            victim = workers[0] if workers[0] != lost["pid"] else workers[1]
            os.kill(victim, signal.SIGKILL)
            fresh = self.stack.wait_workers(WORKERS, exclude=[victim])
            self.assertNotIn(victim, fresh)
            unreachable = self.wait_worker_msg(r"^database unreachable\b",
                                               since, DB_DEADLINE, poke)
            self.assertIsNotNone(unreachable, "no 'database unreachable'")
        finally:
            self.stack.db_start()
        up_at = time.monotonic()
        restored = self.wait_worker_msg(
            r"^database connection restored after \d+(\.\d+)? s$", since,
            DB_DEADLINE, lambda: run_concurrently(
                2 * WORKERS, lambda i: self.stack.request("GET", "/status")))
        self.assertIsNotNone(restored, "no 'database connection restored'")
        outage = float(restored["msg"].split()[4])
        self.assertGreater(outage, 0.0, restored)
        # Measured from the moment that worker saw the loss (after the stop,
        # before its line was found) to its reconnection (after the start,
        # before its line was found); 1 s for rounding and polling.
        self.assertLessEqual(outage, time.monotonic() - down_at + 1.0,
                             restored)
        self.assertGreaterEqual(outage, up_at - lost_at - 1.0, restored)
        for e in (lost, unreachable, restored):
            self.assertIn(e["level"], LEVELS, e)
            self.assertIs(type(e["pid"]), int, e)
            self.assertIn(e["pid"], set(workers) | set(fresh), e)
            self.assertRegex(e["time"], WORKER_TIME_RE, e)
        self.assertIn(unreachable["pid"], fresh, unreachable)
        self.assertNotEqual(unreachable["pid"], lost["pid"], unreachable)
        self.assertEqual(restored["pid"], lost["pid"], (lost, restored))
        self.assertTrue(wait_until(
            lambda: self.stack.request("GET", "/status").status == 200, 5.0))

    # -- 5. order of the write checks --------------------------------------

    def test_oversized_body_refused_first_by_nginx(self):
        """docs/api.md: a body over 128 KiB is refused by nginx with 413
        before anything else is checked (client_max_body_size: the body is
        never read, no worker is used, the token is not tried); the order
        route, method, token, media type, size, body is the worker's, for
        what nginx lets through (test_worker_check_order_direct)."""
        big = b"x" * (BODY_MAX + 4096)
        for name, headers in (
                ("wrong media type", self.stack.auth(
                    {"Content-Type": "text/plain"})),
                ("no token", {"Content-Type": "application/json"}),
                ("valid token and type", self.stack.auth())):
            with self.subTest(name):
                r = self.stack.request("POST", "/items", big, headers)
                self.assertError(r, 413, "larger than 128 KiB")

    def test_worker_check_order_direct(self):
        """The worker's own order, over FastCGI (no nginx size limit in the
        way): token before media type, media type (415) before size (413),
        size (413) before the body's validation (400)."""
        big = b"x" * (BODY_MAX + 4096)      # too large and not JSON
        cases = [
            ("POST", "/items", big, "text/plain", TOKEN, 415),
            ("PUT", "/items/1", big, "text/plain", TOKEN, 415),
            ("POST", "/items", big, "application/json", TOKEN, 413),
            ("PUT", "/items/1", big, "application/json; charset=utf-8",
             TOKEN, 413),
            ("POST", "/items", big, "text/plain", None, 401),
            ("POST", "/items", big, "text/plain", "wrong-token", 401),
            ("POST", "/items", b"{", "text/plain", TOKEN, 415),
            ("POST", "/items", b"{", "application/json", TOKEN, 400),
            ("POST", "/status", big, "text/plain", None, 405),
            ("POST", "/items/abc", big, "text/plain", None, 404),
        ]
        for method, path, body, ctype, token, status in cases:
            with self.subTest(method=method, path=path, ctype=ctype,
                              token=token, size=len(body)):
                self.assertFcgiError(self.fcgi(method, path, body, ctype,
                                               token), status)

    # -- 6. the worker's own size guard ------------------------------------

    def test_worker_size_guard_direct(self):
        """The worker's second guard, on real input over its socket: a valid
        write of exactly 128 KiB is accepted (201), one byte more is 413
        JSON and writes nothing."""
        name_ok, name_big = "size-edge-%d" % os.getpid(), "size-over"
        r = self.fcgi("POST", "/items", self.body_of_size(name_ok, BODY_MAX),
                      "application/json")
        self.assertEqual(r.status, 201, r)
        created = json.loads(r.body.decode("utf-8"))
        self.assertEqual(created["name"], name_ok)
        r = self.fcgi("POST", "/items",
                      self.body_of_size(name_big, BODY_MAX + 1),
                      "application/json")
        self.assertFcgiError(r, 413)
        r = self.fcgi("PUT", "/items/%d" % created["id"],
                      self.body_of_size(name_big, BODY_MAX + 1),
                      "application/json")
        self.assertFcgiError(r, 413)
        self.assertEqual(self.stack.sql(
            "SELECT COUNT(*) FROM items WHERE name = 'size-over'").strip(),
            "0")
        got = self.stack.request("GET", "/items/%d" % created["id"])
        self.assertEqual(self.assertJSON(got, 200), created)

    def test_size_limit_through_nginx(self):
        """The same edge through nginx: exactly 128 KiB is a write, one byte
        more is nginx's 413 in JSON."""
        r = self.stack.request("POST", "/items",
                               self.body_of_size("nginx-edge", BODY_MAX),
                               self.stack.auth())
        self.assertEqual(self.assertJSON(r, 201)["name"], "nginx-edge")
        r = self.stack.request("POST", "/items",
                               self.body_of_size("nginx-over", BODY_MAX + 1),
                               self.stack.auth())
        self.assertError(r, 413)
        self.assertEqual(self.stack.sql(
            "SELECT COUNT(*) FROM items WHERE name = 'nginx-over'").strip(),
            "0")


if __name__ == "__main__":
    main()
