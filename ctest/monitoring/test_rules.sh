#!/usr/bin/env bash
# The monitoring tier's offline checks: promtool validates the rule files, runs their unit tests,
# and validates monitoring/prometheus.yml.in rendered as the Prometheus container renders it. No
# container, no port. One line per check ("ok - NAME" or "not ok - NAME", promtool's output under a
# failure), then "N passed, M failed". Exit 0 when all pass, 1 on a failure, 77 (after a line
# "SKIP: reason") when promtool is missing and cannot be installed here.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ctest/monitoring/test_rules.sh

Runs from any directory, on the checkout the script belongs to:
  - promtool check rules --lint-fatal, once per monitoring/rules/*.yml
  - promtool test rules, once per monitoring/rules/tests/*.yml
  - promtool check config on monitoring/prometheus.yml.in (when it exists), rendered for compose
    (@API_DNS_NAME@ = api) in a temporary directory, its rule_files pointed from
    /etc/prometheus/rules/ at a copy of monitoring/rules/
  - self-checks: a copy of a rule test with one expected value changed, and a copy of a rule file
    with a broken expression, must each make promtool fail (the checks above can fail)

promtool comes from the Debian package prometheus (2.42 on Debian 12). When it is missing, root
installs it (apt-get install --no-install-recommends, the package's service kept from starting and,
under systemd, disabled again); anyone else gets "SKIP: reason" and exit 77.
USAGE
}

case ${1:-} in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) printf 'unknown argument: %s (see --help)\n' "$1" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# SC1091: plain `shellcheck` does not follow it; scripts/test.sh runs `shellcheck -x`, which does.
# shellcheck source-path=SCRIPTDIR/../.. source=scripts/lib/common.sh disable=SC1091
source "$ROOT/scripts/lib/common.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/items-rules.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CHECKS_PASSED=0 CHECKS_FAILED=0

# Runs a command as one check; its output is shown, indented, only when it fails.
# usage: check NAME command...
check() {
  local name=$1 out=$TMP/check.out
  shift
  if "$@" >"$out" 2>&1; then
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
    echo "ok - $name"
  else
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
    echo "not ok - $name"
    sed 's/^/    | /' "$out"
  fi
}

# The package's postinst would start (and under systemd enable) a Prometheus of its own:
# ensure_packages keeps it from starting; a systemd host also gets the unit disabled, so none
# appears at the next boot either. Only after an install made here: a Prometheus someone runs on
# purpose is not ours to stop.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  if ((EUID != 0)); then
    echo "SKIP: promtool is missing (Debian package prometheus), and only root can install it"
    exit 77
  fi
  ensure_packages promtool:prometheus
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

# usage: rules_test_fails_on_wrong_value TEST_FILE
# A copy of the rules directory with the first expected "value:" of TEST_FILE raised by 1: promtool
# must fail on that assertion (an "exp:/got:" report), not on a broken file.
rules_test_fails_on_wrong_value() {
  local copy=$TMP/wrong-value rel=${1#monitoring/rules/}
  rm -rf "$copy" && cp -R monitoring/rules "$copy"
  awk '!done && /^ +value: / { n = $0; sub(/^ +value: /, "", n); sub(/value: .*/, "value: " (n + 1)); done = 1 } { print }' \
    "$1" >"$copy/$rel"
  if cmp -s "$1" "$copy/$rel"; then
    echo "no expected value found to change in $1"
    return 1
  fi
  if promtool test rules "$copy/$rel" >"$TMP/wrong-value.out" 2>&1; then
    echo "promtool test rules passed with a wrong expected value:"
    diff "$1" "$copy/$rel" || true
    return 1
  fi
  grep -q 'got:' "$TMP/wrong-value.out" || {
    echo "promtool failed, but not on the changed value:"
    cat "$TMP/wrong-value.out"
    return 1
  }
}

# usage: rules_check_fails_on_broken_expr RULE_FILE
rules_check_fails_on_broken_expr() {
  local copy=$TMP/broken-expr.yml
  sed '0,/^\( *\)expr: .*/s//\1expr: sum by (job) (up/' "$1" >"$copy"
  if cmp -s "$1" "$copy"; then
    echo "no expr found to break in $1"
    return 1
  fi
  if promtool check rules "$copy"; then
    echo "promtool check rules accepted an unbalanced parenthesis"
    return 1
  fi
  return 0
}

# The config as prometheus-entrypoint renders it under compose, checked with the rule files it
# names (a copy of ours: the paths in it are the container's).
# usage: config_is_valid TEMPLATE
config_is_valid() {
  local dir=$TMP/config
  rm -rf "$dir" && mkdir -p "$dir/rules"
  cp monitoring/rules/*.yml "$dir/rules/"
  sed -e 's/@API_DNS_NAME@/api/g' -e "s|/etc/prometheus/rules/|$dir/rules/|g" "$1" >"$dir/prometheus.yml"
  if grep -n '@[A-Z_]*@' "$dir/prometheus.yml"; then
    echo "placeholders left after rendering (the entrypoint renders only @API_DNS_NAME@)"
    return 1
  fi
  if ! grep -q "$dir/rules/" "$dir/prometheus.yml"; then
    echo "rule_files does not name /etc/prometheus/rules/ (where the image puts monitoring/rules/)"
    return 1
  fi
  promtool check config --lint-fatal "$dir/prometheus.yml"
}

main() {
  ensure_promtool
  cd "$ROOT"
  local file rules=() tests=()
  shopt -s nullglob
  rules=(monitoring/rules/*.yml)
  tests=(monitoring/rules/tests/*.yml)
  shopt -u nullglob

  check "rule files exist (monitoring/rules/*.yml)" test "${#rules[@]}" -gt 0
  check "rule tests exist (monitoring/rules/tests/*.yml)" test "${#tests[@]}" -gt 0
  for file in "${rules[@]}"; do
    check "promtool check rules $file" promtool check rules --lint-fatal "$file"
  done
  for file in "${tests[@]}"; do
    check "promtool test rules $file" promtool test rules "$file"
  done
  if [[ -f monitoring/prometheus.yml.in ]]; then
    check "promtool check config monitoring/prometheus.yml.in (rendered for compose)" \
      config_is_valid monitoring/prometheus.yml.in
  fi
  if ((${#tests[@]} > 0)); then
    check "self-check: a wrong expected value in ${tests[0]} fails promtool test rules" \
      rules_test_fails_on_wrong_value "${tests[0]}"
  fi
  if ((${#rules[@]} > 0)); then
    check "self-check: a broken expression in ${rules[0]} fails promtool check rules" \
      rules_check_fails_on_broken_expr "${rules[0]}"
  fi

  printf '%d passed, %d failed\n' "$CHECKS_PASSED" "$CHECKS_FAILED"
  ((CHECKS_FAILED == 0))
}

main
