#!/usr/bin/env python3
"""SIGTERM of the pool supervisor: the request in flight finishes (200), the
supervisor and every worker exit within a few seconds, and nginx then answers
502 with a JSON body for API paths while still serving the static page.
This kills the pool, so it owns its stack."""

import json
import os
import signal
import subprocess
import threading

import stack as harness
from stack import main, wait_until, alive

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

    def test_sigterm_finishes_in_flight_request_and_exits(self):
        item = self.stack.create("in flight", "answered after SIGTERM")
        pool = self.stack.pool_pid()
        workers = self.stack.worker_pids()
        self.assertEqual(len(workers), WORKERS)
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

        # 2. SIGTERM to the supervisor; the idle worker(s) go first.
        os.kill(pool, signal.SIGTERM)
        busy_left = wait_until(
            lambda: len([p for p in workers if alive(p)]) <= 1, EXIT_SECONDS)
        self.assertTrue(busy_left, "idle workers still alive %.0f s after "
                        "SIGTERM" % EXIT_SECONDS)

        # 3. Release the lock: the in-flight request must complete normally.
        self.unlock(lock)
        t.join(15)
        self.assertFalse(t.is_alive(), "in-flight request never answered")
        r = result.get("r")
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(self.assertJSON(r, 200), item)

        # 4. Everything exits.
        gone = wait_until(
            lambda: not alive(pool) and not any(alive(p) for p in workers),
            EXIT_SECONDS)
        self.assertTrue(gone, "pool %d / workers %s still alive %.0f s after "
                        "SIGTERM" % (pool, [p for p in workers if alive(p)],
                                     EXIT_SECONDS))
        self.assertNoSanitizerReports()  # leak checks run at a clean exit
        # Each worker closed its DB connection (else mariadbd logs "Aborted
        # connection ... user: 'items'"); mariadbd logs it asynchronously.
        aborted = wait_until(lambda: [
            line for line in self.stack.log_lines("mariadb.log")
            if "Aborted connection" in line and "'items'" in line], 1.0)
        self.assertEqual(aborted, [], "a worker exited without closing its "
                         "database connection")

        # 5. nginx answers for the pool: JSON 502 on API paths, / still up.
        for method, path in (("GET", "/items"), ("GET", "/status"),
                             ("GET", "/items/%d" % item["id"])):
            with self.subTest(path=path):
                r = self.stack.request(method, path)
                self.assertIn(r.status, (502, 504), r)
                self.assertError(r, r.status)
                self.assertIn("x-request-id", r.headers)
        r = self.stack.request("GET", "/")
        self.assertEqual(r.status, 200)
        # A write gets the same JSON answer (nothing hangs).
        r = self.stack.request("POST", "/items",
                               json.dumps({"name": "nobody home"}),
                               self.stack.auth())
        self.assertIn(r.status, (502, 504), r)
        self.assertError(r, r.status)


if __name__ == "__main__":
    main()
