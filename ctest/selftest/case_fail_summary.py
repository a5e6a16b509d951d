"""A failed test file for run.py (ctest/selftest) that, like ctest/hostile's,
prints its own closing line: run.py shows its output, which must never read as
run.py's closing line."""

import sys

print("9 passed, 0 failed")
sys.exit(1)
