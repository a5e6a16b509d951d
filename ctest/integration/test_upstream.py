#!/usr/bin/env python3
"""nginx in front of a pool that fails mid-request (docs/api.md "Failure
behaviour"):

- a worker killed while a request is in flight on it: nginx retries an
  idempotent request (GET) on another worker, and answers a POST 502 in
  JSON (never retried: its outcome is unknown);
- a pool that does not answer: 504 {"error":"the API did not answer in
  time"} after the upstream timeout, the bound derived from the rendered
  configuration (fastcgi_read_timeout x the attempts nginx makes).

A request is held in flight by `LOCK TABLES items WRITE` in a session of the
test's own; the worker waiting on that lock is found in MariaDB's process
list and matched to its process by the client port of its connection.
"""

# run.py: about 25 s (waits out nginx's upstream timeout)

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import stack as harness
from stack import alive, main, wait_until

WORKERS = 2
TOKEN = "upstream-token-31c7"
LOG_DEADLINE = 5.0        # nginx flushes its access log every 1 s
# The list statement waits on the lock at most lock_wait_timeout (1 s), a
# write at most max_statement_time (0.5 s): the victim must be found and
# killed well within that.
FIND_DEADLINE = 0.4


class TableLock:
    """`LOCK TABLES items WRITE` held by a mariadb client of our own until
    release()."""

    def __init__(self, stack):
        self.proc = subprocess.Popen(
            stack.mysql_args() + ["--unbuffered"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stdin.write(b"LOCK TABLES items WRITE;\n"
                              b"SELECT 'locked';\n")
        self.proc.stdin.flush()
        out, deadline = b"", time.monotonic() + 10.0
        while b"locked" not in out:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [],
                                        max(0.0, left))
            if not ready:
                self.release()
                raise harness.StackError("LOCK TABLES did not answer")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                err = self.proc.stderr.read()
                self.release()
                raise harness.StackError("LOCK TABLES failed: %r" % err)
            out += chunk
        self.locked_at = time.monotonic()

    def release(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"UNLOCK TABLES;\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def socket_inodes_of_port(port):
    """Inodes of the TCP sockets whose local port is `port`."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def pid_holding(inodes, pids):
    """The pid among `pids` with an open fd on one of the socket inodes."""
    wanted = {"socket:[%s]" % i for i in inodes}
    for pid in pids:
        fd_dir = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return pid
            except OSError:
                continue
    return None


class UpstreamTest(harness.StackTestCase):
    stack_options = {"workers": WORKERS, "token": TOKEN}

    def setUp(self):
        self.assertTrue(wait_until(
            lambda: self.stack.request("GET", "/status").status == 200, 15),
            "stack healthy before the test")
        self.assertEqual(len(self.stack.wait_workers(WORKERS)), WORKERS)

    # -- helpers -----------------------------------------------------------

    def connect_every_worker(self):
        """Each live worker has opened its database connection (its first
        connect would otherwise be part of what is measured)."""
        self.assertTrue(self.stack.connect_workers(WORKERS),
                        "not every worker connected to the database")

    def blocked_worker(self, workers):
        """The worker whose statement waits on the table lock, or None after
        FIND_DEADLINE."""
        def find():
            out = self.stack.sql(
                "SELECT HOST FROM information_schema.PROCESSLIST "
                "WHERE USER = 'items' AND STATE LIKE 'Waiting for table%'")
            for host in out.split():
                port = int(host.rsplit(":", 1)[1])
                pid = pid_holding(socket_inodes_of_port(port), workers)
                if pid is not None:
                    return pid
            return None
        return wait_until(find, FIND_DEADLINE, interval=0.01)

    def access_line(self, request_id):
        def find():
            for line in self.stack.log_lines("nginx-access.log"):
                if request_id in line:
                    return json.loads(line)
            return None
        line = wait_until(find, LOG_DEADLINE, interval=0.2)
        self.assertIsNotNone(line, "no access log line for %s" % request_id)
        return line

    def worker_line(self, request_id):
        def find():
            for line in self.stack.log_lines("pool.log"):
                if line.startswith("{") and request_id in line:
                    entry = json.loads(line)
                    if entry.get("request_id") == request_id:
                        return entry
            return None
        return wait_until(find, LOG_DEADLINE, interval=0.1)

    @staticmethod
    def upstream_times(line):
        """$upstream_response_time: one value per attempt ("a, b")."""
        return [t.strip() for t in re.split(r"[,:]", line["upstream_time"])
                if t.strip()]

    def kill_in_flight(self, method, path, body=None, headers=None):
        """Sends the request while the table is locked, kills -9 the worker
        it waits in, releases the lock; returns (response, victim)."""
        self.connect_every_worker()
        workers = self.stack.worker_pids()
        self.assertEqual(len(workers), WORKERS)
        result = {}

        def send():
            try:
                result["r"] = self.stack.request(method, path, body, headers,
                                                 timeout=20)
            except Exception as e:  # reported below
                result["error"] = e
        lock = TableLock(self.stack)
        try:
            thread = threading.Thread(target=send, daemon=True)
            thread.start()
            victim = self.blocked_worker(workers)
            self.assertIsNotNone(victim, "no worker found waiting on the "
                                 "table lock within %.1f s" % FIND_DEADLINE)
            # Still in flight: its statement waits on the lock we hold.
            self.assertEqual(result, {}, "answered before the kill")
            os.kill(victim, signal.SIGKILL)
            self.assertTrue(wait_until(lambda: not alive(victim), 2.0))
        finally:
            lock.release()
        thread.join(25)
        self.assertFalse(thread.is_alive(), "request never answered")
        self.assertNotIn("error", result)
        self.stack.wait_workers(WORKERS, exclude=[victim])
        return result["r"], victim

    # -- tests -------------------------------------------------------------

    def test_get_in_flight_on_killed_worker_is_retried(self):
        """docs/api.md: "nginx retries an idempotent request (GET, HEAD, PUT,
        DELETE) that was in flight on the crashed worker on another worker".
        A GET /items blocked in a worker on a table lock; the worker is
        killed -9: the client still gets 200 with the items, answered by
        the other worker after a second attempt (nginx's log shows two)."""
        expected = self.stack.request("GET", "/items")
        self.assertEqual(expected.status, 200, expected)
        r, victim = self.kill_in_flight("GET", "/items")
        self.assertEqual(self.assertJSON(r, 200), expected.json())
        rid = r.headers["x-request-id"]
        line = self.access_line(rid)
        self.assertEqual(line["status"], 200, line)
        self.assertEqual(len(self.upstream_times(line)), 2, line)
        entry = self.worker_line(rid)
        self.assertIsNotNone(entry, "no worker log line for %s" % rid)
        self.assertNotEqual(entry["pid"], victim, entry)
        self.assertEqual(entry["status"], 200, entry)

    def test_post_in_flight_on_killed_worker_is_502(self):
        """docs/api.md: "a POST in flight gets 502, an unknown outcome like
        504": nginx never sends a POST twice. A POST blocked in a worker on
        a table lock; the worker is killed -9: 502 {"error":"the API is
        unavailable"}, one attempt in nginx's log, no-store."""
        r, _ = self.kill_in_flight("POST", "/items",
                                   {"name": "in flight on a killed worker"},
                                   self.stack.auth())
        self.assertEqual(self.assertJSON(r, 502),
                         {"error": "the API is unavailable"})
        self.assertIn("no-store", r.headers.get("cache-control", ""), r)
        line = self.access_line(r.headers["x-request-id"])
        self.assertEqual(line["status"], 502, line)
        self.assertEqual(len(self.upstream_times(line)), 1, line)

    def derived_timeout(self):
        """(seconds, attempts, seconds per attempt): how long nginx waits
        for a pool that never answers, from the configuration in use:
        fastcgi_read_timeout per attempt; more than one attempt when
        fastcgi_next_upstream has `timeout`, up to
        fastcgi_next_upstream_tries and the servers of the upstream block."""
        conf_dir = os.path.join(self.stack.run_dir, "nginx")
        with open(os.path.join(conf_dir, "items-fastcgi.conf")) as f:
            fcgi = f.read()
        # The static upstream block is rendered into its own include file.
        with open(os.path.join(conf_dir, "items-upstream.conf")) as f:
            main_conf = f.read()

        def directive(name):
            # items-fastcgi.conf, or items-upstream.conf (http level: the tries)
            m = re.search(r"^\s*%s\s+([^;]+);" % name, fcgi + "\n" + main_conf, re.M)
            return m.group(1).strip() if m else None

        def seconds(value):
            m = re.fullmatch(r"(\d+)(ms|s|m)?", value)
            self.assertIsNotNone(m, value)
            n, unit = int(m.group(1)), m.group(2) or "s"
            return n / 1000.0 if unit == "ms" else n * (60 if unit == "m"
                                                        else 1)
        read_timeout = seconds(directive("fastcgi_read_timeout") or "60s")
        self.assertIsNone(directive("fastcgi_next_upstream_timeout"),
                          "derive the bound with the next-upstream timeout")
        upstream = re.search(r"upstream\s+items_api\s*\{(.*?)\}", main_conf,
                             re.S)
        self.assertIsNotNone(upstream)
        servers = len(re.findall(r"^\s*server\s", upstream.group(1), re.M))
        attempts = 1
        if "timeout" in (directive("fastcgi_next_upstream") or "").split():
            tries = int(directive("fastcgi_next_upstream_tries") or "0")
            attempts = min(tries or servers, servers)
        return read_timeout * attempts, attempts, read_timeout

    def test_pool_that_does_not_answer_is_504(self):
        """docs/api.md: "a worker that does not answer within 10 s: 504".
        Every worker stopped (SIGSTOP; the socket still accepts): GET
        /status answers 504 {"error":"the API did not answer in time"} in
        JSON with no-store, after the bound the configuration gives (each
        attempt waits fastcgi_read_timeout), not sooner and not much later;
        the pool serves again once resumed."""
        bound, attempts, per_try = self.derived_timeout()
        workers = self.stack.worker_pids()
        self.assertEqual(len(workers), WORKERS)
        stopped = []
        try:
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            r = self.stack.request("GET", "/status", timeout=bound + 15)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        self.assertEqual(self.assertJSON(r, 504),
                         {"error": "the API did not answer in time"})
        self.assertIn("no-store", r.headers.get("cache-control", ""), r)
        sys.stderr.write("\n504 after %.2fs (bound %.1fs = %d x %.1fs)\n"
                         % (r.elapsed, bound, attempts, per_try))
        self.assertGreaterEqual(r.elapsed, bound - 0.5, r)
        self.assertLess(r.elapsed, bound + 3.0, r)
        line = self.access_line(r.headers["x-request-id"])
        self.assertEqual(line["status"], 504, line)
        times = self.upstream_times(line)
        self.assertEqual(len(times), attempts, line)
        for t in times:
            self.assertAlmostEqual(float(t), per_try, delta=1.0, msg=line)
        self.assertTrue(wait_until(
            lambda: self.stack.request("GET", "/status").status == 200, 15),
            "the pool does not serve after SIGCONT")
        self.assertEqual(self.stack.worker_pids(), workers)


if __name__ == "__main__":
    main()
