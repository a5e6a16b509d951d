#!/usr/bin/env python3
"""The worker's configuration check (`items-fcgi --check-config`, which the
pool launcher runs before starting): a missing or invalid variable stops
start-up with a non-zero exit and one message naming the variable. No stack:
the binary is ITEMS_FCGI, else build/fcgi-app/items-fcgi."""

import os
import subprocess
import tempfile
import unittest

import stack as harness


class ConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = harness.require_worker_binary()
        cls.tmp = tempfile.TemporaryDirectory(prefix="items-it-config-")
        cls.secret = os.path.join(cls.tmp.name, "secret")
        with open(cls.secret, "w") as f:
            f.write("s3cret\n")
        cls.missing = os.path.join(cls.tmp.name, "no-such-file")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def base(self):
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DB_HOST": "127.0.0.1", "DB_PORT": "3306",
                "MYSQL_DATABASE": "items", "MYSQL_USER": "items",
                "MYSQL_PASSWORD_FILE": self.secret,
                "API_TOKEN_FILE": self.secret}

    def check(self, env):
        return subprocess.run([self.binary, "--check-config"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=10,
                              check=False)

    def test_valid_configurations(self):
        variants = [{}, {"MYSQL_PASSWORD_FILE": None, "MYSQL_PASSWORD": "pw"},
                    {"API_TOKEN_FILE": None, "API_TOKEN": "tok"},
                    {"API_TOKEN_FILE": None}, {"FCGI_WORKERS": "3"}]
        for change in variants:
            with self.subTest(change=change):
                env = self.base()
                for k, v in change.items():
                    if v is None:
                        env.pop(k)
                    else:
                        env[k] = v
                p = self.check(env)
                self.assertEqual(p.returncode, 0, p.stderr)

    def test_invalid_configurations_name_the_variable(self):
        cases = [
            ("MYSQL_DATABASE", None), ("MYSQL_USER", None),
            ("MYSQL_PASSWORD_FILE", None),            # no password at all
            ("MYSQL_PASSWORD_FILE", "missing"),
            ("API_TOKEN_FILE", "missing"),
            ("DB_PORT", "abc"), ("DB_PORT", "0"), ("DB_PORT", "70000"),
            ("DB_PORT", "3306x"), ("FCGI_WORKERS", "0"),
            ("FCGI_WORKERS", "two"), ("FCGI_WORKERS", "-1"),
        ]
        for name, value in cases:
            with self.subTest(variable=name, value=value):
                env = self.base()
                if value is None:
                    env.pop(name)
                else:
                    env[name] = self.missing if value == "missing" else value
                p = self.check(env)
                self.assertNotEqual(p.returncode, 0, p.stdout)
                message = p.stderr.strip()
                self.assertTrue(message)
                self.assertLessEqual(len(message.splitlines()), 2, message)
                stem = name[:-len("_FILE")] if name.endswith("_FILE") else name
                self.assertIn(stem, message)
                self.assertNotIn("s3cret", message + p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
