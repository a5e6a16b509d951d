#!/usr/bin/env python3
"""SIGTERM of the pool supervisor: the request in flight finishes (200), the
supervisor and every worker exit within a few seconds, each worker by the
path that exits 0 (its last line "worker stopped after N requests"), and
nginx then answers 502 {"error":"the API is unavailable"} for API paths
while still serving the static page (docs/api.md, "Failure behaviour").
This kills the pool, so it owns its stack."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest

import stack as harness
from stack import main, wait_until, alive, proc_state

WORKERS = 2
EXIT_SECONDS = 5.0


class ShutdownTest(harness.StackTestCase):
    stack_options = {"workers": WORKERS, "token": "shutdown-token-5150"}

    def lock_items_table(self):
        """A root session holding LOCK TABLES items WRITE; returns the
        client process once the lock is held."""
        proc = subprocess.Popen(self.stack.mysql_args() + ["--unbuffered"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.addCleanup(self.unlock, proc)
        proc.stdin.write("LOCK TABLES items WRITE;\nSELECT 'locked';\n")
        proc.stdin.flush()
        line = proc.stdout.readline()  # bounded: the lock is uncontended
        self.assertEqual(line.strip(), "locked", "mariadb client: %r" % line)
        return proc

    @staticmethod
    def unlock(proc):
        if proc.poll() is None:
            try:
                proc.stdin.write("UNLOCK TABLES;\n")
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()

    def waiting_queries(self):
        out = self.stack.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE STATE LIKE '%metadata lock%' OR STATE LIKE '%table lock%'")
        return int(out.strip() or 0)

    def worker_log(self, pid):
        """The JSON lines worker `pid` wrote in pool.log, in order."""
        entries = []
        for line in self.stack.log_lines("pool.log"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("pid") == pid:
                entries.append(entry)
        return entries

    def assertStoppedCleanly(self, pid):
        """Worker `pid` returned 0 from main(). Its exit status itself is
        multiwatch's, which reaps it and keeps it to itself; what a worker
        writes on that path is, last, "worker stopped after N requests"
        with N its own request lines, and never "accepting a FastCGI request
        failed" (the exit 1 path) nor an error; a sanitizer report (LeakSan
        at exit turns the status non-zero) fails the test below and the
        class cleanup."""
        entries = self.worker_log(pid)
        requests = [e for e in entries if "status" in e and "method" in e]
        messages = [e["msg"] for e in entries if "msg" in e]
        self.assertTrue(messages, "worker %d wrote nothing" % pid)
        self.assertEqual(messages[-1], "worker stopped after %d requests"
                         % len(requests), entries)
        self.assertEqual([m for m in messages if "accepting" in m], [],
                         entries)
        self.assertEqual([e for e in entries
                          if e.get("level") not in ("info", "debug")], [],
                         entries)
        return requests

    def test_sigterm_finishes_in_flight_request_and_exits(self):
        item = self.stack.create("in flight", "answered after SIGTERM")
        pool = self.stack.pool_pid()
        workers = self.stack.wait_workers(WORKERS)
        self.assertEqual(len(workers), WORKERS, workers)
        self.assertEqual(self.stack.request("GET", "/items").status, 200)

        # 1. A request blocked inside a worker, on a table lock.
        lock = self.lock_items_table()
        result = {}

        def in_flight():
            try:
                result["r"] = self.stack.request(
                    "GET", "/items/%d" % item["id"], timeout=30)
            except Exception as e:
                result["r"] = e
        t = threading.Thread(target=in_flight, daemon=True)
        t.start()
        self.assertTrue(wait_until(self.waiting_queries, 5.0),
                        "the request never reached the database")

        # 2. SIGTERM to the supervisor; the idle worker(s) go first, the
        # busy one stays while its request waits.
        def only_one_left():
            live = [p for p in workers if alive(p)]
            return live if len(live) == 1 else None
        os.kill(pool, signal.SIGTERM)
        left = wait_until(only_one_left, EXIT_SECONDS)
        self.assertTrue(left, "idle workers still alive (or none left) "
                        "%.0f s after SIGTERM: %s" % (
                            EXIT_SECONDS, [p for p in workers if alive(p)]))
        busy = left[0]
        self.assertNotIn("r", result, "the request was not in flight")

        # 3. Release the lock: the in-flight request must complete normally.
        self.unlock(lock)
        t.join(15)
        self.assertFalse(t.is_alive(), "in-flight request never answered")
        r = result.get("r")
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(self.assertJSON(r, 200), item)

        # 4. Everything exits, each worker with status 0.
        gone = wait_until(
            lambda: not alive(pool) and not any(alive(p) for p in workers),
            EXIT_SECONDS)
        self.assertTrue(gone, "pool %d / workers %s still alive %.0f s after "
                        "SIGTERM" % (pool, [p for p in workers if alive(p)],
                                     EXIT_SECONDS))
        self.assertNoSanitizerReports()  # leak checks run at a clean exit
        for pid in workers:
            with self.subTest(worker=pid):
                requests = self.assertStoppedCleanly(pid)
                if pid == busy:
                    self.assertEqual(
                        [(e["method"], e["path"], e["status"])
                         for e in requests][-1:],
                        [("GET", "/items/%d" % item["id"], 200)])
        # Each worker closed its DB connection (else mariadbd logs "Aborted
        # connection ... user: 'items'"); mariadbd logs it asynchronously.
        aborted = wait_until(lambda: [
            line for line in self.stack.log_lines("mariadb.log")
            if "Aborted connection" in line and "'items'" in line], 1.0)
        self.assertEqual(aborted, [], "a worker exited without closing its "
                         "database connection")

        # 5. The pool is down: nginx answers 502 {"error":"the API is
        # unavailable"} for every API route and method (nothing hangs), and
        # still serves the page.
        body = json.dumps({"name": "nobody home"})
        for method, path, data, headers in (
                ("GET", "/items", None, {}),
                ("GET", "/status", None, {}),
                ("GET", "/items/%d" % item["id"], None, {}),
                ("POST", "/items", body, self.stack.auth()),
                ("PUT", "/items/%d" % item["id"], body, self.stack.auth()),
                ("DELETE", "/items/%d" % item["id"], None,
                 self.stack.auth())):
            with self.subTest(method=method, path=path):
                r = self.stack.request(method, path, data, headers)
                self.assertEqual(self.assertJSON(r, 502),
                                 {"error": "the API is unavailable"})
                self.assertIn("x-request-id", r.headers)
        r = self.stack.request("GET", "/")
        self.assertEqual(r.status, 200)


class RepeatedStopSignalTest(unittest.TestCase):
    """Stop signals in quick succession to an idle worker: it closes its
    listening socket once (by a second close, descriptor 0 could belong to
    something else) and exits 0 with its "worker stopped" line. The worker
    runs alone on a listening socket of its own, as spawn-fcgi starts it, so
    that its exit status is ours to read; it needs no database while idle."""

    BURSTS = (
        (signal.SIGUSR1, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1),
        (signal.SIGINT, signal.SIGUSR1),
    )

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="items-it-signals-")
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name

    def start_idle_worker(self, name, trace=None):
        """A worker on a fresh listening socket, once it waits in accept();
        returns (process, worker's pid, path of its log). With `trace`, the
        worker runs under strace, which writes its close() calls there (the
        process is then strace, whose exit status is the worker's)."""
        log_path = os.path.join(self.tmp, name + ".log")
        env = harness.lone_worker_env({
            "DB_HOST": "127.0.0.1", "DB_PORT": "9", "MYSQL_DATABASE": "items",
            "MYSQL_USER": "items", "MYSQL_PASSWORD": "unused",
            "METRICS_FILE": os.path.join(self.tmp, name + ".metrics"),
        })
        argv = [harness.WORKER_BINARY]
        if trace is not None:
            argv = ["strace", "-qq", "-o", trace, "-e", "trace=close",
                    harness.WORKER_BINARY]
            # LeakSanitizer cannot run under ptrace (an ASan build).
            env["ASAN_OPTIONS"] = ":".join(
                o for o in (env.get("ASAN_OPTIONS"), "detect_leaks=0") if o)
        proc, _ = harness.spawn_lone_worker(argv, env, log_path)
        self.addCleanup(self.reap, proc)
        pid = [proc.pid]

        def waiting():
            if trace is not None:
                kids = harness.Stack._children(proc.pid)
                if not kids:
                    return False
                pid[0] = kids[0]
            with open(log_path, "rb") as f:
                ready = b"worker ready" in f.read()
            # Ready and asleep: the one blocking call left is accept().
            return ready and proc_state(pid[0]) == "S"
        self.assertTrue(wait_until(waiting, 10.0),
                        "the worker never became idle:\n%s"
                        % self.read(log_path))
        return proc, pid[0], log_path

    @staticmethod
    def reap(proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def test_stop_signals_in_quick_succession(self):
        for i, burst in enumerate(self.BURSTS):
            names = "+".join(signal.Signals(s).name for s in burst)
            with self.subTest(signals=names):
                proc, pid, log_path = self.start_idle_worker("w%d" % i)
                self.stop_and_check(proc, pid, log_path, burst)

    def stop_and_check(self, proc, pid, log_path, burst):
        # The worker is held stopped while the whole burst is queued, so every
        # signal is pending at once when it resumes: sent one by one, the
        # first could end the worker (and strace, its parent when traced,
        # reap it) before the next is sent.
        os.kill(pid, signal.SIGSTOP)
        self.assertTrue(wait_until(lambda: proc_state(pid) in ("T", "t"),
                                   EXIT_SECONDS),
                        "the worker never stopped on SIGSTOP")
        for sig in burst:
            os.kill(pid, sig)
        os.kill(pid, signal.SIGCONT)
        try:
            code = proc.wait(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        log = self.read(log_path)
        self.assertEqual(code, 0, "exit status; the worker's log:\n%s" % log)
        self.assertIn("worker stopped after 0 requests", log)
        self.assertNotIn("accepting a FastCGI request failed", log)
        self.assertNotRegex(log, harness.SANITIZER_RE)

    def test_listening_socket_closed_once(self):
        """What the worker does is only visible in its system calls: one
        close(0) however many stop signals come."""
        if shutil.which("strace") is None:
            self.skipTest("strace is not installed")
        trace = os.path.join(self.tmp, "close.trace")
        proc, pid, log_path = self.start_idle_worker("traced", trace)
        self.stop_and_check(proc, pid, log_path,
                            (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT))
        calls = self.read(trace)
        for name in ("SIGUSR1", "SIGTERM", "SIGINT"):
            self.assertRegex(calls, r"(?m)^--- %s " % name,
                             "the worker never received %s" % name)
        self.assertEqual(len(re.findall(r"^close\(0\)", calls, re.M)), 1,
                         calls)


if __name__ == "__main__":
    main()
