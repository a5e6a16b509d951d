"""scripts/lib/stackfile.py's translations of placement and network options (pure functions: a
compose configuration in, a stack file out), as compose.swarm.yaml's knobs give them: FRONT_MODE,
FRONT_PLACEMENT, API_MAX_PER_NODE and OVERLAY_ENCRYPTION (docs/scaling.md "Placement"), and the
image deploy.sh keeps for a tier that did not change (--keep-image)."""

import importlib.util
import json
import os
import subprocess
import sys
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_spec = importlib.util.spec_from_file_location("stackfile", os.path.join(REPO, "scripts", "lib", "stackfile.py"))
stackfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stackfile)


def convert(services, networks=None):
    notes = []
    out = stackfile.convert({"services": services, "networks": networks or {}}, notes)
    return out, notes


class Placement(unittest.TestCase):
    def test_global_front_on_labelled_nodes(self):
        out, _ = convert({"front": {"image": "f", "deploy": {
            "mode": "global", "replicas": 1,
            "placement": {"constraints": ["node.labels.items.front == true"]}}}})
        deploy = out["services"]["front"]["deploy"]
        self.assertEqual(deploy["mode"], "global")
        self.assertNotIn("replicas", deploy, "docker stack deploy refuses replicas with mode global")
        self.assertEqual(deploy["placement"]["constraints"], ["node.labels.items.front == true"])

    def test_replicated_front_anywhere(self):
        out, notes = convert({"front": {"image": "f", "deploy": {
            "mode": "replicated", "replicas": 1, "placement": {"constraints": [""]}}}})
        deploy = out["services"]["front"]["deploy"]
        self.assertEqual(deploy["replicas"], 1)
        self.assertNotIn("placement", deploy, "an empty constraint (FRONT_PLACEMENT unset) is no constraint")
        self.assertTrue(any("empty placement constraint" in n for n in notes), notes)

    def test_empty_constraint_dropped_next_to_a_real_one(self):
        out, _ = convert({"db": {"image": "d", "deploy": {
            "placement": {"constraints": ["  ", "node.role == manager"], "max_replicas_per_node": 1}}}})
        self.assertEqual(out["services"]["db"]["deploy"]["placement"],
                         {"constraints": ["node.role == manager"], "max_replicas_per_node": 1})

    def test_max_replicas_per_node(self):
        for given, want in (("2", 2), (3, 3), ("0", None), (0, None)):
            with self.subTest(given=given):
                out, _ = convert({"api": {"image": "a", "deploy": {"placement": {"max_replicas_per_node": given}}}})
                placement = out["services"]["api"]["deploy"].get("placement")
                if want is None:
                    self.assertIsNone(placement, "0 means no limit: left out")
                else:
                    self.assertEqual(placement, {"max_replicas_per_node": want})

    def test_bad_max_replicas_refused(self):
        with self.assertRaises(ValueError):
            convert({"api": {"image": "a", "deploy": {"placement": {"max_replicas_per_node": "two"}}}})


class Encryption(unittest.TestCase):
    def net(self, value):
        out, _ = convert({}, {"data": {"driver": "overlay", "internal": True, "driver_opts": {"encrypted": value}}})
        return out["networks"]["data"]

    def test_on(self):
        for value in ("on", "true", "", "auto"):
            with self.subTest(value=value):
                net = self.net(value)
                self.assertEqual(net["driver_opts"], {"encrypted": ""}, "Docker encrypts when the option is present")
                self.assertTrue(net["internal"])

    def test_off(self):
        for value in ("off", "OFF", "false", "0", "no"):
            with self.subTest(value=value):
                self.assertNotIn("driver_opts", self.net(value), "any value would turn encryption on")

    def test_other_options_kept(self):
        out, _ = convert({}, {"edge": {"driver": "overlay", "driver_opts": {"encrypted": "off", "com.example": "x"}}})
        self.assertEqual(out["networks"]["edge"]["driver_opts"], {"com.example": "x"})


class KeepImage(unittest.TestCase):
    """--keep-image SERVICE=IMAGE (deploy.sh: a tier whose pushed image has the digest it runs)."""

    def run_main(self, *args):
        cfg = json.dumps({"services": {"db": {"image": "r/items-db:new"}, "api": {"image": "r/items-api:new"}}})
        proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "lib", "stackfile.py"), *args],
                              input=cfg, capture_output=True, text=True, timeout=30, check=False)
        return proc

    def test_kept_image_replaces_compose_one_only(self):
        proc = self.run_main("--stack", "items", "--keep-image", "db=r/items-db:old@sha256:" + "a" * 64)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        services = json.loads(proc.stdout)["services"]
        self.assertEqual(services["db"]["image"], "r/items-db:old@sha256:" + "a" * 64)
        self.assertEqual(services["api"]["image"], "r/items-api:new", "a tier not named keeps compose's image")

    def test_unknown_service_refused(self):
        for arg in ("nosuch=r/x:1", "db=", "db"):
            with self.subTest(arg=arg):
                proc = self.run_main("--keep-image", arg)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("--keep-image", proc.stderr)


if __name__ == "__main__":
    unittest.main()
