#!/usr/bin/env python3
"""Slow clients at the front door: nginx must cut them off with its timeouts
(client_header_timeout and client_body_timeout, 10 s in the configuration)
and must not let them starve other clients (nginx buffers request bodies, so
no FastCGI worker waits on a slow client).

    python3 ctest/hostile/test_slow_clients.py     # starts its own stack

Each test prints its figures (time to cut off, latency of the normal
requests made meanwhile). The two timeouts are waited out together, in one
window: slow headers and stalled bodies run side by side.
"""

import http.client
import json
import selectors
import socket
import threading
import time

import hostile
from hostile import connect, main

TOKEN = "hostile-slow-token"
WORKERS = 2
NGINX_TIMEOUT = 10.0      # client_header_timeout / client_body_timeout
CUT_SLACK = 4.0           # nginx's timers are coarse; allow this much more
NORMAL_MAX_LATENCY = 1.0  # a normal request while slow clients hang on


class Prober(threading.Thread):
    """Normal requests on fresh connections, every `interval` seconds, until
    stopped: (status, seconds) of each."""

    def __init__(self, port, paths, interval=0.2):
        super().__init__(daemon=True)
        self.port, self.paths, self.interval = port, paths, interval
        self.results = []
        self.stop_event = threading.Event()

    def run(self):
        i = 0
        while not self.stop_event.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            begin = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                  timeout=5)
                conn.request("GET", path)
                status = conn.getresponse().status
                conn.close()
            except OSError as e:
                status = "error: %s" % e
            self.results.append((path, status, time.monotonic() - begin))
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(10)

    def summary(self):
        lat = [r[2] for r in self.results]
        return "%d normal requests, statuses %s, max latency %.3f s" % (
            len(self.results), sorted({str(r[1]) for r in self.results}),
            max(lat) if lat else 0.0)


class SlowClients:
    """Connections that each send `first` bytes, then `drip` every `every`
    seconds (None: nothing more), watched with a selector until nginx closes
    them or `limit` seconds pass. closed[i] is the time from connect to the
    close (None if still open at the end); answers[i] what nginx sent."""

    def __init__(self, port, count, first, drip, every, limit):
        self.sel = selectors.DefaultSelector()
        self.socks, self.started = [], []
        self.closed = [None] * count
        self.answers = [b""] * count
        self.drip, self.every, self.limit = drip, every, limit
        for i in range(count):
            s = connect(port, timeout=5)
            s.sendall(first(i) if callable(first) else first)
            s.setblocking(False)
            self.socks.append(s)
            self.started.append(time.monotonic())
            self.sel.register(s, selectors.EVENT_READ, i)

    def run(self, during=None, deadline=None):
        """Drip until every connection is closed or the limit passes (or
        `deadline`, a time.monotonic() value shared with another group);
        call `during()` once after the first second."""
        end = deadline if deadline is not None else \
            time.monotonic() + self.limit
        next_drip = time.monotonic() + (self.every or self.limit)
        called = False
        while time.monotonic() < end and None in self.closed:
            for key, _ in self.sel.select(timeout=0.05):
                self._read(key.data)
            now = time.monotonic()
            if self.drip is not None and now >= next_drip:
                next_drip = now + self.every
                for i, s in enumerate(self.socks):
                    if self.closed[i] is None:
                        try:
                            s.send(self.drip)
                        except BlockingIOError:
                            pass
                        except OSError:
                            self._close(i)
            if during is not None and not called and \
                    now - self.started[0] > 1.0:
                called = True
                during()
        for i in range(len(self.socks)):
            if self.closed[i] is None:
                self.sel.unregister(self.socks[i])
            self.socks[i].close()

    def _read(self, i):
        try:
            data = self.socks[i].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.answers[i] += data
        else:
            self._close(i)

    def _close(self, i):
        if self.closed[i] is None:
            self.closed[i] = time.monotonic() - self.started[i]
            self.sel.unregister(self.socks[i])

    def figures(self):
        done = [c for c in self.closed if c is not None]
        if not done:
            return "none of %d closed" % len(self.closed)
        return "%d/%d cut off after %.1f..%.1f s" % (
            len(done), len(self.closed), min(done), max(done))


class SlowClientsTest(hostile.HostileTestCase):
    stack_options = {"workers": WORKERS, "token": TOKEN}

    def assertCutOff(self, clients, what):
        still_open = sum(1 for c in clients.closed if c is None)
        self.assertEqual(still_open, 0, "%s: %d connections still open "
                         "after %.0f s" % (what, still_open, clients.limit))
        self.assertLessEqual(max(clients.closed), NGINX_TIMEOUT + CUT_SLACK,
                             what)
        # Not before the timeout: the client was cut off by the timer, not
        # refused for another reason.
        self.assertGreaterEqual(min(clients.closed), NGINX_TIMEOUT - 1.0,
                                what)

    def assertNotStarved(self, prober, what):
        self.assertGreater(len(prober.results), 10, prober.summary())
        bad = [r for r in prober.results if r[1] != 200]
        self.assertEqual(bad, [], what)
        slow = [r for r in prober.results if r[2] > NORMAL_MAX_LATENCY]
        self.assertEqual(slow, [], "%s: %s" % (what, prober.summary()))

    def test_slowloris_and_stalled_body(self):
        """Both of nginx's read timeouts in one window, since each test of
        them waits out its 10 s:
        - slowloris: 100 connections send a request line, then one header
          line per second, never the blank line: nginx drops each one when
          client_header_timeout runs out (it is not reset by the trickle);
        - stalled body: 50 writes announce 100 bytes, send 10 and stall:
          nginx cuts each off after client_body_timeout; no worker ever
          sees them.
        Both groups start together and are checked against one deadline,
        while normal requests keep being answered at once."""
        before = len(self.pool_log_requests())
        head = (b"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                b"\r\n" + b'{"name":"s')
        limit = NGINX_TIMEOUT + CUT_SLACK + 3
        prober = Prober(self.port, ["/status", "/items?limit=5", "/items/1"])
        slowloris = SlowClients(
            self.port, 100,
            first=b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            drip=b"X-Slow: 1\r\n", every=1.0, limit=limit)
        stalled = SlowClients(self.port, 50, first=head, drip=None,
                              every=None, limit=limit)
        # One deadline for both: the stalled group runs beside the slowloris
        # one, which starts the prober after its first second.
        deadline = time.monotonic() + limit
        beside = threading.Thread(target=stalled.run,
                                  kwargs={"deadline": deadline}, daemon=True)
        beside.start()
        try:
            slowloris.run(during=prober.start, deadline=deadline)
        finally:
            beside.join(limit + 5)
            prober.stop()
        self.assertFalse(beside.is_alive(), "the stalled-body group did "
                         "not finish by its deadline")
        print("\nslowloris: %s; stalled body: %s; meanwhile %s" % (
            slowloris.figures(), stalled.figures(), prober.summary()))
        self.assertCutOff(slowloris, "slowloris")
        self.assertCutOff(stalled, "stalled body")
        self.assertNotStarved(prober, "normal requests during slowloris "
                              "and stalled bodies")
        # Nothing of these requests reached a worker.
        self.assertFalse(any(b"HTTP/1.1 200" in a
                             for a in slowloris.answers))
        posts = [r for r in self.pool_log_requests()[before:]
                 if r[0] == "POST"]
        self.assertEqual(posts, [], "a stalled body reached a worker")

    def test_trickled_body_holds_no_worker(self):
        """3 x WORKERS writes trickle their body a byte every 0.4 s (each
        read well within client_body_timeout, so nginx keeps waiting): the
        bodies are buffered by nginx, so the workers stay free for normal
        requests, and each slow write is answered 201 once complete."""
        count = 3 * WORKERS
        bodies = [json.dumps({"name": "slow body %d" % i}).encode()
                  for i in range(count)]
        heads = [(b"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                  % len(b)) for b in bodies]
        socks = [connect(self.port, timeout=5) for _ in range(count)]
        for s, h in zip(socks, heads):
            s.sendall(h)
        prober = Prober(self.port, ["/status", "/items?limit=3"])
        prober.start()
        begin = time.monotonic()
        try:
            longest = max(len(b) for b in bodies)
            for k in range(longest):
                for s, b in zip(socks, bodies):
                    if k < len(b):
                        s.sendall(b[k:k + 1])
                time.sleep(0.4)
            trickle = time.monotonic() - begin
            answers = []
            for s in socks:
                s.settimeout(10)
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        break
                    if not chunk:
                        break
                    data += chunk
                answers.append(data)
        finally:
            prober.stop()
            for s in socks:
                s.close()
        print("\ntrickled bodies: %d writes over %.1f s; meanwhile %s" % (
            count, trickle, prober.summary()))
        self.assertNotStarved(prober, "normal requests during trickled bodies")
        for a in answers:
            self.assertTrue(a.startswith(b"HTTP/1.1 201"), a[:200])


if __name__ == "__main__":
    main()
