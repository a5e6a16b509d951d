#!/usr/bin/env python3
"""Soak test with faults: bounded mixed load (reads and writes with unique
payloads, from several threads, each request on its own connection) against
a local stack it starts, while it injects faults: a worker killed with
SIGKILL every 10 s, the database stopped for 10 s then started
(run-local.sh --db stop|start), nginx reloaded twice (SIGHUP to its master).
Every response is recorded (time, thread, method, route, status, latency) in
a JSON-lines file.

Pass criteria (each printed with its figures):
  - no 500, ever; no client-side error (timeout, reset);
  - a 504 ("outcome unknown": the database went away after the write was
    sent) only for a write in flight inside the outage window;
  - a 502 only for a write in flight while a worker was killed, at most one
    per kill (idempotent reads are retried by nginx on another worker);
  - a 503 only inside the database outage window (plus 2 s);
  - no other status than the operation's own (200/201/204, 404 for a read
    of an item another thread deleted);
  - every write answered 201 (or 200 for PUT) is readable at the end with the
    exact content sent; every 204 DELETE is gone; no item appears twice;
  - the pool is back to N workers at the end;
  - worker RSS grew by at most 10 % (the long-lived worker, which is never
    killed, from after warm-up to the end; and the sum over the pool).

    scripts/soak.sh [--duration SECONDS] [--workers N] [--threads N] [--rate R]

Environment: ITEMS_FCGI (worker binary, as for run-local.sh), KEEP_TMP=1,
SOAK_LOG_DIR (where the responses log goes) [${TMPDIR:-/tmp}/items-soak-UID].
"""

import argparse
import collections
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO_ROOT, "ctest", "integration"))

from stack import Stack, wait_until  # noqa: E402

CLIENT_TIMEOUT = 15.0     # above nginx's fastcgi_read_timeout (10 s): a 504 shows
OUTAGE_GRACE = 2.0        # 503s allowed this long after the database is back
KILL_EVERY = 10.0
OUTAGE_LENGTH = 10.0
RSS_GROWTH_MAX = 0.10
TEXTS = ["été", "Zidane ⚽", "🏆🇫🇷", "<b>bold</b>", "'; DROP TABLE items; --",
         "\\\"quoted\"", "日本語", "ﬁ ligature", "a\tb", "Ünïcödé", "€100"]


def now_ms(begin):
    return time.monotonic() - begin


class Recorder:
    """Every response, in memory and in a JSON-lines file."""

    def __init__(self, path, begin):
        self.begin = begin
        self.lock = threading.Lock()
        self.records = []
        self.file = open(path, "w")

    def add(self, rec):
        with self.lock:
            self.records.append(rec)
            self.file.write(json.dumps(rec) + "\n")

    def close(self):
        self.file.close()


class Model:
    """What the database must hold at the end, from the acknowledged writes.
    Each item has a set of acceptable states (a write whose outcome is
    unknown, a 502, adds a state instead of replacing it); None = deleted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = {}            # id -> {"states": [...], "created_at": str}
        self.ambiguous_names = set()   # POSTs that got a 502 or 504
        self.put_names = set()     # PUTs answered 200 or 502
        self.created_names = {}    # name -> id (201)
        self.live = []             # ids readers may GET

    def created(self, item):
        with self.lock:
            self.items[item["id"]] = {
                "states": [(item["name"], item["description"])],
                "created_at": item["created_at"]}
            self.created_names[item["name"]] = item["id"]
            self.live.append(item["id"])

    def replaced(self, item_id, state, certain):
        with self.lock:
            self.put_names.add(state[0])
            entry = self.items[item_id]
            entry["states"] = [state] if certain else entry["states"] + [state]

    def deleted(self, item_id, certain):
        with self.lock:
            entry = self.items[item_id]
            entry["states"] = [None] if certain else entry["states"] + [None]
            if certain and item_id in self.live:
                self.live.remove(item_id)

    def random_live(self, rng):
        with self.lock:
            return rng.choice(self.live) if self.live else None


class LoadThread(threading.Thread):
    def __init__(self, n, args, stack, rec, model, stop, run_id):
        super().__init__(daemon=True)
        self.n, self.args, self.stack = n, args, stack
        self.rec, self.model, self.stop = rec, model, stop
        self.rng = random.Random(n)
        self.run_id = run_id
        self.own = []              # ids this thread created, maybe deleted
        self.seq = 0
        self.interval = args.threads / args.rate

    def payload(self):
        self.seq += 1
        name = "soak %s t%d #%d %s" % (self.run_id, self.n, self.seq,
                                       self.rng.choice(TEXTS))
        if self.rng.random() < 0.2:
            desc = None
        else:
            desc = " ".join(self.rng.choice(TEXTS) for _ in range(
                self.rng.randint(1, 40)))
        return name, desc

    def request(self, method, path, body=None, route=""):
        headers = {"Connection": "close"}
        if body is not None:
            body = json.dumps(body).encode("utf-8")
            headers["Authorization"] = "Bearer " + self.stack.token
            headers["Content-Type"] = "application/json"
        elif method == "DELETE":
            headers["Authorization"] = "Bearer " + self.stack.token
        t0 = time.monotonic()
        status, data, error = 0, b"", None
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.http_port,
                                          timeout=CLIENT_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            status, data = r.status, r.read()
        except (OSError, http.client.HTTPException) as e:
            error = repr(e)
        finally:
            conn.close()
        t1 = time.monotonic()
        rec = {"start": round(t0 - self.rec.begin, 4),
               "end": round(t1 - self.rec.begin, 4), "thread": self.n,
               "method": method, "route": route, "path": path,
               "status": status}
        if error:
            rec["error"] = error
        if status >= 400 and data:
            rec["body"] = data[:200].decode("utf-8", "replace")
        self.rec.add(rec)
        return status, data

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += self.interval * self.rng.uniform(0.5, 1.5)
            self.one()
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()

    def one(self):
        x = self.rng.random()
        mine = self.own        # created here, not (maybe) deleted
        if x < 0.22:
            after = self.rng.choice([0, 0, self.rng.randint(0, 500)])
            self.request("GET", "/items?limit=%d&after=%d" % (
                self.rng.randint(1, 100), after), route="list")
        elif x < 0.45:
            item_id = self.model.random_live(self.rng) or 1
            self.request("GET", "/items/%d" % item_id, route="get")
        elif x < 0.50:
            self.request("GET", "/status", route="status")
        elif x < 0.75 or not mine:
            name, desc = self.payload()
            status, data = self.request(
                "POST", "/items", {"name": name, "description": desc},
                route="create")
            if status == 201:
                item = json.loads(data)
                if (item["name"], item["description"]) != (name, desc):
                    self.rec.add({"mismatch": "201 body", "sent": [name, desc],
                                  "got": item, "status": -1})
                self.model.created(item)
                self.own.append(item["id"])
            elif status in (502, 504):
                with self.model.lock:
                    self.model.ambiguous_names.add(name)
        elif x < 0.90:
            item_id = self.rng.choice(mine)
            name, desc = self.payload()
            status, _ = self.request(
                "PUT", "/items/%d" % item_id,
                {"name": name, "description": desc}, route="replace")
            if status == 200:
                self.model.replaced(item_id, (name, desc), True)
            elif status in (502, 504):
                self.model.replaced(item_id, (name, desc), False)
        else:
            item_id = self.rng.choice(mine)
            status, _ = self.request("DELETE", "/items/%d" % item_id,
                                     route="delete")
            if status in (204, 502, 504):
                # 502, 504: deleted or not; either way not touched again.
                self.model.deleted(item_id, status == 204)
                self.own.remove(item_id)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_age(pid):
    """Seconds since `pid` started."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return up - start / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Faults(threading.Thread):
    """The fault schedule; every event goes to self.events as
    (time, kind, detail)."""

    def __init__(self, args, stack, begin, stop, sentinel):
        super().__init__(daemon=True)
        self.args, self.stack, self.begin = args, stack, begin
        self.stop, self.sentinel = stop, sentinel
        self.events = []
        self.errors = []
        self.outage_thread = None
        self.rng = random.Random(7)

    def at(self, t):
        """Wait until `t` seconds after the start (False: stopped)."""
        delay = self.begin + t - time.monotonic()
        return not self.stop.wait(delay) if delay > 0 else \
            not self.stop.is_set()

    def event(self, kind, detail=""):
        self.events.append((round(time.monotonic() - self.begin, 3), kind,
                            detail))

    def run(self):
        d = self.args.duration
        schedule = []
        t = 5.0
        while t < d - 3:
            schedule.append((t, "kill"))
            t += KILL_EVERY
        schedule.append((max(8.0, 0.4 * d), "outage"))
        schedule.append((0.28 * d, "reload"))
        if d >= 40:
            schedule.append((0.78 * d, "reload"))
        schedule.sort()
        try:
            for t, kind in schedule:
                if not self.at(t):
                    return
                getattr(self, "do_" + kind)()
        except Exception as e:  # a failed fault is a failed soak
            self.errors.append(repr(e))
            self.event("fault-error", repr(e))
        finally:
            if self.outage_thread is not None:
                self.outage_thread.join(120)

    def do_kill(self):
        workers = [p for p in self.stack.worker_pids()
                   if p != self.sentinel and proc_age(p) >= 2.0]
        if not workers:
            self.event("kill-skipped", "no worker older than 2 s")
            return
        pid = self.rng.choice(workers)
        t = time.monotonic() - self.begin
        os.kill(pid, signal.SIGKILL)
        self.events.append((round(t, 3), "kill", pid))

    def do_outage(self):
        """In a thread of its own: the kills go on during the outage."""
        self.outage_thread = threading.Thread(target=self.outage,
                                              daemon=True)
        self.outage_thread.start()

    def outage(self):
        try:
            self._outage()
        except Exception as e:  # a failed fault is a failed soak
            self.errors.append(repr(e))
            self.event("fault-error", repr(e))

    def _outage(self):
        self.event("db-stop-begin")
        self.stack.db_stop()
        self.event("db-stopped")
        self.stop.wait(OUTAGE_LENGTH)
        self.event("db-start-begin")
        self.stack.db_start()
        self.event("db-started")

    def do_reload(self):
        master = self.stack.pid("nginx")
        before = set(Stack._children(master))
        os.kill(master, signal.SIGHUP)
        self.event("nginx-reload", master)
        # New workers replace the old ones (which finish their requests).
        ok = wait_until(lambda: (set(Stack._children(master)) - before),
                        10)
        if not ok:
            self.errors.append("nginx reload: no new worker process")


class Checks:
    def __init__(self):
        self.passed = self.failed = 0
        self.lines = []

    def check(self, ok, what, figures=""):
        mark = "ok    " if ok else "FAILED"
        line = "%s %s%s" % (mark, what, (": " + figures) if figures else "")
        print(line)
        self.lines.append(line)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def sample_rss(stack):
    out = {}
    for pid in stack.worker_pids():
        kb = rss_kb(pid)
        if kb is not None:
            out[pid] = kb
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rate", type=float, default=300,
                    help="requests per second over all threads [300]")
    args = ap.parse_args()
    # A TERM (e.g. from timeout(1)) must still stop the stack: exit through
    # the finally clauses and atexit handlers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.duration < 20:
        ap.error("--duration must be at least 20 s (the outage alone is 10 s)")
    log_dir = os.environ.get("SOAK_LOG_DIR") or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "items-soak-%d" % os.getuid())
    os.makedirs(log_dir, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    log_path = os.path.join(log_dir, "responses-%s.jsonl" % run_id)

    print("soak %s: %d s, %d workers, %d threads, %.0f requests/s; responses "
          "in %s" % (run_id, args.duration, args.workers, args.threads,
                     args.rate, log_path), flush=True)
    stack = Stack(workers=args.workers, env={
        # The soak's writes are not what nginx's write limit is for.
        "WRITE_RATE": "100000r/s", "WRITE_BURST": "100000"})
    checks = Checks()
    try:
        return run(args, stack, checks, log_path, run_id)
    finally:
        stack.stop()


def run(args, stack, checks, log_path, run_id):
    begin = time.monotonic()
    rec = Recorder(log_path, begin)
    model = Model()
    stop = threading.Event()
    workers0 = stack.wait_workers(args.workers)
    sentinel = min(workers0) if workers0 else None
    threads = [LoadThread(n, args, stack, rec, model, stop, run_id)
               for n in range(args.threads)]
    for t in threads:
        t.start()
    faults = Faults(args, stack, begin, stop, sentinel)
    faults.start()

    # RSS after warm-up (the first kill is at 5 s; the sentinel is never
    # killed), then every second until the end.
    warm = min(10.0, args.duration / 4)
    stop.wait(warm)
    rss_early = sample_rss(stack)
    deadline = begin + args.duration
    while time.monotonic() < deadline and not stop.is_set():
        stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    for t in threads:
        t.join(CLIENT_TIMEOUT + 5)
    faults.join(120)
    load_end = time.monotonic() - begin
    workers_end = stack.wait_workers(args.workers, timeout=15)
    rss_end = sample_rss(stack)
    rec.close()

    records = [r for r in rec.records if r.get("status", 0) != -1]
    mismatches = [r for r in rec.records if r.get("status") == -1]
    events = faults.events
    kills = [e for e in events if e[1] == "kill"]
    ev = {e[1]: e[0] for e in events}
    outage = (ev.get("db-stop-begin"), ev.get("db-started"))

    print("\nfaults:")
    for e in events:
        print("  %7.3f s  %s %s" % e)

    by_status = collections.Counter(r["status"] for r in records)
    by_route = collections.Counter(r["route"] for r in records)
    writes = sum(by_route[k] for k in ("create", "replace", "delete"))
    print("\nrequests: %d in %.0f s (%d reads, %d writes); by status: %s" % (
        len(records), load_end, len(records) - writes, writes,
        dict(sorted(by_status.items()))))
    print("by route: %s" % dict(sorted(by_route.items())))
    print()

    # 1. No 500, no client errors; a 504 only for a write in the outage.
    bad = [r for r in records if r["status"] == 500]
    checks.check(not bad, "no 500", "%d seen%s" % (
        len(bad), (" e.g. %r" % bad[0]) if bad else ""))
    r504 = [r for r in records if r["status"] == 504]
    lo = outage[0] if outage[0] is not None else float("inf")
    hi = (outage[1] if outage[1] is not None else lo) + OUTAGE_GRACE
    bad = [r for r in r504 if r["method"] not in ("POST", "PUT", "DELETE")
           or r["end"] < lo or r["start"] > hi]
    checks.check(not bad, "504 only for a write in flight in the outage",
                 "%d 504s, %d not%s" % (len(r504), len(bad),
                                        (" e.g. %r" % bad[0]) if bad else ""))
    errors = [r for r in records if r["status"] == 0]
    checks.check(not errors, "no client-side error (timeout, reset)",
                 "%d%s" % (len(errors), (" e.g. %r" % errors[0])
                           if errors else ""))

    # 2. 502: writes in flight at a kill, at most one per kill.
    r502 = sorted((r for r in records if r["status"] == 502),
                  key=lambda r: r["end"])
    used, unexplained = set(), []
    for r in r502:
        match = None
        if r["method"] in ("POST", "PUT", "DELETE"):
            for i, (t, _, _) in enumerate(kills):
                if i not in used and r["start"] - 0.05 <= t <= r["end"] + 0.05:
                    match = i
                    break
        if match is None:
            unexplained.append(r)
        else:
            used.add(match)
    checks.check(not unexplained,
                 "502 only for a write in flight at a kill, at most one per "
                 "kill", "%d 502s for %d kills, %d unexplained%s" % (
                     len(r502), len(kills), len(unexplained),
                     (" e.g. %r" % unexplained[0]) if unexplained else ""))

    # 3. 503 only inside the outage window.
    r503 = [r for r in records if r["status"] == 503]
    if outage[0] is not None and outage[1] is not None:
        lo, hi = outage[0], outage[1] + OUTAGE_GRACE
        outside = [r for r in r503 if r["end"] < lo or r["start"] > hi]
        in_window = [r for r in r503 if r not in outside]
        last = max((r["end"] for r in in_window), default=None)
        checks.check(not outside, "503 only during the outage (+%.0f s)" %
                     OUTAGE_GRACE, "%d 503s, window %.1f..%.1f s%s, %d "
                     "outside" % (len(r503), lo, hi,
                                  (", last 503 at %.1f s" % last)
                                  if last else "", len(outside)))
    else:
        checks.check(False, "the database outage happened",
                     "events %r" % events)

    # 4. Nothing else unexpected.
    allowed = {"list": {200}, "get": {200, 404}, "status": {200},
               "create": {201}, "replace": {200}, "delete": {204}}
    other = [r for r in records
             if r["status"] not in allowed[r["route"]] and
             r["status"] not in (0, 500, 502, 503, 504)]
    checks.check(not other and not mismatches,
                 "no other status than the operation's own",
                 "%d other, %d 201 bodies not as sent%s" % (
                     len(other), len(mismatches),
                     (" e.g. %r" % (other or mismatches)[0])
                     if other or mismatches else ""))
    checks.check(not faults.errors, "every fault injected",
                 "%d kills, %d reloads, outage %s; %s" % (
                     len(kills), sum(1 for e in events
                                     if e[1] == "nginx-reload"),
                     "yes" if outage[1] else "no",
                     faults.errors or "no errors"))

    # 5. Every acknowledged write readable with its content; nothing twice.
    listing = stack.all_items()
    ids = [i["id"] for i in listing]
    by_id = {i["id"]: i for i in listing}
    names = collections.Counter(i["name"] for i in listing)
    dup_ids = len(ids) - len(set(ids))
    ours = {n: c for n, c in names.items()
            if n.startswith("soak %s " % run_id)}
    twice = {n: c for n, c in ours.items() if c > 1}
    wrong, checked = [], 0
    for item_id, entry in model.items.items():
        checked += 1
        got = by_id.get(item_id)
        state = None if got is None else (got["name"], got["description"])
        if state not in entry["states"]:
            wrong.append((item_id, state, entry["states"]))
        elif got is not None and got["created_at"] != entry["created_at"]:
            wrong.append((item_id, "created_at", got["created_at"],
                          entry["created_at"]))
    # Each 201 item also by itself (GET /items/{id}), not only in the list.
    sample = list(model.items.items())
    random.Random(1).shuffle(sample)
    for item_id, entry in sample[:200]:
        r = stack.request("GET", "/items/%d" % item_id)
        state = None
        if r.status == 200:
            it = r.json()
            state = (it["name"], it["description"])
        if state not in entry["states"]:
            wrong.append((item_id, "GET", r.status, state))
    known = set(model.created_names) | model.put_names
    stray = [n for n in ours if n not in known and
             n not in model.ambiguous_names]
    checks.check(not wrong, "every acknowledged write readable with its "
                 "exact content", "%d items written (201), %d checked in the "
                 "listing and 200 by GET, %d wrong%s" % (
                     len(model.items), checked, len(wrong),
                     (" e.g. %r" % (wrong[0],)) if wrong else ""))
    checks.check(not twice and not dup_ids and not stray,
                 "no item twice, none unexplained",
                 "%d items listed, %d of this run; %d names twice, %d ids "
                 "twice, %d not acknowledged (%d POSTs got 502)" % (
                     len(listing), len(ours), len(twice), dup_ids,
                     len(stray), len(model.ambiguous_names)))

    # 6. Pool back to N workers.
    checks.check(len(workers_end) == args.workers,
                 "the pool is back to %d workers" % args.workers,
                 "%d live: %s" % (len(workers_end), workers_end))

    # 7. RSS.
    if sentinel in rss_early and sentinel in rss_end:
        a, b = rss_early[sentinel], rss_end[sentinel]
        checks.check(b <= a * (1 + RSS_GROWTH_MAX),
                     "RSS of the long-lived worker grew <= 10 %",
                     "pid %d: %d kB at %.0f s -> %d kB at the end (%+.1f %%)"
                     % (sentinel, a, warm, b, 100.0 * (b - a) / a))
    else:
        checks.check(False, "RSS of the long-lived worker measured",
                     "sentinel %s early %s end %s" % (sentinel, rss_early,
                                                      rss_end))
    sa, sb = sum(rss_early.values()), sum(rss_end.values())
    checks.check(sa > 0 and sb <= sa * (1 + RSS_GROWTH_MAX),
                 "RSS summed over the pool grew <= 10 %",
                 "%d kB over %d workers -> %d kB over %d workers (%+.1f %%)"
                 % (sa, len(rss_early), sb, len(rss_end),
                    100.0 * (sb - sa) / sa if sa else 0.0))

    print("\nresponses: %s" % log_path)
    print("%d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
