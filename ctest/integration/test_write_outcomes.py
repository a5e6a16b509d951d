#!/usr/bin/env python3
"""What a write's answer promises (docs: "Write semantics"): 200/201/204
applied; 503 {"error":"database unavailable"} NOT applied (never sent, or
refused or rolled back by the server); 504 "outcome unknown" sent and its
answer lost; 500 an internal error. Checked against the database itself:

- writes under a table lock or a row lock are refused by the server after
  0.5 s (max_statement_time) and answer 503, and none of them runs
  afterwards;
- concurrent PUTs on one id each answer exactly what they wrote, with the
  item's original created_at, never another request's write;
- PUTs racing a DELETE answer their own write or 404, never another body;
- a write whose connection is killed while it runs is never sent again
  (an audit trigger counts its executions);
- a write sent to a frozen server answers 504 (outcome unknown), the next
  one 503, and the API serves again once the server resumes;
- a missing table is a 500, not an outage: no 503, no restart."""

# run.py: about 11 s (waits on lock timeouts)

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import stack as harness
from stack import main, run_concurrently, sql_quote, wait_until

CONTRACT_SECONDS = 2.0


class WriteOutcomesTest(harness.StackTestCase):
    stack_options = {"workers": 4, "token": "write-outcomes-token-9Kq2"}

    def setUp(self):
        self.assertEqual(self.stack.request("GET", "/status").status, 200,
                         "stack healthy before the test")

    def put(self, item_id, body, timeout=harness.REQUEST_TIMEOUT):
        return self.stack.request("PUT", "/items/%d" % item_id, body,
                                  self.stack.auth(), timeout=timeout)

    def row_count(self, where):
        return int(self.stack.sql("SELECT COUNT(*) FROM items WHERE "
                                  + where).strip())

    # -- a: the server refuses writes it cannot run within 0.5 s ----------

    def assertRefusedUnderLock(self, lock_sql, writes):
        """Runs lock_sql (which must end in SELECT SLEEP(3)) in another
        session and, while it sleeps holding its lock, the writes
        [(method, path, body)] together: each must answer 503 "database
        unavailable" in under 0.9 s, before the lock ends. Returns once the
        lock session is over, so that the caller can check the rows."""
        locker = subprocess.Popen(self.stack.mysql_args() + ["-e", lock_sql],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            # The lock is held once its session sleeps.
            held = wait_until(lambda: self.stack.sql(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE INFO = 'SELECT SLEEP(3)'").strip() == "1", 2.5, 0.02)
            self.assertTrue(held, "the lock session never slept")
            auth = self.stack.auth()
            results = run_concurrently(len(writes), lambda i: self.stack.request(
                writes[i][0], writes[i][1], writes[i][2], auth, timeout=10))
            still_locked = locker.poll() is None
            for (method, path, _), r in zip(writes, results):
                with self.subTest(method=method, path=path):
                    self.assertIsInstance(r, harness.Response, r)
                    self.assertEqual(self.assertJSON(r, 503),
                                     {"error": "database unavailable"}, r)
                    self.assertLess(r.elapsed, 0.9, r)
            self.assertTrue(still_locked,
                            "the lock ended before the writes answered: "
                            "the test proves nothing")
            locker.wait(timeout=15)
            self.assertEqual(locker.returncode, 0,
                             locker.stderr.read().decode("utf-8", "replace"))
        finally:
            if locker.poll() is None:
                locker.kill()      # ends its session: the lock goes with it
                locker.wait(timeout=15)
            locker.stderr.close()

    def assertUnchanged(self, *items):
        """Each item reads back exactly as it was: what answered 503 on it
        was not applied."""
        for item in items:
            r = self.stack.request("GET", "/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(r, 200), item,
                             "a write answered 503 was applied")

    def test_writes_under_table_lock_are_refused_and_not_applied(self):
        """With `LOCK TABLES items WRITE` held by another session, POST, PUT
        and DELETE each answer 503 "database unavailable" well under 1 s
        (MariaDB gives up on each write after max_statement_time 0.5 s and
        rolls it back), while the lock is still held; once it is released,
        none of them has been applied (the old code waited out its 1 s
        client timeout, then could not know what the server would do)."""
        tag = uuid.uuid4().hex[:8]
        put_target = self.stack.create("lock put target " + tag, "before")
        del_target = self.stack.create("lock delete target " + tag)
        post_name = "written under lock " + tag
        self.assertRefusedUnderLock(
            "LOCK TABLES items WRITE; SELECT SLEEP(3); UNLOCK TABLES", [
                ("POST", "/items", {"name": post_name}),
                ("PUT", "/items/%d" % put_target["id"],
                 {"name": "changed under lock " + tag, "description": None}),
                ("DELETE", "/items/%d" % del_target["id"], None),
            ])
        # Nothing of what answered 503 was applied, even after the lock.
        self.assertEqual(self.row_count("name = " + sql_quote(post_name)), 0,
                         "the POST answered 503 was applied")
        self.assertUnchanged(put_target, del_target)
        # Writes work again.
        self.stack.create("after the lock " + tag)

    def test_writes_under_row_lock_are_refused_and_not_applied(self):
        """With the target rows locked by another session's open transaction
        (SELECT ... FOR UPDATE), PUT and DELETE read them fine but their
        UPDATE/DELETE waits on the row lock: each answers 503 "database
        unavailable" well under 1 s, and once the transaction ends neither
        has been applied. (The old code's statement outlived its 1 s client
        timeout on the server, ready to run once the lock went.)"""
        tag = uuid.uuid4().hex[:8]
        put_target = self.stack.create("row lock put target " + tag, "before")
        del_target = self.stack.create("row lock delete target " + tag)
        lock_sql = ("BEGIN; SELECT id FROM items WHERE id IN (%d, %d) FOR "
                    "UPDATE; SELECT SLEEP(3); ROLLBACK"
                    % (put_target["id"], del_target["id"]))
        self.assertRefusedUnderLock(lock_sql, [
            ("PUT", "/items/%d" % put_target["id"],
             {"name": "changed under row lock " + tag}),
            ("DELETE", "/items/%d" % del_target["id"], None),
        ])
        # Give a statement still queued on the server (old code) its chance
        # to run: the rows are checked after the lock is gone.
        self.assertUnchanged(put_target, del_target)

    # -- b: a PUT answers what it wrote -----------------------------------

    def test_concurrent_puts_answer_their_own_write(self):
        """300 PUTs on one id from 16 threads (4 workers), each with its own
        name and description (every fifth description null): every answer is
        200 and exactly {id, its own name, its own description, the item's
        original created_at}. The old code read the row back after its
        UPDATE and returned whatever another request had committed since."""
        rounds, threads = 300, 16
        item = self.stack.create("put race target", "original")

        def body(n):
            return {"name": "put race %03d \u00e9" % n,
                    "description": None if n % 5 == 0 else
                    "description of put %03d %s" % (n, "x" * (n % 37))}

        def client(t):
            out = []
            for n in range(t, rounds, threads):
                out.append((n, self.put(item["id"], body(n), timeout=30)))
            return out
        results = run_concurrently(threads, client)
        answers = []
        for res in results:
            self.assertIsInstance(res, list, res)
            answers.extend(res)
        self.assertEqual(sorted(n for n, _ in answers), list(range(rounds)))
        wrong = []
        for n, r in answers:
            self.assertEqual(r.status, 200, r)
            got = self.assertJSON(r, 200)
            want = dict(body(n), id=item["id"],
                        created_at=item["created_at"])
            if got != want:
                wrong.append((n, got))
        self.assertEqual(wrong[:3], [], "%d of %d PUTs answered a body they "
                         "did not write (first ones shown)"
                         % (len(wrong), rounds))
        # The row holds one of the writes, whole (name and description of
        # the same request).
        r = self.stack.request("GET", "/items/%d" % item["id"])
        final = self.assertJSON(r, 200)
        self.assertIn(final, [dict(body(n), id=item["id"],
                                   created_at=item["created_at"])
                              for n in range(rounds)])

    # -- c: PUT racing DELETE ---------------------------------------------

    def test_puts_racing_delete(self):
        """Rounds of 8 threads PUTting one item while it is DELETEd: each PUT
        answers 200 with exactly its own body and the original created_at,
        or 404; never another body, never a 5xx. A PUT sent after the DELETE
        answered is a 404, and every thread ends on one. (The old code read
        the row back after its UPDATE: another PUT's body.)"""
        rounds, threads, per_thread = 8, 8, 25
        saw_200 = saw_404 = 0
        for rnd in range(rounds):
            item = self.stack.create("delete race %d" % rnd, "orig")
            answered = []          # PUT answers so far (to time the DELETE)
            deleted_at = []        # monotonic time the DELETE answered

            def body(t, k):
                return {"name": "race r%d t%d k%d" % (rnd, t, k),
                        "description": None if k % 3 == 0 else
                        "desc r%d t%d k%d" % (rnd, t, k)}

            def client(t):
                log = []
                for k in range(per_thread):
                    sent = time.monotonic()
                    r = self.put(item["id"], body(t, k), timeout=30)
                    answered.append(1)
                    log.append((k, sent, r))
                    if r.status != 200:
                        break
                return log

            def deleter():
                # Let a few PUTs through first: the DELETE lands mid-race.
                wait_until(lambda: len(answered) >= threads, 10, 0.002)
                r = self.stack.request("DELETE", "/items/%d" % item["id"],
                                       headers=self.stack.auth(), timeout=30)
                deleted_at.append(time.monotonic())
                return r

            results = run_concurrently(threads + 1, lambda i: deleter()
                                  if i == threads else client(i))
            r = results[threads]
            self.assertIsInstance(r, harness.Response, r)
            self.assertEqual(r.status, 204, r)
            problems = []
            for t in range(threads):
                log = results[t]
                self.assertIsInstance(log, list, log)
                for k, sent, r in log:
                    want = dict(body(t, k), id=item["id"],
                                created_at=item["created_at"])
                    if r.status == 404:
                        saw_404 += 1
                        self.assertError(r, 404)
                    elif r.status != 200:
                        problems.append(("t%d k%d" % (t, k), r))
                    elif sent >= deleted_at[0]:
                        problems.append(("t%d k%d sent after the DELETE "
                                         "answered" % (t, k), r))
                    elif self.assertJSON(r, 200) != want:
                        problems.append(("t%d k%d other body" % (t, k),
                                         r.json()))
                    else:
                        saw_200 += 1
                # Each thread stops at its first 404, which it must reach
                # (the item is gone, so its PUTs cannot go on answering 200).
                if log[-1][2].status != 404:
                    problems.append(("t%d never saw the DELETE" % t,
                                     log[-1][2]))
            self.assertEqual(problems[:5], [], "round %d: %d bad PUT answers"
                             " (first ones shown)" % (rnd, len(problems)))
            r = self.stack.request("GET", "/items/%d" % item["id"])
            self.assertError(r, 404)
        sys.stderr.write("\nPUT racing DELETE: %d PUTs answered 200, %d "
                         "answered 404\n" % (saw_200, saw_404))
        self.assertGreater(saw_200, 0, "no PUT won the race")
        self.assertGreater(saw_404, 0, "no PUT lost the race")

    # -- d: a write that may have reached the server is never re-sent -----

    def test_write_killed_mid_statement_is_not_replayed(self):
        """A BEFORE UPDATE trigger logs each execution of an UPDATE to a
        MyISAM audit table (not transactional: the row survives the
        statement's rollback), then sleeps 0.3 s; meanwhile another session
        KILLs the worker's connection (a fast loss, well within the old
        code's 250 ms retry window). The PUT answers 503 or 504 (a JSON
        error) and the UPDATE ran exactly once: the old code sent it again
        on a new connection and answered 200 (two audit rows). On a 503 the
        item must be unchanged."""
        s = self.stack
        s.sql("CREATE TABLE replay_audit (n INT AUTO_INCREMENT PRIMARY KEY, "
              "name VARCHAR(255) NOT NULL, conn BIGINT NOT NULL) "
              "ENGINE=MyISAM")
        self.addCleanup(s.sql, "DROP TABLE IF EXISTS replay_audit")
        s.sql_block("CREATE TRIGGER replay_probe BEFORE UPDATE ON items "
                  "FOR EACH ROW IF NEW.name LIKE 'replay-probe%' THEN "
                  "INSERT INTO replay_audit (name, conn) "
                  "VALUES (NEW.name, CONNECTION_ID()); "
                  "DO SLEEP(0.3); END IF")
        self.addCleanup(s.sql, "DROP TRIGGER IF EXISTS replay_probe")
        # The workers prepared their UPDATE before this second BEFORE UPDATE
        # trigger of the table existed, and MariaDB 10.11 then runs it without
        # opening the trigger's table (1146): end their connections, so that
        # they prepare again with it.
        for conn in s.sql("SELECT id FROM information_schema.PROCESSLIST "
                          "WHERE user = 'items'").split():
            s.sql("KILL CONNECTION %d" % int(conn))
        # Runs in its own session: waits (bounded, 5 ms steps) for a
        # connection sleeping in the trigger, kills it, and tells which.
        # While the trigger runs, PROCESSLIST shows its statement (the
        # DO SLEEP), not the UPDATE that fired it.
        killer = ("BEGIN NOT ATOMIC "
                  "DECLARE v BIGINT DEFAULT NULL; DECLARE n INT DEFAULT 0; "
                  "WHILE v IS NULL AND n < 600 DO "
                  "SELECT MAX(ID) INTO v FROM information_schema.PROCESSLIST "
                  "WHERE ID <> CONNECTION_ID() AND INFO = 'DO SLEEP(0.3)' "
                  "AND STATE = 'User sleep'; "
                  "IF v IS NULL THEN DO SLEEP(0.005); SET n = n + 1; END IF; "
                  "END WHILE; "
                  "IF v IS NOT NULL THEN KILL CONNECTION v; END IF; "
                  "SELECT IFNULL(v, 0); END")
        for attempt in range(4):
            with self.subTest(attempt=attempt):
                item = s.create("replay target %d" % attempt, "unchanged")
                name = "replay-probe-%d-%s" % (attempt, uuid.uuid4().hex[:6])
                killed = []
                t = threading.Thread(
                    target=lambda: killed.append(s.sql_block(killer)),
                    daemon=True)
                t.start()
                # Let the killer's session start polling before the PUT.
                time.sleep(0.1)
                r = self.put(item["id"], {"name": name})
                t.join(15)
                self.assertFalse(t.is_alive(), "the killer did not end")
                audit = s.sql("SELECT conn FROM replay_audit WHERE name = "
                              + sql_quote(name)).split()
                victim = killed[0].strip() if killed else "?"
                self.assertIn(victim, audit,
                              "the killer did not kill the PUT's connection "
                              "(killed %r, audit %r): inconclusive"
                              % (victim, audit))
                self.assertEqual(len(audit), 1,
                                 "the UPDATE ran %d times (connections %s): "
                                 "it was sent again; answer %r"
                                 % (len(audit), audit, r))
                self.assertIn(r.status, (503, 504), r)
                reason = self.assertError(r, r.status)
                if r.status == 503:
                    self.assertEqual(reason, "database unavailable")
                else:
                    self.assertRegex(reason, "(?i)outcome unknown")
                got = s.request("GET", "/items/%d" % item["id"])
                now = self.assertJSON(got, 200)
                if r.status == 503:
                    self.assertEqual(now, item, "a 503 PUT was applied")
                else:
                    sys.stderr.write("\nattempt %d: 504, item %s\n" % (
                        attempt, "unchanged" if now == item else "changed"))
        # The pool serves writes again (the killed connection is replaced).
        self.stack.create("after the kills")


def all_threads_stopped(pid):
    """Every thread of pid is in the stopped state (T)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    return bool(tids) and all(
        harness.proc_state(int(tid)) == "T" for tid in tids)


class LostAnswerTest(harness.StackTestCase):
    """One worker, so that the frozen database meets the connection it
    already holds."""

    stack_options = {"workers": 1, "token": "lost-answer-token-3Fd8"}

    def test_write_sent_to_frozen_database_is_outcome_unknown(self):
        """mariadbd stopped (SIGSTOP) under a warm connection: the POST sent
        on it answers 504 "outcome unknown" within 2 s (never 503: it may
        have been applied); the next POST, which the worker does not send,
        answers 503 quickly and is indeed never applied; after SIGCONT the
        API serves again within 2 s. Whether the first POST's row exists
        afterwards is logged (either is allowed)."""
        s = self.stack
        kept = s.create("written before the freeze")
        self.assertEqual(s.request("GET", "/items/%d" % kept["id"]).status,
                         200)     # the worker's connection is up
        tag = uuid.uuid4().hex[:8]
        first, second = "lost answer " + tag, "refused " + tag
        mariadb = s.pid("mariadb")
        with open("/proc/%d/comm" % mariadb) as f:
            self.assertIn(f.read().strip(), ("mariadbd", "mysqld"))
        os.kill(mariadb, signal.SIGSTOP)
        try:
            # kill() returns before every thread has stopped: on a busy
            # machine a thread could still serve the POST.
            self.assertTrue(wait_until(lambda: all_threads_stopped(mariadb),
                                       5.0, 0.01), "mariadbd did not stop")
            r1 = s.request("POST", "/items", {"name": first}, s.auth(),
                           timeout=CONTRACT_SECONDS + 5)
            r2 = s.request("POST", "/items", {"name": second}, s.auth(),
                           timeout=CONTRACT_SECONDS + 5)
        finally:
            os.kill(mariadb, signal.SIGCONT)
        back = time.monotonic()
        self.assertError(r1, 504, r"^outcome unknown")
        self.assertLess(r1.elapsed, CONTRACT_SECONDS, r1)
        self.assertEqual(self.assertJSON(r2, 503),
                         {"error": "database unavailable"}, r2)
        self.assertLess(r2.elapsed, CONTRACT_SECONDS, r2)

        def serving():
            r = s.request("GET", "/items/%d" % kept["id"],
                          timeout=CONTRACT_SECONDS + 5)
            return r.status == 200
        self.assertTrue(wait_until(serving, back + CONTRACT_SECONDS
                                   - time.monotonic()),
                        "no 200 within %.0f s of SIGCONT" % CONTRACT_SECONDS)
        after = s.create("after the freeze")
        names = [i["name"] for i in s.all_items()]
        self.assertNotIn(second, names, "a POST answered 503 was applied")
        self.assertIn(after["name"], names)
        sys.stderr.write("\nfrozen database: 504 in %.2f s, then 503 in "
                         "%.3f s; the POST answered 504 was %s\n" % (
                             r1.elapsed, r2.elapsed, "applied"
                             if first in names else "not applied"))


class MissingTableTest(harness.StackTestCase):
    """Its own stack: the table is renamed away under it."""

    stack_options = {"workers": 2, "token": "missing-table-token-7Rb1"}

    def test_missing_table_is_500_not_an_outage(self):
        """`items` renamed away: GET /items, GET /items/<id> and POST answer
        500 with a JSON error, never 503, each in under 2 s, both on the
        workers' open connections and on fresh ones (the idle connections
        are killed, so each worker reconnects and fails to prepare its
        statements: the old code took that for an outage, closed the
        pool-wide gate and answered 503). Renamed back, everything answers
        200 again within 2 s from the same worker processes."""
        s = self.stack
        workers = s.worker_pids()
        self.assertEqual(len(workers), 2)
        item = s.create("survives the rename")
        for _ in range(8):     # every worker holds a connection
            self.assertEqual(s.request("GET", "/items").status, 200)
        auth = s.auth()

        def checks(name):
            return [("GET", "/items", None, {}),
                    ("GET", "/items/%d" % item["id"], None, {}),
                    ("POST", "/items", {"name": name}, auth)]

        def assertAll500(phase):
            for n in range(4):
                for method, path, body, headers in checks("while hidden"):
                    with self.subTest(phase=phase, round=n, method=method,
                                      path=path):
                        r = s.request(method, path, body, headers,
                                      timeout=CONTRACT_SECONDS + 5)
                        self.assertLess(r.elapsed, CONTRACT_SECONDS, r)
                        self.assertError(r, 500)

        s.sql("RENAME TABLE items TO items_hidden")
        try:
            assertAll500("open connections")
            conns = s.sql("SELECT ID FROM information_schema.PROCESSLIST "
                          "WHERE HOST LIKE '127.0.0.1:%'").split()
            self.assertTrue(conns, "no worker connection to kill")
            for conn in conns:
                s.sql("KILL CONNECTION %d" % int(conn))
            assertAll500("fresh connections")
        finally:
            s.sql("RENAME TABLE items_hidden TO items")
        back = time.monotonic()

        def serving():
            return all(s.request(m, p, b, h).status in (200, 201)
                       for m, p, b, h in checks("after the rename"))
        self.assertTrue(wait_until(serving, back + CONTRACT_SECONDS
                                   - time.monotonic()),
                        "not serving within %.0f s of the rename back"
                        % CONTRACT_SECONDS)
        for _ in range(4):
            r = s.request("GET", "/items/%d" % item["id"])
            self.assertEqual(self.assertJSON(r, 200), item)
            self.assertEqual(s.request("GET", "/items").status, 200)
            self.assertEqual(s.request("GET", "/status").status, 200)
        self.assertEqual(s.worker_pids(), workers, "workers restarted")
        self.assertNotIn("while hidden",
                         [i["name"] for i in s.all_items()])


if __name__ == "__main__":
    main()
