#!/usr/bin/env python3
"""A fresh stack serves the five seed items of SEED.md with their accents;
a restart on the same RUN_DIR keeps the data and does not seed twice; the
generated API token (none given) is in RUN_DIR/api-token, mode 0600."""

import filecmp
import os
import stat

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
MOJIBAKE = ("\u00c3\u00a9", "\u00c3\u00a8", "\ufffd", "?")


class SeedTest(harness.StackTestCase):
    # token=None: run-local.sh generates one and writes it to api-token.
    stack_options = {"workers": 1}

    def test_01_five_seed_items(self):
        r = self.stack.request("GET", "/items")
        items = self.assertJSON(r, 200)
        self.assertEqual(len(items), 5, items)
        self.assertEqual([i["id"] for i in items], [1, 2, 3, 4, 5])
        by_name = {i["name"]: i for i in items}
        self.assertEqual(len(by_name), 5, "distinct names")
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
                one = self.stack.request("GET", "/items/%d" % item["id"])
                self.assertEqual(self.assertJSON(one, 200), item)
        # Accents are UTF-8 on the wire (raw or \u-escaped JSON both decode
        # to the same text above); and the body is valid UTF-8.
        r.body.decode("utf-8")

    def test_02_generated_token_file(self):
        path = os.path.join(self.stack.run_dir, "api-token")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode, 0o600, oct(mode))
        self.assertGreaterEqual(len(self.stack.token), 16)
        # The generated token is the one the workers check.
        item = self.stack.create("with the generated token")
        r = self.stack.request("DELETE", "/items/%d" % item["id"], None,
                               {"Authorization": "Bearer "
                                + self.stack.token})
        self.assertEqual(r.status, 204, r)

    def test_03_restart_keeps_data_and_does_not_reseed(self):
        kept = self.stack.create("kept across a restart", "\u00e9t\u00e9")
        before = self.stack.all_items()
        self.stack.restart()
        after = self.stack.all_items()
        self.assertEqual(after, before)
        self.assertIn(kept, after)
        self.assertEqual(sum(1 for i in after if i["name"] in SEED), 2)

    def test_04_workers_run_the_chosen_binary(self):
        """ITEMS_FCGI (e.g. a sanitizer build) is what the pool runs: the
        workers run run-local.sh's copy of it, RUN_DIR/bin/items-fcgi."""
        wanted = os.environ.get("ITEMS_FCGI")
        copy = os.path.join(self.stack.run_dir, "bin", "items-fcgi")
        for pid in self.stack.worker_pids():
            exe = os.path.realpath("/proc/%d/exe" % pid)
            self.assertEqual(exe, os.path.realpath(copy))
            if wanted:
                self.assertTrue(filecmp.cmp(exe, wanted, shallow=False),
                                "%s is not a copy of %s" % (exe, wanted))


if __name__ == "__main__":
    main()
