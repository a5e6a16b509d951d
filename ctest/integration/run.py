#!/usr/bin/env python3
"""Run the integration test files in parallel, each its own process (and its
own stack); print a line for each file when it ends (and its output, indented,
if it failed), then one summary line `N passed, M failed[, K skipped]`. Exit
status 0 only if everything passed.

    python3 ctest/integration/run.py [-j JOBS] [test_x.py ...]

Files start longest first, so that a long one does not end the run alone: a
file says how long it takes with a line "# run.py: about N s (why)" (one that
waits on timeouts); a file without one counts as short.
"""

import argparse
import concurrent.futures
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_TIMEOUT = 300


def run_file(path):
    begin = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, path], cwd=HERE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=FILE_TIMEOUT, check=False)
        out, code = proc.stdout.decode("utf-8", "replace"), proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode("utf-8", "replace")
        out += "\n%s: timed out after %d s\n" % (path, FILE_TIMEOUT)
        code = -1
    ran = re.search(r"^Ran (\d+) tests?", out, re.M)
    total = int(ran.group(1)) if ran else 0
    # Failed tests, each counted once however many of its subtests failed;
    # a failed setUpClass counts as one failure.
    bad = len(set(re.findall(r"^(?:FAIL|ERROR): (\S+ \([^)]*\))", out,
                             re.M)))
    bad += len(re.findall(r"^UNEXPECTED SUCCESS: ", out, re.M))
    skipped = sum(int(n) for n in re.findall(r"skipped=(\d+)", out))
    if code != 0 and bad == 0:
        bad = 1  # crashed without a unittest report
    ok = max(0, total - skipped - len(set(re.findall(
        r"^(?:FAIL|ERROR): (test\S* \([^)]*\))", out, re.M))))
    return path, code, out, ok, bad, skipped, time.monotonic() - begin


DURATION_HINT = re.compile(r"^# run\.py: about (\d+) s\b", re.M)


def duration_hint(path):
    with open(path, encoding="utf-8") as f:
        hint = DURATION_HINT.search(f.read())
    return int(hint.group(1)) if hint else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=3)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    files = [os.path.abspath(f) for f in files]
    files.sort(key=duration_hint, reverse=True)  # stable: else as given
    passed = failed = skips = 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for path, code, out, ok, bad, skipped, secs in pool.map(run_file,
                                                                  files):
            sys.stdout.write("==== %s: %d passed, %d failed, %d skipped "
                             "(%.0f s, exit %d)\n" % (
                                 os.path.basename(path), ok, bad, skipped,
                                 secs, code))
            if code != 0 or os.environ.get("VERBOSE") == "1":
                # Indented: a file's own closing line (ctest/hostile's print
                # one) never reads as this runner's, should it die after it.
                for line in out.splitlines():
                    sys.stdout.write("    %s\n" % line)
            sys.stdout.flush()
            passed += ok
            failed += bad
            skips += skipped
    # The closing line, the only line that is exactly this (scripts/test.sh).
    if skips:
        print("%d passed, %d failed, %d skipped" % (passed, failed, skips))
    else:
        print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
