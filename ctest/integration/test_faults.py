#!/usr/bin/env python3
"""Failure behaviour: the database stopped (503 within 2 s, service back
within 2 s of its return, no restart, no data lost), the database frozen
(black-holed: SIGSTOP), and kill -9 of a worker (the pool keeps answering and
the worker is replaced). Each test leaves the stack healthy."""

import json
import os
import signal
import time

import stack as harness
from stack import main, wait_until, alive

CONTRACT_SECONDS = 2.0
WORKERS = 2


class FaultsTest(harness.StackTestCase):
    stack_options = {"workers": WORKERS, "token": "faults-token-77abc"}

    def setUp(self):
        self.assertEqual(self.stack.request("GET", "/status").status, 200,
                         "stack healthy before the test")

    def item_requests(self, item_id):
        """One request of each item route (write bodies valid)."""
        auth = self.stack.auth()
        body = json.dumps({"name": "during outage"})
        return [("GET", "/items", None, {}),
                ("GET", "/items?after=1&limit=2", None, {}),
                ("GET", "/items/%d" % item_id, None, {}),
                ("HEAD", "/items/%d" % item_id, None, {}),
                ("POST", "/items", body, auth),
                ("PUT", "/items/%d" % item_id, body, auth),
                ("DELETE", "/items/%d" % item_id, None, auth)]

    def assertUnavailable(self, item_id, rounds):
        """Every item route answers 503 {"error":"database unavailable"} and
        /status 503 KO, each in under 2 s. `rounds` rounds so that every
        worker is hit."""
        for n in range(rounds):
            for method, path, body, headers in self.item_requests(item_id):
                with self.subTest(round=n, method=method, path=path):
                    r = self.stack.request(method, path, body, headers,
                                           timeout=CONTRACT_SECONDS + 5)
                    self.assertLess(r.elapsed, CONTRACT_SECONDS, r)
                    self.assertEqual(r.status, 503, r)
                    if method != "HEAD":
                        self.assertEqual(self.assertJSON(r, 503),
                                         {"error": "database unavailable"})
            with self.subTest(round=n, path="/status"):
                r = self.stack.request("GET", "/status",
                                       timeout=CONTRACT_SECONDS + 5)
                self.assertLess(r.elapsed, CONTRACT_SECONDS, r)
                status = self.assertJSON(r, 503)
                self.assertEqual(set(status),
                                 {"status", "database_connection", "message"})
                self.assertEqual(status["status"], "KO")
                self.assertEqual(status["database_connection"], "KO")
                self.assertEqual(status["message"], "database unavailable")

    def assertBackWithin(self, since, item):
        """The API answers 200 within 2 s of `since` (monotonic time the DB
        was back), then keeps answering 200 on every worker; `item` is
        intact."""
        deadline = since + CONTRACT_SECONDS

        def serving():
            r = self.stack.request("GET", "/items/%d" % item["id"],
                                   timeout=CONTRACT_SECONDS + 5)
            return r.status == 200
        self.assertTrue(wait_until(serving, deadline - time.monotonic()),
                        "no 200 within %.0f s of the database's return"
                        % CONTRACT_SECONDS)
        # From the contract's deadline on, every request must succeed.
        time.sleep(max(0.0, deadline - time.monotonic()))
        for _ in range(4 * WORKERS):
            r = self.stack.request("GET", "/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(r, 200), item)
            self.assertEqual(self.stack.request("GET", "/status").status, 200)

    def test_db_outage(self):
        kept = self.stack.create("written before the outage",
                                 "must survive \u00e9\U0001F600")
        victim = self.stack.create("target of outage writes")
        pool, workers = self.stack.pool_pid(), self.stack.worker_pids()
        nginx = self.stack.pid("nginx")
        self.assertEqual(len(workers), WORKERS)
        # Every worker has a live connection before the outage.
        for _ in range(4 * WORKERS):
            self.assertEqual(self.stack.request("GET", "/items").status, 200)

        self.stack.db_stop()
        try:
            self.assertUnavailable(victim["id"], rounds=3)
        finally:
            self.stack.db_start()
        back = time.monotonic()
        self.assertBackWithin(back, kept)

        self.assertEqual(self.stack.pool_pid(), pool, "pool restarted")
        self.assertEqual(self.stack.worker_pids(), workers,
                         "workers restarted")
        self.assertEqual(self.stack.pid("nginx"), nginx, "nginx restarted")
        # Nothing written before the outage was lost; nothing written during.
        items = self.stack.all_items()
        self.assertIn(kept, items)
        self.assertIn(victim, items)
        self.assertNotIn("during outage", [i["name"] for i in items])
        # Writes work again.
        self.stack.create("after the outage")

    def test_db_frozen(self):
        """A database that accepts nothing and answers nothing (SIGSTOP):
        still 503 in under 2 s per request, and back once it resumes."""
        kept = self.stack.create("written before the freeze")
        mariadb = self.stack.pid("mariadb")
        with open("/proc/%d/comm" % mariadb) as f:
            self.assertIn(f.read().strip(), ("mariadbd", "mysqld"))
        os.kill(mariadb, signal.SIGSTOP)
        try:
            self.assertUnavailable(kept["id"], rounds=1)
        finally:
            os.kill(mariadb, signal.SIGCONT)
        back = time.monotonic()
        self.assertBackWithin(back, kept)

    def test_kill_9_worker(self):
        pool = self.stack.pool_pid()
        workers = self.stack.worker_pids()
        self.assertEqual(len(workers), WORKERS)
        item = self.stack.create("survives a crash")
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not alive(victim), 5.0))
        # The pool keeps answering while (and after) the worker is replaced.
        for _ in range(10):
            r = self.stack.request("GET", "/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(r, 200), item)
        now = self.stack.wait_workers(WORKERS, timeout=10.0,
                                      exclude=[victim])
        self.assertEqual(len(now), WORKERS, now)
        self.assertNotIn(victim, now)
        self.assertEqual(self.stack.pool_pid(), pool)
        self.assertTrue(alive(pool))
        # The replacement serves: enough parallel-free requests to reach it.
        for _ in range(4 * WORKERS):
            self.assertEqual(self.stack.request("GET", "/status").status, 200)
        self.stack.create("after the crash")


if __name__ == "__main__":
    main()
