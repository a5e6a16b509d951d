#!/usr/bin/env python3
"""The stack starts from a checkout that its unprivileged users cannot
reach: a copy of this working tree (scripts/, fcgi-app/, nginx/, mysql/) and
of the worker binary under a 0700 directory, as with a clone in /root. As
root the workers (nobody) and mariadbd (mysql) drop privileges, so
run-local.sh must not hand them paths inside the checkout: the stack is
healthy, serves the seed, takes a write, and its workers are not root.
The binary is ITEMS_FCGI, else build/fcgi-app/items-fcgi."""

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

import stack as harness
from stack import REPO_ROOT, main

WORKERS = 2
TOKEN = "checkout-0700-token"
# What run-local.sh reads from its checkout.
TREES = ("scripts", "fcgi-app", "nginx", "mysql")
SEED_NAME = "Coupe du Monde 1998"


def make_private_checkout():
    """A 0700 directory holding the working tree's copy of TREES and of the
    worker binary; returns (directory, checkout root, binary path)."""
    built = harness.require_worker_binary()
    private = tempfile.mkdtemp(prefix="items-it-0700-")
    os.chmod(private, 0o700)
    root = os.path.join(private, "checkout")
    os.mkdir(root)
    # The working tree, not a clone: the scripts under test may be uncommitted.
    for tree in TREES:
        shutil.copytree(os.path.join(REPO_ROOT, tree),
                        os.path.join(root, tree), symlinks=True)
    binary = os.path.join(root, "bin", "items-fcgi")
    os.mkdir(os.path.dirname(binary))
    shutil.copy2(built, binary)
    return private, root, binary


class CheckoutUnreachableTest(harness.StackTestCase):
    private = None
    binary = None

    @classmethod
    def setUpClass(cls):
        cls.private, root, cls.binary = make_private_checkout()
        cls.addClassCleanup(cls.remove_private)
        cls.stack = harness.Stack(workers=WORKERS, token=TOKEN,
                                  repo_root=root,
                                  env={"ITEMS_FCGI": cls.binary})
        cls.addClassCleanup(cls.stack.stop)

    @classmethod
    def remove_private(cls):
        if os.environ.get("KEEP_TMP") == "1":
            sys.stderr.write("KEEP_TMP=1: kept %s\n" % cls.private)
        else:
            shutil.rmtree(cls.private, ignore_errors=True)

    def test_00_checkout_is_unreachable(self):
        """The premise: nobody cannot reach the binary (else this file tests
        nothing)."""
        self.assertEqual(stat.S_IMODE(os.stat(self.private).st_mode), 0o700)
        if os.geteuid() != 0:
            self.skipTest("not root: the daemons run as this user")
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-x",
                               self.binary], check=False)
        self.assertNotEqual(proc.returncode, 0,
                            "%s is reachable by nobody" % self.binary)

    def test_status(self):
        r = self.stack.request("GET", "/status")
        data = self.assertJSON(r, 200)
        self.assertEqual(data.get("database_connection"), "OK", r)

    def test_items_serves_the_seed(self):
        items = self.assertJSON(self.stack.request("GET", "/items"), 200)
        self.assertIsInstance(items, list)
        self.assertIn(SEED_NAME, [i["name"] for i in items])

    def test_write_with_token(self):
        item = self.stack.create("from a 0700 checkout", "written")
        self.assertItem(item, "from a 0700 checkout", "written",
                        check_text=True)
        r = self.stack.request("GET", "/items/%d" % item["id"])
        self.assertEqual(self.assertJSON(r, 200), item)

    def test_workers_are_not_root(self):
        pids = self.stack.worker_pids()
        self.assertEqual(len(pids), WORKERS, pids)
        want = (pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0
                else os.geteuid())
        for pid in pids:
            with self.subTest(pid=pid):
                with open("/proc/%d/status" % pid) as f:
                    uids = [line.split()[1:] for line in f
                            if line.startswith("Uid:")][0]
                # Real, effective, saved and filesystem uid.
                self.assertEqual(uids, [str(want)] * 4)
                self.assertNotEqual(want, 0)


if __name__ == "__main__":
    main()
