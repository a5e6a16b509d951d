#!/usr/bin/env python3
"""The database's name is looked up once per connect attempt
(fcgi-app/src/db.c, db_resolve()).

When the db container stops, its name leaves Docker's DNS and a lookup waits
out the resolver's timeout (compose.yaml sets RES_OPTIONS=timeout:1 attempts:1
for that). Connector/C, given the name, asks again for as long as the answer is
"try again" and its connect timeout has not passed: three lookups, and GET
/status 3 s instead of 1 (the compose suite's db-restart check caught it). The
worker resolves the name itself and hands Connector/C the addresses.

The test runs in a network and mount namespace of its own (unshare, as root):
a resolv.conf of its own (Docker's: ndots:0) points at a DNS stub on this
namespace's 127.0.0.1:53, which counts the questions and answers as each test
needs: never (a name Docker's DNS no longer knows), NXDOMAIN, or two addresses
of which only the second has a listener. The worker runs alone on a listening
socket, as spawn-fcgi starts it; nothing leaves the namespace. Without root or
unshare the test is skipped, saying why (under CI=true it fails instead).
"""

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import fcgi_client
import stack as harness
from stack import main, wait_until

INSIDE = "ITEMS_TEST_DB_RESOLVE_INSIDE"
DB_NAME = "db.items.test"
DB_PORT = 3306
TYPE_A, TYPE_AAAA = 1, 28


def unavailable_here():
    """None if the test can make its namespaces here, else why not."""
    if os.geteuid() != 0:
        return "needs root (a network and mount namespace of its own)"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs unshare (util-linux) and ip (iproute2)"
    return None


class DnsStub:
    """A DNS server on 127.0.0.1:53 (UDP) that records each question
    (name, type) and answers by `mode`: "silent" (no answer: the client
    times out, EAI_AGAIN), "nxdomain", or a list of IPv4 addresses for A
    (AAAA: no data)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.mode = "silent"
        self.questions = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()

    def take_questions(self):
        with self.lock:
            taken, self.questions = self.questions, []
        return taken

    def serve(self):
        while not self.stopping:
            try:
                packet, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            parsed = self.parse(packet)
            if parsed is None:
                continue
            name, qtype, question_end = parsed
            with self.lock:
                self.questions.append((name, qtype))
                mode = self.mode
            if mode != "silent":
                self.sock.sendto(self.answer(packet, qtype, question_end,
                                             mode), peer)

    @staticmethod
    def parse(packet):
        if len(packet) < 12 or struct.unpack(">H", packet[4:6])[0] != 1:
            return None
        labels, at = [], 12
        while at < len(packet) and packet[at] != 0:
            n = packet[at]
            labels.append(packet[at + 1:at + 1 + n].decode("ascii", "replace"))
            at += 1 + n
        if at + 5 > len(packet):
            return None
        qtype = struct.unpack(">H", packet[at + 1:at + 3])[0]
        return ".".join(labels), qtype, at + 5

    @staticmethod
    def answer(query, qtype, question_end, mode):
        query_id = query[:2]
        rd = query[2] & 0x01
        addresses = mode if isinstance(mode, list) and qtype == TYPE_A else []
        rcode = 3 if mode == "nxdomain" else 0
        header = query_id + bytes([0x80 | rd, 0x80 | rcode]) + struct.pack(
            ">HHHH", 1, len(addresses), 0, 0)
        records = b"".join(
            struct.pack(">HHHIH", 0xC00C, TYPE_A, 1, 0, 4)
            + socket.inet_aton(a) for a in addresses)
        return header + query[12:question_end] + records


class DbResolveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.environ.get(INSIDE) != "1":
            why = unavailable_here() or "could not enter the namespaces"
            # Under CI a skip would pass a run that tested nothing of it.
            if os.environ.get("CI", "") not in ("", "0", "false"):
                raise AssertionError(why)
            raise unittest.SkipTest(why)
        tmp = tempfile.TemporaryDirectory(prefix="items-it-resolve-")
        cls.addClassCleanup(tmp.cleanup)
        cls.tmp = tmp.name
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # Docker's resolv.conf for a container, and DNS as the only source
        # of host names but /etc/hosts (no nscd, mDNS or systemd-resolved).
        for name, text in (("resolv.conf", "nameserver 127.0.0.1\n"
                            "options ndots:0\n"),
                           ("nsswitch.conf", "hosts: files dns\n")):
            path = os.path.join(cls.tmp, name)
            with open(path, "w") as f:
                f.write(text)
            subprocess.run(["mount", "--bind", path, "/etc/" + name],
                           check=True)
        cls.dns = DnsStub()
        cls.addClassCleanup(cls.dns.close)

    def setUp(self):
        """A worker of the test's own, so that its log starts with what
        this test did."""
        self.log_path = os.path.join(self.tmp, self.id() + ".log")
        env = harness.lone_worker_env({
            "DB_HOST": DB_NAME, "DB_PORT": str(DB_PORT),
            "MYSQL_DATABASE": "items", "MYSQL_USER": "items",
            "MYSQL_PASSWORD": "unused",
            "METRICS_FILE": self.log_path + ".metrics",
            # As compose.yaml sets it for the api.
            "RES_OPTIONS": "timeout:1 attempts:1",
        })
        worker, self.address = harness.spawn_lone_worker(
            [harness.WORKER_BINARY], env, self.log_path)
        self.addCleanup(self.stop, worker)
        self.assertTrue(wait_until(lambda: "worker ready" in self.log(), 10.0),
                        "the worker never became ready:\n" + self.log())

    @staticmethod
    def stop(worker):
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def status(self):
        """GET /status, once the pool's retry delay after the last failed
        probe has passed (else the worker answers 503 without asking)."""
        time.sleep(0.5)
        self.dns.take_questions()
        begin = time.monotonic()
        r = fcgi_client.request(self.address, {
            "REQUEST_METHOD": "GET", "DOCUMENT_URI": "/status",
            "REQUEST_URI": "/status", "QUERY_STRING": ""}, timeout=15.0)
        took = time.monotonic() - begin
        # Questions still on their way are counted too.
        time.sleep(0.2)
        return r, took, self.dns.take_questions()

    def assert_unavailable(self, r):
        self.assertEqual(r.status, 503, r)
        self.assertIn(b'"database unavailable"', r.body)

    def test_unanswered_lookup_is_asked_once(self):
        """The name is gone from DNS (no answer): one question per type,
        the 503 after one resolver timeout, not three."""
        self.dns.mode = "silent"
        for _ in range(2):
            r, took, questions = self.status()
            self.assert_unavailable(r)
            a = [q for q in questions if q[1] == TYPE_A]
            self.assertEqual(len(a), 1, "questions for A: %r" % questions)
            self.assertTrue(all(name == DB_NAME for name, _ in questions),
                            questions)
            print("# unanswered lookup: GET /status 503 in %.2f s, %d "
                  "questions %r" % (took, len(questions), questions))

    def test_unknown_name_is_an_outage(self):
        """NXDOMAIN: 503 'database unavailable', not 500 (a configuration
        error would be), and the log names the lookup's failure."""
        self.dns.mode = "nxdomain"
        r, took, questions = self.status()
        self.assert_unavailable(r)
        self.assertEqual(len([q for q in questions if q[1] == TYPE_A]), 1,
                         questions)
        self.assertRegex(self.log(), r"database unreachable: 2005 Unknown "
                         r"server host 'db\.items\.test' \([^)]+\)")
        print("# NXDOMAIN: GET /status 503 in %.2f s" % took)

    def test_every_address_is_tried(self):
        """Two addresses, nothing listening on the first: the connect goes
        on to the second (there, a listener that closes at once: the
        handshake fails, 503), where Connector/C alone tried each address
        too."""
        seen = []
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.3", DB_PORT))
        server.listen(4)
        server.settimeout(0.2)
        stop = threading.Event()

        def accept():
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                seen.append(conn.getsockname()[0])
                conn.close()
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            for order in (["127.0.0.2", "127.0.0.3"],
                          ["127.0.0.3", "127.0.0.2"]):
                seen.clear()
                self.dns.mode = order
                r, took, _ = self.status()
                self.assert_unavailable(r)
                self.assertEqual(seen, ["127.0.0.3"],
                                 "connections to the listener, answer %r"
                                 % order)
                print("# addresses %r: the listener's reached, GET /status "
                      "%d in %.2f s" % (order, r.status, took))
        finally:
            stop.set()
            thread.join(5)
            server.close()


if __name__ == "__main__":
    if os.environ.get(INSIDE) != "1" and unavailable_here() is None:
        os.environ[INSIDE] = "1"
        os.execvp("unshare", ["unshare", "--net", "--mount", "--propagation",
                              "private", sys.executable,
                              os.path.abspath(__file__)] + sys.argv[1:])
    main()
