#!/usr/bin/env bash
# A fake test runner for ctest/selftest/test_selftest.sh: MODE names what it prints and how it
# exits, the cases scripts/test.sh must count right.
set -euo pipefail

case ${1:-} in
  pass) # per-file lines, the closing line, then a cleanup message (as leak's KEEP_TMP=1 prints)
    echo "==== test_a.py: 2 passed, 0 failed, 0 skipped (1 s, exit 0)"
    echo "==== test_b.py: 1 passed, 0 failed, 1 skipped (1 s, exit 0)"
    echo "3 passed, 0 failed, 1 skipped"
    echo "12:00:00 kept /tmp/items-leak.x" >&2
    ;;
  exit-after-pass) # its count says all passed, its exit status says otherwise
    echo "3 passed, 0 failed"
    exit 3
    ;;
  die-midway) # per-file lines, then killed before its closing line
    echo "==== test_a.py: 2 passed, 0 failed, 0 skipped (1 s, exit 0)"
    echo "==== test_b.py: 5 passed, 0 failed, 0 skipped (1 s, exit 0)"
    kill -KILL $$
    ;;
  fail-check) # a check runner's lines (ctest/lib/checks.py, ctest/soak): one passed, two failed
    echo "ok - the first check"
    echo "FAIL - the second check: why it failed"
    echo "FAILED the third check, as the soak runner words it"
    echo "1 passed, 2 failed"
    exit 1
    ;;
  no-test) echo "0 passed, 0 failed" ;;
  no-count) echo "the runner's work, and no line of counts" ;;
  skip) # as scripts/lib/docker.sh's dk_engine_or_skip does
    echo "SKIP: the fake engine is missing"
    exit 77
    ;;
  exit-77-unexplained) # 77 is also what libFuzzer exits with on a finding
    echo "0 passed, 0 failed"
    exit 77
    ;;
  node-cancelled) # node --test's TAP summary after a describe() timeout
    printf '# tests 15\n# suites 1\n# pass 12\n# fail 0\n# cancelled 1\n# skipped 1\n# todo 1\n'
    printf '# duration_ms 1234.5\n'
    exit 1
    ;;
  node-exit) # every test passed, yet npm test exited non-zero
    printf '# tests 13\n# suites 1\n# pass 13\n# fail 0\n# cancelled 0\n# skipped 0\n# todo 0\n'
    exit 1
    ;;
  *)
    echo "usage: fake-runner.sh MODE (see the cases in this file)" >&2
    exit 2
    ;;
esac
