"""Kills the run.py that runs it (SIGKILL: run.py prints no closing line), once
the text SELFTEST_WAIT_FOR is in the log SELFTEST_LOG (run.py's line for the
file before it): a runner that dies midway (ctest/selftest)."""

import os
import signal
import time

LOG = os.environ["SELFTEST_LOG"]
WANT = os.environ["SELFTEST_WAIT_FOR"]

deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with open(LOG, encoding="utf-8", errors="replace") as f:
            if WANT in f.read():
                break
    except FileNotFoundError:
        pass
    time.sleep(0.05)
os.kill(os.getppid(), signal.SIGKILL)
