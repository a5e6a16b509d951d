#!/usr/bin/env python3
"""A fresh stack serves the five seed items of SEED.md with their accents;
a restart on the same RUN_DIR keeps the data and does not seed twice; the
generated API token (none given) is in RUN_DIR/api-token, mode 0600; the
workers run the binary asked for.

Each test starts the stack it needs and no other test touches it: the seed
is what a new datadir holds, so a write or a restart elsewhere must not come
first."""

import filecmp
import os
import stat
import sys

import stack as harness
from stack import main

SEED = {
    "Coupe du Monde 1998":
        "La France remporte sa premi\u00e8re \u00e9toile face au "
        "Br\u00e9sil (3-0).",
    "Zin\u00e9dine Zidane":
        "L\u00e9gende du football, c\u00e9l\u00e8bre pour sa vol\u00e9e en "
        "2002 et sa roulette.",
}
SEED_COUNT = 5
MOJIBAKE = ("\u00c3\u00a9", "\u00c3\u00a8", "\ufffd", "?")
WORKERS = 2


class SeedTest(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        """No stack shared by the tests: each starts its own."""

    def run(self, result=None):
        self._result = result
        self._bad_before = (len(result.failures) + len(result.errors)
                            if result is not None else 0)
        return super().run(result)

    def start_stack(self, **options):
        """A new stack (new RUN_DIR, new datadir) for this test alone; the
        test's cleanup stops it (which reads its sanitizer reports) after
        printing its logs if the test failed."""
        stack = harness.Stack(**options)
        self.addCleanup(self.stop_stack, stack)
        return stack

    def stop_stack(self, stack):
        result = self._result
        if (result is not None and
                len(result.failures) + len(result.errors) > self._bad_before):
            sys.stderr.write("\n---- logs of the stack of %s ----\n%s\n----\n"
                             % (self.id(), stack.logs()))
        stack.stop()

    def test_five_seed_items(self):
        stack = self.start_stack(workers=1, token="seed-token-1998")
        r = stack.request("GET", "/items")
        items = self.assertJSON(r, 200)
        self.assertEqual(len(items), SEED_COUNT, items)
        self.assertEqual([i["id"] for i in items],
                         list(range(1, SEED_COUNT + 1)))
        by_name = {i["name"]: i for i in items}
        self.assertEqual(len(by_name), SEED_COUNT, "distinct names")
        for name, description in SEED.items():
            with self.subTest(name=name):
                self.assertIn(name, by_name)
                self.assertEqual(by_name[name]["description"], description)
        for item in items:
            with self.subTest(id=item["id"]):
                self.assertItem(item)
                self.assertTrue(item["name"].strip())
                self.assertIsInstance(item["description"], str)
                for bad in MOJIBAKE:
                    self.assertNotIn(bad, item["name"] + item["description"])
                one = stack.request("GET", "/items/%d" % item["id"])
                self.assertEqual(self.assertJSON(one, 200), item)
        # Accents are UTF-8 on the wire (raw or \u-escaped JSON both decode
        # to the same text above); and the body is valid UTF-8.
        r.body.decode("utf-8")

    def test_generated_token_file(self):
        # token=None: run-local.sh generates one and writes it to api-token.
        stack = self.start_stack(workers=1, token=None)
        path = os.path.join(stack.run_dir, "api-token")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode, 0o600, oct(mode))
        self.assertGreaterEqual(len(stack.token), 16)
        # The generated token is the one the workers check, and they do.
        wrong = stack.request("POST", "/items", {"name": "wrong token"},
                              {"Authorization": "Bearer x" + stack.token,
                               "Content-Type": "application/json"})
        self.assertError(wrong, 401)
        item = stack.create("with the generated token")
        r = stack.request("DELETE", "/items/%d" % item["id"], None,
                          {"Authorization": "Bearer " + stack.token})
        self.assertEqual(r.status, 204, r)

    def test_restart_keeps_data_and_does_not_reseed(self):
        stack = self.start_stack(workers=1, token="seed-token-restart")
        kept = stack.create("kept across a restart", "\u00e9t\u00e9")
        before = stack.all_items()
        self.assertEqual(len(before), SEED_COUNT + 1, before)
        pids = {name: stack.pid(name) for name in ("mariadb", "pool", "nginx")}
        stack.restart()
        for name, pid in pids.items():
            self.assertNotEqual(stack.pid(name), pid,
                                "%s was not restarted" % name)
        after = stack.all_items()
        self.assertEqual(after, before)
        self.assertIn(kept, after)
        names = [i["name"] for i in after]
        for name in SEED:
            self.assertEqual(names.count(name), 1, names)

    def test_workers_run_the_chosen_binary(self):
        """ITEMS_FCGI (e.g. a sanitizer build) is what the pool runs: every
        worker runs run-local.sh's copy of it, RUN_DIR/bin/items-fcgi."""
        stack = self.start_stack(workers=WORKERS, token="seed-token-binary")
        wanted = os.environ.get("ITEMS_FCGI")
        copy = os.path.join(stack.run_dir, "bin", "items-fcgi")
        pids = stack.wait_workers(WORKERS)
        self.assertEqual(len(pids), WORKERS, pids)
        for pid in pids:
            with self.subTest(worker=pid):
                exe = os.path.realpath("/proc/%d/exe" % pid)
                self.assertEqual(exe, os.path.realpath(copy))
                if wanted:
                    self.assertTrue(filecmp.cmp(exe, wanted, shallow=False),
                                    "%s is not a copy of %s" % (exe, wanted))


if __name__ == "__main__":
    main()
