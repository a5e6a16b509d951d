"""Shared by the hostile-HTTP tests: raw-socket HTTP on loopback and a test
runner whose last line is `N passed, M failed`.

The stack itself comes from ctest/integration/stack.py (scripts/run-local.sh
on free loopback ports, stopped at exit). Everything here talks only to
127.0.0.1 (a second loopback source address, 127.0.0.2, stands for "another
client"), and every socket has a timeout.
"""

import json
import os
import re
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO_ROOT, "ctest", "integration"))

# The base class by its module, never by name: unittest runs every TestCase
# class it finds in a test module's namespace, a base class included.
import stack as harness  # noqa: E402  (path set just above)
from stack import Stack, StackError  # noqa: E402

# HostileTestCase is left out: a test file subclasses hostile.HostileTestCase.
__all__ = ["Stack", "StackError", "RawResponse", "raw_exchange", "connect",
           "read_response", "main", "REPO_ROOT"]


class RawResponse:
    """A response parsed from raw bytes: status (int, 0 when the server
    closed without answering), headers (lower-case names), body (bytes)."""

    def __init__(self, status=0, headers=None, body=b"", raw=b""):
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.raw = raw

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<RawResponse %d %r %r>" % (self.status, self.headers,
                                           self.body[:200])


def connect(port, timeout=10.0, source=None):
    """A TCP connection to 127.0.0.1:port, optionally from `source`
    (another loopback address such as 127.0.0.2)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _parse(raw):
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return RawResponse(raw=raw)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    if not m:
        return RawResponse(raw=raw)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers \
            else value
    body = rest
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            body += data[:size]
            data = data[size + 2:]
    elif "content-length" in headers:
        body = rest[:int(headers["content-length"].split(",")[0])]
    return RawResponse(int(m.group(1)), headers, body, raw)


def read_response(sock, deadline):
    """Read until the server closes the connection or a whole response
    (headers and Content-Length body, or a chunked body) has arrived."""
    raw = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not data:
            break
        raw += data
        r = _parse(raw)
        if r.status:
            te = r.headers.get("transfer-encoding", "").lower()
            cl = r.headers.get("content-length")
            head_len = raw.index(b"\r\n\r\n") + 4
            if cl is not None and len(raw) - head_len >= int(
                    cl.split(",")[0]):
                return r
            if te == "chunked" and raw.endswith(b"0\r\n\r\n"):
                return r
    return _parse(raw)


def raw_exchange(port, data, timeout=10.0, source=None):
    """Send raw request bytes on a new connection; return the RawResponse
    (status 0 when the server closed or reset without a response)."""
    deadline = time.monotonic() + timeout
    s = connect(port, timeout, source)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_response(s, deadline)
    finally:
        s.close()


class HostileTestCase(harness.StackTestCase):
    """One stack per class (setUpClass, logs printed when a test fails:
    see StackTestCase). Subclasses set `stack_options` (keyword arguments
    of Stack)."""

    @property
    def port(self):
        return self.stack.http_port

    def assertJSONError(self, r, status=None, statuses=None):
        """A JSON error body {"error": "..."} with the API's content type
        (application/json; charset=utf-8); `status` exact, or one of
        `statuses`."""
        if status is not None:
            self.assertEqual(r.status, status, r)
        if statuses is not None:
            self.assertIn(r.status, statuses, r)
        self.assertJSONType(r)
        try:
            data = json.loads(r.body.decode("utf-8"))
        except ValueError as e:
            self.fail("body is not JSON (%s): %r" % (e, r))
        self.assertIsInstance(data, dict, r)
        self.assertIsInstance(data.get("error"), str, r)
        return data["error"]

    def pool_log_requests(self):
        """(method, path) of every request line the workers logged."""
        out = []
        for line in self.stack.log_lines("pool.log"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "status" in entry and "method" in entry:
                out.append((entry.get("method"), entry.get("path")))
        return out


def main():
    """Run the module's tests; the last line is `N passed, M failed`
    (an expected failure counts as passed and is listed above it)."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules["__main__"])
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    # A test whose subtests failed counts once; a failed setUpClass fails
    # every test of its class that did not run.
    bad = set()
    for test, _ in result.failures + result.errors:
        test = getattr(test, "test_case", test)
        bad.add(test.id())
    failed = len(bad) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = max(0, result.testsRun - len([t for t in bad if "(" not in t])
                 - len(result.unexpectedSuccesses) - skipped)
    for test, reason in result.expectedFailures:
        first = reason.strip().splitlines()[-1] if reason.strip() else ""
        print("expected failure: %s: %s" % (test.id(), first))
    if skipped:
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    else:
        print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
