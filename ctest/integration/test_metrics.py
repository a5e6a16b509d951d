#!/usr/bin/env python3
"""/metrics on the internal listener (METRICS_PORT): Prometheus text,
aggregated over all workers: requests by route, method and code; a duration
histogram; DB errors and reconnects; live workers. Not on the public port."""

import math
import os
import re
import signal
import threading

import stack as harness
from stack import main, wait_until, alive

WORKERS = 2

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Prometheus text format -> (types {family: type}, samples
    [(name, {label: value}, float)]). Raises ValueError on a bad line."""
    types, samples = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError("bad sample line %r" % line)
        labels, rest = {}, m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = LABEL_RE.match(rest, pos)
            if not lm or lm.end() == pos:
                raise ValueError("bad labels in %r" % line)
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count", "_total", ""):
        if suffix and name.endswith(suffix) and name[:-len(suffix)] in types:
            return name[:-len(suffix)]
    return name


class MetricsTest(harness.StackTestCase):
    stack_options = {"workers": WORKERS, "token": "metrics-token-31415"}

    def scrape(self):
        r = self.stack.request("GET", "/metrics", port=self.stack.metrics_port)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith(
            "text/plain"), r)
        text = r.body.decode("utf-8")
        try:
            return parse_metrics(text)
        except ValueError as e:
            self.fail("%s\n%s" % (e, text))

    def counters(self, types, samples):
        """{(name, frozenset(labels)): value} of counter samples."""
        out = {}
        for name, labels, value in samples:
            if types.get(family_of(name, types)) == "counter":
                out[(name, frozenset(labels.items()))] = value
        return out

    def request_counter_deltas(self, before, after):
        """Request counter samples (labels with an HTTP method and a status
        code) that changed, as {(name, labels): delta}."""
        out = {}
        for key, value in after.items():
            labels = dict(key[1])
            values = set(labels.values())
            if not values & {"GET", "POST", "PUT", "DELETE", "HEAD"}:
                continue
            if not any(re.fullmatch(r"[1-5]\d\d", v) for v in values):
                continue
            delta = value - before.get(key, 0.0)
            if delta:
                out[key] = delta
        return out

    def concurrently(self, count, func):
        threads = [threading.Thread(target=func, daemon=True)
                   for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads))

    def find_delta(self, deltas, method, code, route_part):
        hits = [(k, d) for k, d in deltas.items()
                if dict(k[1]).get("method", method) == method
                and method in dict(k[1]).values()
                and code in dict(k[1]).values()
                and any(route_part in v for v in dict(k[1]).values())]
        return hits

    # -- tests ---------------------------------------------------------------

    def test_metrics_not_on_public_port(self):
        self.assertEqual(self.stack.request("GET", "/metrics").status, 404)

    def test_request_counters_aggregated_by_route_method_code(self):
        before = self.counters(*self.scrape())
        # Concurrent requests so that both workers serve some.
        self.concurrently(20, lambda: self.stack.request(
            "GET", "/items/2147483647"))
        self.concurrently(7, lambda: self.stack.request(
            "GET", "/items?limit=abc"))
        self.concurrently(3, lambda: self.stack.request(
            "POST", "/items", '{"name":"m"}',
            {"Content-Type": "application/json"}))
        types, samples = self.scrape()
        deltas = self.request_counter_deltas(before,
                                             self.counters(types, samples))
        text = "\n".join("%s %s %s" % (k[0], dict(k[1]), d)
                         for k, d in deltas.items())
        for method, code, route, count in (("GET", "404", "items", 20),
                                           ("GET", "400", "items", 7),
                                           ("POST", "401", "items", 3)):
            with self.subTest(method=method, code=code):
                hits = self.find_delta(deltas, method, code, route)
                self.assertEqual([d for _, d in hits], [count],
                                 "changed request counters:\n" + text)
        # Routes, not raw paths: no label carries the requested id.
        for _, labels, _ in samples:
            for v in labels.values():
                self.assertNotIn("2147483647", v)
                self.assertNotIn("limit=", v)

    def test_duration_histogram(self):
        self.concurrently(10, lambda: self.stack.request("GET", "/items"))
        types, samples = self.scrape()
        hists = [f for f, t in types.items() if t == "histogram"]
        self.assertTrue(hists, "no histogram family")
        found = False
        for fam in hists:
            series = {}
            for name, labels, value in samples:
                if name.startswith(fam + "_"):
                    key = frozenset((k, v) for k, v in labels.items()
                                    if k != "le")
                    series.setdefault(key, {"buckets": []})
                    if name == fam + "_bucket":
                        le = labels["le"]
                        series[key]["buckets"].append(
                            (math.inf if le == "+Inf" else float(le), value))
                    elif name == fam + "_count":
                        series[key]["count"] = value
                    elif name == fam + "_sum":
                        series[key]["sum"] = value
            for key, s in series.items():
                with self.subTest(family=fam, labels=dict(key)):
                    b = s["buckets"]
                    self.assertTrue(b, "no buckets")
                    bounds = [x for x, _ in b]
                    self.assertEqual(bounds, sorted(bounds))
                    self.assertEqual(b[-1][0], math.inf)
                    counts = [c for _, c in b]
                    self.assertEqual(counts, sorted(counts), "cumulative")
                    self.assertEqual(b[-1][1], s.get("count"))
                    self.assertGreaterEqual(s.get("sum", -1), 0)
                    if s["count"] >= 10:
                        found = True
        self.assertTrue(found, "no histogram series counted the requests")

    def test_db_error_and_reconnect_counters(self):
        def db_metrics(kind):
            _, samples = self.scrape()
            vals = [v for n, _, v in samples
                    if re.search(r"(db|database|mysql|mariadb)", n)
                    and kind in n]
            return vals

        errors0 = db_metrics("error")
        reconnects0 = db_metrics("reconnect")
        self.assertTrue(errors0, "no DB error metric")
        self.assertTrue(reconnects0, "no DB reconnect metric")
        # Warm every worker's connection, then an outage.
        self.concurrently(6, lambda: self.stack.request("GET", "/items"))
        self.stack.db_stop()
        try:
            for _ in range(3):
                self.concurrently(4, lambda: self.stack.request("GET",
                                                                "/items"))
            # The pool has seen the outage: its gate is closed.
            down = self.gauge("items_db_up")
        finally:
            self.stack.db_start()
        self.assertEqual(down, [0], "items_db_up during the outage")
        self.assertTrue(wait_until(
            lambda: self.stack.request("GET", "/items").status == 200, 10))
        self.assertTrue(wait_until(lambda: self.gauge("items_db_up") == [1], 10),
                        "items_db_up after the database came back")
        self.assertGreater(sum(db_metrics("error")), sum(errors0))
        self.assertTrue(wait_until(
            lambda: sum(db_metrics("reconnect")) > sum(reconnects0), 5),
            "reconnect counter did not move")

    def gauge(self, name):
        types, samples = self.scrape()
        return [v for n, _, v in samples
                if n == name and types.get(family_of(n, types)) == "gauge"]

    def live_workers(self):
        return self.gauge("items_workers")

    def test_live_workers_gauge(self):
        vals = self.live_workers()
        self.assertTrue(vals, "no gauge of live workers")
        self.assertEqual(sum(vals), WORKERS)
        # The pool size beside it (an alert compares the two).
        self.assertEqual(self.gauge("items_workers_configured"), [WORKERS])
        self.assertEqual(self.gauge("items_db_up"), [1])
        # After a crash and a replacement, the gauge is N again.
        workers = self.stack.worker_pids()
        victim = workers[-1]
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not alive(victim), 5))
        now = self.stack.wait_workers(WORKERS, 10.0, exclude=[victim])
        self.assertEqual(len(now), WORKERS)
        self.assertTrue(wait_until(
            lambda: sum(self.live_workers()) == WORKERS, 10),
            "live worker gauge %r after replacing a worker"
            % self.live_workers())


if __name__ == "__main__":
    main()
