"""scripts/lib/docker.sh's dk_swarm_placement: the Swarm placement chosen from the nodes' labels and
number (docs/scaling.md "Placement"), against a fake `docker` that answers as a swarm of the given
nodes would (a pure function of those answers: no engine here). The real engine's side is the
cluster suite's (ctest/cluster)."""

import os
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# `docker node ls --format '{{.ID}} {{.Availability}}'` and `docker node inspect -f <labels
# template> ID...` (one label a line, as the template prints them).
FAKE_DOCKER = """#!/bin/sh
case "$*" in
    "node ls --format {{.ID}} {{.Availability}}") cat "$FAKE/nodes" ;;
    "node inspect -f "*) cat "$FAKE/labels" ;;
    *) echo "fake docker: unexpected: $*" >&2; exit 1 ;;
esac
"""


class Placement(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="items-placement.")
        # docker.sh reads .env beside its repository (dk_setting): a copy with none, so that a
        # checkout's .env cannot change the answers.
        lib = os.path.join(self.tmp, "repo", "scripts", "lib")
        os.makedirs(lib)
        shutil.copy(os.path.join(REPO, "scripts", "lib", "docker.sh"), lib)
        self.bin = os.path.join(self.tmp, "bin")
        os.mkdir(self.bin)
        with open(os.path.join(self.bin, "docker"), "w", encoding="utf-8") as f:
            f.write(FAKE_DOCKER)
        os.chmod(os.path.join(self.bin, "docker"), 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def place(self, labels, availability, **env):
        for name, lines in (("nodes", [f"id{i} {a}" for i, a in enumerate(availability)]), ("labels", labels)):
            with open(os.path.join(self.tmp, name), "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        base = {k: v for k, v in os.environ.items()
                if k not in ("DB_PLACEMENT", "FRONT_MODE", "FRONT_PLACEMENT", "API_MAX_PER_NODE",
                             "API_REPLICAS", "OVERLAY_ENCRYPTION", "DOCKER_HOST")}
        # A remote engine: the kernel check (ESP) is not this machine's business.
        base.update(FAKE=self.tmp, PATH=f"{self.bin}:{os.environ['PATH']}", DOCKER_HOST="tcp://192.0.2.1:2376")
        base.update(env)
        proc = subprocess.run(
            ["bash", "-c", '. "$1" && dk_swarm_placement && '
             'printf "%s|%s|%s|%s|%s" "$DB_PLACEMENT" "$FRONT_MODE" "${FRONT_PLACEMENT:-}" "$API_MAX_PER_NODE" '
             '"$OVERLAY_ENCRYPTION"', "place", os.path.join(self.tmp, "repo", "scripts", "lib", "docker.sh")],
            env=base, capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.split("|")

    def test_single_node(self):
        self.assertEqual(self.place([], ["Active"]), ["node.role == manager", "replicated", "", "0", "on"])

    def test_labels_on_any_node_and_any_line(self):
        # The labels of three nodes, sorted per node: items.db comes first on its node's lines,
        # and that node is not the first listed (a test of every line, not only the first).
        labels = ["items.front=true", "zone=a", "items.db=true", "items.front=true", "items.front=true"]
        got = self.place(labels, ["Active"] * 3)
        self.assertEqual(got, ["node.labels.items.db == true", "global", "node.labels.items.front == true",
                               "2", "on"])

    def test_no_labels_on_a_cluster(self):
        self.assertEqual(self.place(["zone=a"], ["Active"] * 3)[:4], ["node.role == manager", "replicated", "", "2"])

    def test_a_label_that_only_contains_the_name(self):
        got = self.place(["x.items.db=true", "items.front=truer"], ["Active"] * 3)
        self.assertEqual(got[:3], ["node.role == manager", "replicated", ""])

    def test_room_for_a_lost_node(self):
        for replicas, active, want in ((3, 3, "2"), (4, 3, "2"), (5, 3, "3"), (3, 2, "3"), (6, 4, "2"), (1, 3, "1")):
            with self.subTest(replicas=replicas, active=active):
                got = self.place([], ["Active"] * active + ["Drain"], API_REPLICAS=str(replicas))
                self.assertEqual(got[3], want)

    def test_settings_given_are_kept(self):
        got = self.place(["items.db=true", "items.front=true"], ["Active"] * 3, DB_PLACEMENT="node.hostname == db1",
                         FRONT_MODE="replicated", API_MAX_PER_NODE="1", OVERLAY_ENCRYPTION="off")
        self.assertEqual(got, ["node.hostname == db1", "replicated", "", "1", "off"])

    def test_bad_encryption_setting_refused(self):
        proc_env = {"OVERLAY_ENCRYPTION": "yes"}
        with self.assertRaises(AssertionError):
            self.place([], ["Active"], **proc_env)


if __name__ == "__main__":
    unittest.main()
