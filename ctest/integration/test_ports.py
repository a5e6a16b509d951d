#!/usr/bin/env python3
"""Ports: run-local.sh binds the ports it is given as "auto" (every stack of
the tests starts so), chooses again when one is taken between its choice and
the daemon's bind, reports the ports it used, and fails with status 75 and
the variable's name when a port it was given is taken.

A socket bound without listen() is how a port is "taken meanwhile": a
connect to it is refused, so it looks free, yet no daemon can bind it.
"""

# run.py: about 20 s (starts three stacks at once and tries taken ports)

import contextlib
import os
import random
import socket
import subprocess
import unittest

import stack as harness
from stack import main, run_concurrently

EXIT_PORT_IN_USE = 75
START_TIMEOUT = 120
AUTO_NAMES = ("HTTP_PORT", "METRICS_PORT", "DB_PORT")


def free_run(count):
    """`count` consecutive ports, each free to bind on 127.0.0.1 a moment
    ago, from below the kernel's ephemeral range."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randint(20000, 32767 - count)
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise harness.StackError("no %d consecutive free ports" % count)


def blocker(port):
    """A socket holding `port` bound, not listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    return s


def listening(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PortsTest(unittest.TestCase):

    def unstarted_stack(self, **env):
        stack = harness.Stack(workers=1, start=False, env=env)
        self.addCleanup(stack.stop)
        return stack

    def run_local(self, stack, on_line=None):
        """run-local.sh --detach for `stack`, its output read line by line
        (`on_line` sees each); returns (exit status, output)."""
        proc = subprocess.Popen(
            [stack.run_local, "--detach"], env=stack.env, cwd=stack.repo_root,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait(timeout=START_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        return code, "".join(lines)

    def assertNothingRunning(self, stack):
        pids = os.path.join(stack.run_dir, "pids")
        left = os.listdir(pids) if os.path.isdir(pids) else []
        self.assertEqual(left, [], "a failed start left pid files")

    def test_three_stacks_started_together_get_distinct_ports(self):
        """Three stacks started at the same moment (as the test files run)
        each come up on ports of their own, which they report."""
        stacks = run_concurrently(3, lambda i: harness.Stack(workers=1),
                                  timeout=START_TIMEOUT)
        for s in stacks:
            if isinstance(s, harness.Stack):
                self.addCleanup(s.stop)
        for s in stacks:
            self.assertIsInstance(s, harness.Stack, s)
        ports = [p for s in stacks for p in (s.http_port, s.metrics_port,
                                             s.db_port)]
        self.assertEqual(len(set(ports)), len(ports), ports)
        for s in stacks:
            self.assertIn("http://127.0.0.1:%d/" % s.http_port,
                          s.start_output, "the start did not report its port")
            self.assertEqual(s.saved_ports()["HTTP_PORT"], s.http_port)
            r = s.request("GET", "/status")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(listening(s.metrics_port))

    def test_a_port_taken_before_its_bind_is_chosen_again(self):
        """The three auto ports come from a range of exactly three, one of
        them held: the first try fails on it; once it is released, another
        try comes up on the same range."""
        base = free_run(3)
        held = blocker(base + 1)
        self.addCleanup(held.close)
        stack = self.unstarted_stack(
            AUTO_PORT_RANGE="%d-%d" % (base, base + 2))

        def release(line):
            if "trying other ports" in line:
                held.close()
        code, out = self.run_local(stack, release)
        self.assertEqual(code, 0, out)
        self.assertIn("a port was taken before it was bound", out)
        self.assertIn("Address already in use", out)
        ports = stack.saved_ports()
        self.assertEqual(sorted(ports[n] for n in AUTO_NAMES),
                         [base, base + 1, base + 2], ports)
        self.assertIn("http://127.0.0.1:%d/" % ports["HTTP_PORT"], out)
        stack.http_port = ports["HTTP_PORT"]
        self.assertEqual(stack.request("GET", "/status").status, 200)

    def test_a_port_that_stays_taken_ends_the_tries(self):
        """Every try fails on the held port: after the last, the start exits
        75 and leaves nothing running."""
        base = free_run(3)
        held = blocker(base)
        self.addCleanup(held.close)
        stack = self.unstarted_stack(
            AUTO_PORT_RANGE="%d-%d" % (base, base + 2))
        code, out = self.run_local(stack)
        self.assertEqual(code, EXIT_PORT_IN_USE, out)
        self.assertEqual(out.count("trying other ports"), 4, out)
        self.assertNothingRunning(stack)
        for port in (base + 1, base + 2):
            self.assertFalse(listening(port), "port %d still served" % port)

    def test_a_given_port_in_use_fails_at_once_with_its_name(self):
        """A port given by number is never replaced: taken, the start exits
        75 at once, naming the variable, and starts nothing."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            stack = self.unstarted_stack(HTTP_PORT=str(port))
            code, out = self.run_local(stack)
        self.assertEqual(code, EXIT_PORT_IN_USE, out)
        self.assertIn("port %d (HTTP_PORT) is already in use" % port, out)
        self.assertNotIn("trying other ports", out)
        self.assertNothingRunning(stack)


if __name__ == "__main__":
    main()
