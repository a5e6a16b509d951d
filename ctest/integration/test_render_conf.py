#!/usr/bin/env python3
"""nginx/render-conf.sh: the front container renders nginx.conf from its
environment at every start (nginx/front-entrypoint), so every value is
checked before it reaches the file. Good values render a configuration that
the real nginx accepts (`nginx -t`); a value that does not fit its variable is
refused with exit 2 and the variable named; and no accepted value, however
odd, adds a directive or a block (the rendered file has as many ';', '{' and
'}' as with the defaults), swept over random values of hostile characters.
"""

import os
import random
import shutil
import subprocess
import tempfile
import unittest

from stack import main

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RENDER = os.path.join(REPO, "nginx", "render-conf.sh")
SWEEP = 300  # random values per variable


class RenderConf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="items-render.")
        for d in ("run", "log"):
            os.mkdir(os.path.join(cls.tmp, d))
        cls.base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HTTP_LISTEN": "127.0.0.1:18080", "METRICS_LISTEN": "127.0.0.1:18081",
            "FCGI_BACKEND": "api:9000",
            "STATIC_ROOT": os.path.join(REPO, "nginx", "html"),
            "NGINX_RUN_DIR": os.path.join(cls.tmp, "run"), "NGINX_LOG_DIR": os.path.join(cls.tmp, "log"),
        }
        cls.count = 0
        cls.baseline = cls.shape(cls.render({})[1])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def render(cls, extra):
        cls.count += 1
        out = os.path.join(cls.tmp, f"conf{cls.count}")
        proc = subprocess.run(["sh", RENDER, out], env={**cls.base, **extra}, capture_output=True, text=True,
                              timeout=30)
        text = ""
        if proc.returncode == 0:
            with open(os.path.join(out, "nginx.conf"), encoding="utf-8") as f:
                text = f.read()
            for name in ("items-upstream.conf", "items-realip.conf"):
                with open(os.path.join(out, name), encoding="utf-8") as f:
                    text += f.read()
        return proc, text, out

    @staticmethod
    def shape(text):
        return tuple(text.count(c) for c in ";{}")

    def nginx_t(self, out):
        proc = subprocess.run(["nginx", "-t", "-q", "-c", os.path.join(out, "nginx.conf"), "-e", "stderr"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_good_values_pass_nginx_t(self):
        cases = [
            {},
            {"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "127.0.0.1:9000"},
            {"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "unix:/run/items/fcgi.sock"},
            {"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "unix:/run/items/fcgi.sock",
             "FCGI_UPSTREAM_BACKUP": "unix:/run/items/fcgi-next.sock"},
            {"WRITE_RATE": "600r/m", "WRITE_BURST": "1", "NGINX_WORKER_PROCESSES": "3",
             "NGINX_RLIMIT_NOFILE": "65536"},
            {"REAL_IP_FROM": "10.0.0.0/8, 192.0.2.1 2001:db8::/32,172.16.0.0/12"},
            {"STATIC_ROOT": os.path.join(self.tmp, "a dir with spaces")},
        ]
        os.makedirs(os.path.join(self.tmp, "a dir with spaces"), exist_ok=True)
        for extra in cases:
            with self.subTest(extra=extra):
                proc, text, out = self.render(extra)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.nginx_t(out)

    def test_values_land_where_they_belong(self):
        proc, text, _ = self.render({"WRITE_RATE": "7r/s", "WRITE_BURST": "3", "NGINX_WORKER_PROCESSES": "2",
                                     "REAL_IP_FROM": "10.0.0.0/8,192.0.2.1"})
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("rate=7r/s;", text)
        self.assertIn("burst=3 nodelay;", text)
        self.assertIn("worker_processes 2;", text)
        self.assertIn("set_real_ip_from 10.0.0.0/8;", text)
        self.assertIn("set_real_ip_from 192.0.2.1;", text)
        self.assertIn("real_ip_header X-Forwarded-For;", text)
        self.assertNotIn("upstream items_api", text, "a static upstream with FCGI_BACKEND=api:9000")
        proc, text, _ = self.render({})
        self.assertNotIn("set_real_ip_from", text, "REAL_IP_FROM empty must trust no proxy")
        proc, text, _ = self.render({"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "127.0.0.1:9000"})
        self.assertEqual(text.count("server 127.0.0.1:9000 max_fails=0;"), 2)

    def test_resolved_name_tries_three_addresses(self):
        """FCGI_BACKEND a name (the replicas under Swarm, resolved through DNS): a lost node takes
        up to two of three replicas at once, so a failed request is tried on three addresses (not
        all: a request that crashes a worker would crash one in every replica), bounded in time
        (11 s: one read timeout, 10 s, and a little); the static upstream keeps its 2 tries."""
        proc, text, _ = self.render({})
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("fastcgi_next_upstream_tries 3;", text)
        self.assertIn("fastcgi_next_upstream_timeout 11s;", text)
        proc, text, _ = self.render({"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "127.0.0.1:9000"})
        self.assertIn("fastcgi_next_upstream_tries 2;", text)
        self.assertNotIn("fastcgi_next_upstream_timeout", text)

    def test_metrics_replica_follows_the_transport(self):
        """/metrics/replica passes a scrape to the replica at ?address=; a pool on a unix socket
        (API_TRANSPORT=unix) is the only one, so the address leads to its upstream instead."""
        replica = "(?<replica_port>[0-9]{1,5})$\""
        cases = [({}, "$replica_ip:$replica_port;"),
                 ({"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "127.0.0.1:9000"}, "$replica_ip:$replica_port;"),
                 ({"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "unix:/run/items-api/fcgi.sock"}, "items_api;")]
        for extra, want in cases:
            with self.subTest(extra=extra):
                proc, text, out = self.render(extra)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                line = next(x for x in text.splitlines() if replica in x)
                self.assertTrue(line.rstrip().endswith(want), line)
                self.nginx_t(out)

    def test_bad_values_refused_with_the_variable_named(self):
        cases = {
            "WRITE_RATE": ["10r/s;", "10", "r/s", "0r/s", "10r/h", "10 r/s", "10r/s }", "-1r/s"],
            "WRITE_BURST": ["", "0", "20;", "x", "-1", "2 0", "20}"],
            "REAL_IP_FROM": ["10.0.0.0/8;", "10.0.0.0/8 }", "a.b.c.d", "1.2.3.4\nx", "*", "1.2.3.4{", "10.0.0.0/8/8",
                             "fe80::/10;", "1.2.3.4 a"],
            "NGINX_WORKER_PROCESSES": ["0", "auto;", "two", "", "1 2"],
            "NGINX_RLIMIT_NOFILE": ["100", "4096;", "x", ""],
            "FCGI_BACKEND": ["api", "api:", ":9000", "api:90x", "api:9000;", "a;b:9000", "api:9000 backup"],
            "HTTP_LISTEN": ["8080;", "8080 ssl", "x:80", "80}"],
            "STATIC_ROOT": ["relative", "/a;\"b", "/a$b", "/a\\b", "/a\nb"],
            "DNS_RESOLVER": ["127.0.0.11;", "dns.example"],
        }
        for var, values in cases.items():
            for value in values:
                with self.subTest(var=var, value=value):
                    proc, _, _ = self.render({var: value})
                    if value == "":
                        # empty = unset: the default applies
                        self.assertEqual(proc.returncode, 0, proc.stderr)
                        continue
                    self.assertEqual(proc.returncode, 2, f"accepted: {proc.stderr}")
                    self.assertIn(var, proc.stderr)

    def test_backup_pool(self):
        """FCGI_UPSTREAM_BACKUP (the unix transport's fcgi-next.sock): a backup server after the pool's
        two entries, absent without it; a value with anything but an address is refused."""
        base = {"FCGI_BACKEND": "items_api", "FCGI_UPSTREAM": "unix:/run/a.sock"}
        proc, _, out = self.render({**base, "FCGI_UPSTREAM_BACKUP": "unix:/run/b.sock"})
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(os.path.join(out, "items-upstream.conf"), encoding="utf-8") as f:
            servers = [ln.strip() for ln in f if ln.strip().startswith("server ")]
        self.assertEqual(servers, ["server unix:/run/a.sock max_fails=0;"] * 2
                         + ["server unix:/run/b.sock max_fails=0 backup;"])
        with open(os.path.join(out, "items-upstream.conf"), encoding="utf-8") as f:
            self.assertIn("fastcgi_next_upstream_tries 3;", f.read(), "the backup is the third try")
        proc, _, out = self.render(base)
        with open(os.path.join(out, "items-upstream.conf"), encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn("backup;", text)
        self.assertIn("fastcgi_next_upstream_tries 2;", text)
        for value in ("unix:/run/b.sock;", "unix:/run/b.sock down", "a{b"):
            with self.subTest(value=value):
                proc, _, _ = self.render({**base, "FCGI_UPSTREAM_BACKUP": value})
                self.assertEqual(proc.returncode, 2, f"accepted: {proc.stderr}")
                self.assertIn("FCGI_UPSTREAM_BACKUP", proc.stderr)

    def test_static_upstream_needs_its_address(self):
        proc, _, _ = self.render({"FCGI_BACKEND": "items_api"})
        self.assertEqual(proc.returncode, 2)
        self.assertIn("FCGI_UPSTREAM", proc.stderr)

    def test_random_values_never_add_a_directive(self):
        rng = random.Random(20261201)
        alphabet = "0123456789abcdefrsm/.:;{}[]\"'$\\ \t\n#-_,*?"
        for var in ("WRITE_RATE", "WRITE_BURST", "REAL_IP_FROM", "NGINX_WORKER_PROCESSES", "FCGI_BACKEND",
                    "HTTP_LISTEN", "DNS_RESOLVER"):
            for _ in range(SWEEP // 10):
                value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
                proc, text, _ = self.render({var: value})
                self.assertIn(proc.returncode, (0, 2), proc.stderr)
                if proc.returncode == 0:
                    if var == "REAL_IP_FROM":
                        # each accepted element is one set_real_ip_from line, nothing else
                        continue
                    self.assertEqual(self.shape(text), self.baseline, f"{var}={value!r} changed the structure")


if __name__ == "__main__":
    main()
