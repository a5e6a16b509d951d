#!/usr/bin/env bash
# Benchmarks the stack against its physical limit: the same nginx serving the
# identical GET /items body as a static file. Checks every body first, then
# runs wrk (loopback only, bounded) on each route at 1 and N connections.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$REPO/scripts/lib/common.sh"

LUA_DIR=$REPO/ctest/bench
DOC=$REPO/docs/performance.md
ALL_STEPS=(status items item static list100 post)

usage() {
  cat <<EOF
usage: scripts/bench.sh [options]

Starts a local stack on free loopback ports (scripts/run-local.sh --detach,
in its own RUN_DIR, stopped at the end), or targets one given with --url.
Checks every body (status and JSON), then runs wrk -t1 --latency at 1 and
N connections on:
  status    GET /status
  items     GET /items (the seed rows)
  item      GET /items/{id}
  static    the limit: the identical GET /items body as a static file,
            served by the same nginx (RUN_DIR/html/bench-items.json)
  list100   GET /items?limit=100 (100+ rows are added through the API first),
            and its own static twin (bench-items-100.json)
  post      POST /items (ctest/bench/post-item.lua), each connection count
            followed by its own limit: MariaDB's rate of the same INSERT
            (ctest/bench/insert-loop: the worker's prepared statement, one
            autocommit per row, as many connections, for --duration s),
            connected as the workers are (their DB_HOST, DB_PORT, user and
            password file, read from a worker's /proc/PID/environ; needs
            the stack's RUN_DIR); the durability settings in effect (SHOW
            VARIABLES through the root socket) are printed beside it
Prints req/s, p50, p99, errors (non-2xx and socket errors), the ratio to
the static limit at the same connection count and the CPU time each tier
spent per request (nginx / workers / mariadbd, from /proc/PID/stat), then the
RSS and PSS of each worker (/proc/PID/smaps_rollup of the children of
RUN_DIR/pids/pool.pid) and its peak RSS (VmHWM, /proc/PID/status).

Options:
  --url URL          target a running stack (http://127.0.0.1:PORT; loopback
                     only) instead of starting one. Its RUN_DIR (--run-dir, or
                     env RUN_DIR) provides the token, the html dir for the
                     static limit, the pids (memory, CPU per tier) and the
                     database socket (--scale); without one, give --static-path
                     and API_TOKEN, and those figures are left out
  --run-dir DIR      RUN_DIR of the stack given with --url (the post and
                     list100 steps add rows to its database, --scale up to
                     SCALE_ROWS)
  --static-path PATH use this file already served by the target as the limit
                     (e.g. a read-only front container) instead of publishing
                     the identical body; the report gives both sizes
  --duration S       seconds per wrk run [10]
  --rounds N         run the limit and the status, items and item steps N
                     times in turn [1]; each is reported by its median round
                     (by ratio to that round's limit), the rounds' ratios
                     beside it: what a shared machine's noise calls for
  --connections N    the high connection count [32]
  --steps LIST       comma-separated subset of: ${ALL_STEPS[*]}
                     [all; static always runs: it is the reference]
  --scale            also the scale check: load rows to SCALE_ROWS [1000000;
                     20000 with --smoke] through the MariaDB root socket
                     (timed; its pages are written back before the runs),
                     compare GET /items?after=A&limit=100,
                     A the id before the last 100 rows (the last page), with
                     after=0 (cost ratio by req/s must be <= 1.5; not asserted
                     in --smoke) and measure GET /items?limit=1000 at that
                     size; then the browser test of the
                     page with a large table (ctest/browser/tests/
                     large-table.test.mjs) at LARGE_TABLE_ROWS rows
                     [1000000], on a stack of its own (not in --smoke; skipped
                     with a message without node or Chromium)
  --tls              also over HTTPS (the stack started here gets run-local.sh
                     TLS=1 on a free port; the certificate is checked against
                     its local CA): GET /items and its static twin with
                     keep-alive (wrk, 1 and N connections; the HTTPS ratio is
                     printed next to the plain-HTTP one), then a new TLS
                     handshake per request (openssl s_time, one connection at a
                     time, TLS 1.3 and TLS 1.2), full (-new) and resumed from
                     nginx's shared session cache (-reuse; the resumed share is
                     counted, not assumed), on /items and the static twin: the
                     connections/s, the CPU per connection of each tier, and
                     the cost of a handshake, full and resumed: nginx's CPU per
                     new HTTPS connection less its CPU per new plain-HTTP
                     connection on the same path (wrk -H 'Connection: close',
                     1 connection). Figures only: no speed is asserted
  --tls-url URL      with --url: the HTTPS listener of that stack
                     (https://127.0.0.1:PORT; loopback only) [from its
                     RUN_DIR/env, SAVED_TLS_PORT]
  --cacert FILE      with --url: the CA to check its certificate with
                     [RUN_DIR/tls/ca.pem]
  --compose          also the compose deploy, both transports side by side:
                     deploys its own project (scripts/deploy.sh, COMPOSE_PROJECT
                     items-bench, free loopback ports, subnets 172.31.225-227
                     and 172.31.26/126, removed at the end with its volumes),
                     recreates the front with a read-only bind mount that
                     serves the identical body as a static file (the limit,
                     through the same front container), and runs static,
                     status, items and item with API_TRANSPORT=unix, then
                     with API_TRANSPORT=tcp (front and api recreated). CPU per
                     tier comes from the containers' processes (docker top).
                     Needs Docker (installed and started like deploy.sh does)
  --smoke            every step for ~1 s with few connections: checks that each
                     step runs and every body is right; asserts no speed
                     (with --scale: SCALE_ROWS 20000 unless set)
  --write-doc        write the results into docs/performance.md (between the
                     bench markers; the rest of the file is kept)
  --keep             keep the RUN_DIR of the stack this script started
  --help             this text

Environment: FCGI_WORKERS, ITEMS_FCGI, BUILD_DIR (and any other setting of
run-local.sh) reach the stack this script starts; its write limit is raised
(WRITE_RATE 100000r/s, WRITE_BURST 100000 unless set) so that POST measures
the write path, not the limiter. API_TOKEN overrides the token file.
SCALE_ROWS: the table size of --scale (2000..10000000). INSERT_LOOP: the
insert-loop binary [built in BUILD_DIR, default REPO/build, as run-local.sh
builds the worker].
Exit status: non-zero when a body check fails, wrk reports any error, or the
scale check misses its bound.
EOF
}

# ---------------------------------------------------------------- options --

URL="" RUN_DIR_OPT="" STATIC_OPT="" DURATION=10 CONNECTIONS=32 STEPS="" SCALE=0 SMOKE=0
WRITE_DOC=0 KEEP=0 WARMUP=2 TLS=0 TLS_URL="" CACERT="" COMPOSE_BENCH=0 ROUNDS=1
# From the environment; empty: 1,000,000, or 20,000 with --smoke (seconds, not minutes).
SCALE_ROWS=${SCALE_ROWS:-}

parse_args() {
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --url) URL=${2:?--url needs a value}; shift ;;
      --run-dir) RUN_DIR_OPT=${2:?--run-dir needs a value}; shift ;;
      --static-path) STATIC_OPT=${2:?--static-path needs a value}; shift ;;
      --duration) DURATION=${2:?--duration needs a value}; shift ;;
      --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
      --connections) CONNECTIONS=${2:?--connections needs a value}; shift ;;
      --steps) STEPS=${2:?--steps needs a value}; shift ;;
      --scale) SCALE=1 ;;
      --tls) TLS=1 ;;
      --compose) COMPOSE_BENCH=1 ;;
      --tls-url) TLS_URL=${2:?--tls-url needs a value}; shift ;;
      --cacert) CACERT=${2:?--cacert needs a value}; shift ;;
      --smoke) SMOKE=1 ;;
      --write-doc) WRITE_DOC=1 ;;
      --keep) KEEP=1 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  if ((SMOKE)); then
    DURATION=1 CONNECTIONS=4 WARMUP=0
  fi
  if [[ -z $SCALE_ROWS ]]; then
    if ((SMOKE)); then SCALE_ROWS=20000; else SCALE_ROWS=1000000; fi
  fi
  # At least 2000: the checks need a full limit=1000 page and a last page apart from the first.
  if ((SCALE)) && { ! [[ $SCALE_ROWS =~ ^[1-9][0-9]*$ ]] || ((SCALE_ROWS < 2000 || SCALE_ROWS > 10000000)); }; then
    die "SCALE_ROWS must be 2000..10000000, not $SCALE_ROWS"
  fi
  if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 1 || DURATION > 300)); then
    die "--duration must be 1..300 seconds"
  fi
  if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS < 1 || ROUNDS > 20)); then
    die "--rounds must be 1..20"
  fi
  if ! [[ $CONNECTIONS =~ ^[0-9]+$ ]] || ((CONNECTIONS < 1 || CONNECTIONS > 1000)); then
    die "--connections must be 1..1000"
  fi
  local s
  if [[ -n $STEPS ]]; then
    for s in ${STEPS//,/ }; do
      [[ " ${ALL_STEPS[*]} " == *" $s "* ]] || die "unknown step: $s (steps: ${ALL_STEPS[*]})"
    done
    STEPS=",$STEPS,static,"
  else
    STEPS=",$(IFS=,; echo "${ALL_STEPS[*]}"),"
  fi
  if [[ -n $URL ]]; then
    # Loopback only: this script generates load.
    [[ $URL =~ ^http://(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|localhost|\[::1\])(:[0-9]{1,5})?/?$ ]] ||
      die "--url must be http://127.x.x.x[:PORT], http://localhost[:PORT] or http://[::1][:PORT] (loopback only): $URL"
    URL=${URL%/}
  fi
  if [[ -n $TLS_URL ]]; then
    [[ -n $URL ]] || die "--tls-url goes with --url (the stack started here gets its own HTTPS port)"
    [[ $TLS_URL =~ ^https://(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|localhost|\[::1\])(:[0-9]{1,5})?/?$ ]] ||
      die "--tls-url must be https://127.x.x.x[:PORT], https://localhost[:PORT] or https://[::1][:PORT] (loopback only): $TLS_URL"
    TLS_URL=${TLS_URL%/}
    TLS=1
  fi
  if [[ -n $STATIC_OPT && $STATIC_OPT != /* ]]; then
    die "--static-path must start with /"
  fi
}

wants() { [[ $STEPS == *",$1,"* ]]; }

# ------------------------------------------------------------------ stack --

# A RUN_DIR from the environment names the stack given with --url.
ENV_RUN_DIR=${RUN_DIR:-}
STARTED_STACK=0 RUN_DIR="" OUT_DIR="" BASE="" TLS_BASE=""

cleanup() {
  local rc=$?
  compose_down
  if ((STARTED_STACK)); then
    RUN_DIR=$RUN_DIR "$REPO/scripts/run-local.sh" --stop >>"$RUN_DIR/bench-stack.log" 2>&1 ||
      log "stopping the stack failed: see $RUN_DIR/bench-stack.log"
    if ((KEEP)); then
      log "kept $RUN_DIR"
    else
      rm -rf "$RUN_DIR"
    fi
  elif [[ -n $OUT_DIR ]]; then
    [[ -z $RUN_DIR || -n $STATIC_OPT ]] ||
      rm -f "$RUN_DIR/html/bench-items.json" "$RUN_DIR/html/bench-items-100.json"
    if ((KEEP)); then log "kept $OUT_DIR"; else rm -rf "$OUT_DIR"; fi
  fi
  exit "$rc"
}

start_stack() {
  RUN_DIR=$(mktemp -d /tmp/items-bench.XXXXXX)
  chmod 755 "$RUN_DIR"
  STARTED_STACK=1
  log "starting a stack in $RUN_DIR (free ports, workers ${FCGI_WORKERS:-$(nproc)})"
  # run-local.sh chooses the ports (again if one is taken meanwhile).
  if ! env -u API_TOKEN -u NO_TOKEN RUN_DIR="$RUN_DIR" HTTP_PORT=auto \
    METRICS_PORT=auto DB_PORT=auto FCGI_PORT=auto TLS="$TLS" TLS_PORT=auto \
    WRITE_RATE="${WRITE_RATE:-100000r/s}" WRITE_BURST="${WRITE_BURST:-100000}" \
    "$REPO/scripts/run-local.sh" --detach >"$RUN_DIR/bench-stack.log" 2>&1; then
    cat "$RUN_DIR/bench-stack.log" >&2
    die "the stack did not start"
  fi
  BASE=http://127.0.0.1:$(saved_setting "$RUN_DIR" HTTP_PORT)
  log "the stack is up at $BASE"
  if ((TLS)); then
    TLS_BASE=https://127.0.0.1:$(saved_setting "$RUN_DIR" TLS_PORT)
    CACERT=$RUN_DIR/tls/ca.pem
    log "HTTPS at $TLS_BASE (local CA $CACERT)"
  fi
  OUT_DIR=$RUN_DIR/bench
  mkdir -p "$OUT_DIR"
}

use_stack() {
  RUN_DIR=${RUN_DIR_OPT:-$ENV_RUN_DIR}
  BASE=$URL
  if [[ -n $RUN_DIR ]]; then
    [[ -d $RUN_DIR/pids ]] || die "RUN_DIR=$RUN_DIR does not look like a stack's RUN_DIR (no pids/)"
  elif [[ -z $STATIC_OPT ]]; then
    die "--url needs the stack's RUN_DIR (--run-dir) to publish the static limit, or --static-path"
  fi
  if [[ -z $STATIC_OPT && ! -w $RUN_DIR/html ]]; then
    die "cannot write the static limit into $RUN_DIR/html: give --static-path"
  fi
  if ((SCALE)) && [[ -z $RUN_DIR ]]; then
    die "--scale loads rows through the database socket in RUN_DIR: give --run-dir"
  fi
  OUT_DIR=$(mktemp -d /tmp/items-bench-out.XXXXXX)
  if ((TLS)); then
    if [[ -z $TLS_URL ]]; then
      [[ -n $RUN_DIR ]] || die "--tls with --url needs --tls-url (or the stack's --run-dir)"
      TLS_URL=https://127.0.0.1:$(saved_setting "$RUN_DIR" TLS_PORT) ||
        die "--tls: no HTTPS port saved in $RUN_DIR/env (start it with TLS=1, or give --tls-url)"
    fi
    TLS_BASE=$TLS_URL
    CACERT=${CACERT:-${RUN_DIR:+$RUN_DIR/tls/ca.pem}}
    [[ -r $CACERT ]] || die "--tls: cannot read the CA certificate '${CACERT}': give --cacert"
  fi
}

token() {
  if [[ -n ${API_TOKEN:-} ]]; then
    printf '%s' "$API_TOKEN"
  elif [[ -n $RUN_DIR && -r $RUN_DIR/api-token ]]; then
    tr -d '\n' <"$RUN_DIR/api-token"
  else
    die "no API token: set API_TOKEN or provide $RUN_DIR/api-token"
  fi
}

# ------------------------------------------------------------- body checks --

# usage: fetch NAME METHOD PATH [curl options...]; prints the status code,
# leaves the body in OUT_DIR/NAME.body and the headers in OUT_DIR/NAME.head.
fetch() {
  local name=$1 method=$2 path=$3
  shift 3
  curl -sS --max-time 5 -X "$method" -o "$OUT_DIR/$name.body" -D "$OUT_DIR/$name.head" \
    -w '%{http_code}' "$@" "${RUN_BASE:-$BASE}$path"
}

# usage: check_json KIND FILE [ARG]; exits non-zero with a reason when the body
# is not what KIND expects. Prints a summary ("COUNT FIRST_ID LAST_ID" for a list).
#   status        {"status":"OK","database_connection":"OK",...}
#   list [N]      an array of items by ascending id (exactly N when given)
#   item ID       one item with that id
#   created NAME  one item with that name
check_json() {
  python3 - "$@" <<'PY'
import json, re, sys

kind, path = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
KEYS = {"id", "name", "description", "created_at"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

def fail(reason):
    sys.exit("%s: %s" % (path, reason))

def check_item(v):
    if not isinstance(v, dict) or set(v) != KEYS:
        fail("not an item: %r" % (v,))
    if not isinstance(v["id"], int) or v["id"] < 1:
        fail("bad id: %r" % (v,))
    if not isinstance(v["name"], str) or not v["name"]:
        fail("bad name: %r" % (v,))
    if v["description"] is not None and not isinstance(v["description"], str):
        fail("bad description: %r" % (v,))
    if not isinstance(v["created_at"], str) or not STAMP.match(v["created_at"]):
        fail("bad created_at: %r" % (v,))

try:
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
except (ValueError, UnicodeDecodeError) as e:
    fail("not UTF-8 JSON: %s" % e)
if kind == "status":
    if not isinstance(doc, dict) or doc.get("status") != "OK" or doc.get("database_connection") != "OK":
        fail("status is not OK: %r" % (doc,))
    print("OK")
elif kind == "list":
    if not isinstance(doc, list) or not doc:
        fail("not a non-empty array")
    for v in doc:
        check_item(v)
    ids = [v["id"] for v in doc]
    if ids != sorted(set(ids)):
        fail("ids are not strictly ascending")
    if arg is not None and len(doc) != int(arg):
        fail("%d items, expected %s" % (len(doc), arg))
    print(len(doc), ids[0], ids[-1])
elif kind == "item":
    check_item(doc)
    if doc["id"] != int(arg):
        fail("id %d, expected %s" % (doc["id"], arg))
    print(doc["id"])
elif kind == "created":
    check_item(doc)
    if doc["name"] != arg:
        fail("name %r, expected %r" % (doc["name"], arg))
    print(doc["id"])
else:
    fail("unknown kind " + kind)
PY
}

# usage: expect_status NAME GOT WANT
expect_status() {
  [[ $2 == "$3" ]] || {
    head -c 300 "$OUT_DIR/$1.body" >&2 || true
    echo >&2
    die "body check $1: HTTP $2, expected $3"
  }
}

# Puts a copy of a body in the stack's html dir and checks nginx serves it unchanged.
# usage: publish_static NAME FILE -> sets STATIC_PATH
publish_static() {
  local name=$1 src=$2 code
  if [[ -n $STATIC_OPT ]]; then
    # A read-only front: a file it already serves stands in for the body.
    STATIC_PATH=$STATIC_OPT
    code=$(fetch "$name" GET "$STATIC_PATH")
    expect_status "$name" "$code" 200
    STATIC_NOTE="the limit is $STATIC_OPT ($(wc -c <"$OUT_DIR/$name.body") bytes) standing in for the $(wc -c <"$src")-byte body"
    log "$STATIC_NOTE"
    return
  fi
  STATIC_PATH=${STATIC_PREFIX}/$name
  (umask 022 && cp "$src" "${STATIC_DIR:-$RUN_DIR/html}/$name")
  code=$(fetch "$name" GET "$STATIC_PATH")
  expect_status "$name" "$code" 200
  cmp -s "$src" "$OUT_DIR/$name.body" || die "body check $name: the static copy differs from the API's body"
  grep -qi '^content-type: application/json' "$OUT_DIR/$name.head" ||
    die "body check $name: not served as application/json"
}

FIRST_ID="" ITEMS_COUNT=0 STATIC_ITEMS="" STATIC_100="" TOKEN="" STATIC_NOTE=""
# Where publish_static writes, and the URL prefix it is served under: RUN_DIR/html
# at / for the local stack; the compose front's bind mount under /bench.
STATIC_DIR="" STATIC_PREFIX=""

check_bodies() {
  local code summary id
  code=$(fetch status GET /status)
  expect_status status "$code" 200
  check_json status "$OUT_DIR/status.body" >/dev/null || die "body check status failed"

  code=$(fetch items GET /items)
  expect_status items "$code" 200
  summary=$(check_json list "$OUT_DIR/items.body") || die "body check items failed"
  read -r ITEMS_COUNT FIRST_ID _ <<<"$summary"

  code=$(fetch item GET "/items/$FIRST_ID")
  expect_status item "$code" 200
  check_json item "$OUT_DIR/item.body" "$FIRST_ID" >/dev/null || die "body check item failed"

  publish_static bench-items.json "$OUT_DIR/items.body"
  STATIC_ITEMS=$STATIC_PATH

  if wants post || wants list100; then
    TOKEN=$(token)
  fi
  if wants post; then
    # A write and its undo: GET /items keeps its body for the runs below.
    code=$(fetch post POST /items -H 'Content-Type: application/json' \
      -H "Authorization: Bearer $TOKEN" --data-binary '{"name":"bench item","description":"written by scripts/bench.sh"}')
    expect_status post "$code" 201
    id=$(check_json created "$OUT_DIR/post.body" "bench item") || die "body check post failed"
    tr -d '\r' <"$OUT_DIR/post.head" | grep -qix "location: /items/$id" || die "body check post: no Location: /items/$id"
    code=$(fetch delete DELETE "/items/$id" -H "Authorization: Bearer $TOKEN")
    expect_status delete "$code" 204
  fi
  log "bodies checked: /status, /items ($ITEMS_COUNT rows), /items/$FIRST_ID, $STATIC_ITEMS$(wants post && echo ', POST /items')"
}

# Adds items through the API until GET /items?limit=100 is a full page, then
# checks that page and publishes its static twin.
prepare_list100() {
  local code count need i summary
  code=$(fetch list100 GET '/items?limit=100')
  expect_status list100 "$code" 200
  count=$(check_json list "$OUT_DIR/list100.body" | cut -d' ' -f1) || die "body check list100 failed"
  # 101 rows: the page is full and has a Link to the next one.
  need=$((101 - count))
  if ((need > 0)); then
    log "adding $need items through the API"
  fi
  for ((i = 0; i < need; i++)); do
    code=$(fetch fill POST /items -H 'Content-Type: application/json' \
      -H "Authorization: Bearer $TOKEN" --data-binary "{\"name\":\"bench row $i\",\"description\":\"a row for GET /items?limit=100\"}")
    expect_status fill "$code" 201
  done
  code=$(fetch list100 GET '/items?limit=100')
  expect_status list100 "$code" 200
  summary=$(check_json list "$OUT_DIR/list100.body" 100) || die "body check list100 failed"
  grep -qi '^link: </items?after=' "$OUT_DIR/list100.head" || die "body check list100: no Link header"
  log "body checked: /items?limit=100 (ids ${summary#* })"
  publish_static bench-items-100.json "$OUT_DIR/list100.body"
  STATIC_100=$STATIC_PATH
}

# -------------------------------------------------------------------- wrk --

declare -A RPS P50 P99 ERRS LABEL CPU CPU_NGINX
# The base URL of the runs and fetches: BASE, or TLS_BASE for the HTTPS steps.
RUN_BASE=""
# Extra wrk arguments of the runs (the Connection: close baselines).
WRK_EXTRA=()
ORDER=()
WRK_ERRORS=0
CLK_TCK=$(getconf CLK_TCK)

read_pid() {
  if [[ -n $RUN_DIR ]]; then cat "$RUN_DIR/pids/$1.pid" 2>/dev/null || true; fi
}

# The processes of a tier: nginx (master and workers), workers (the pool's
# children), db (mariadbd, whose threads /proc/PID/stat adds up).
# With --compose, a tier is a container: its processes as the host sees them.
declare -A TIER_CONTAINER=()
tier_pids() {
  local pid
  if [[ -n ${TIER_CONTAINER[$1]:-} ]]; then
    docker top "${TIER_CONTAINER[$1]}" -eo pid 2>/dev/null | tail -n +2 || true
    return 0
  fi
  case $1 in
    nginx) pid=$(read_pid nginx) ;;
    workers) pid=$(read_pid pool) ;;
    db) pid=$(read_pid mariadb) ;;
  esac
  [[ -n $pid ]] || return 0
  case $1 in
    nginx) echo "$pid"; ps -o pid= --ppid "$pid" || true ;;
    workers) ps -o pid= --ppid "$pid" || true ;;
    db) echo "$pid" ;;
  esac
}

# CPU time (user + system, in clock ticks) a tier has used so far.
tier_ticks() {
  local total=0 pid stat fields
  for pid in $(tier_pids "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# CPU µs per unit that each tier used since the ticks in the named array
# (tier -> clock ticks), "nginx/workers/db".
# usage: cpu_per COUNT ARRAY_NAME
cpu_per() {
  local count=$1 tier out="" was
  local -n ticks_ref=$2
  for tier in nginx workers db; do
    was=${ticks_ref[$tier]}
    out+="${out:+/}$(awk -v t="$(($(tier_ticks "$tier") - was))" -v hz="$CLK_TCK" -v n="$count" \
      'BEGIN { printf "%.0f", t * 1e6 / hz / n }')"
  done
  printf '%s\n' "$out"
}

# usage: run_wrk KEY LABEL CONNS PATH [LUA_SCRIPT]
run_wrk() {
  local key=$1 label=$2 conns=$3 path=$4 script=${5:-$LUA_DIR/report.lua}
  local out=$OUT_DIR/wrk-$key-c$conns.txt line rc=0 tier
  # shellcheck disable=SC2034 # read by cpu_per, by name
  local -A ticks
  for tier in nginx workers db; do ticks[$tier]=$(tier_ticks "$tier"); done
  timeout $((DURATION + 30)) wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 2s --latency "${WRK_EXTRA[@]}" \
    -s "$script" "${RUN_BASE:-$BASE}$path" >"$out" 2>&1 || rc=$?
  line=$(grep '^BENCH ' "$out" || true)
  if ((rc != 0)) || [[ -z $line ]]; then
    cat "$out" >&2
    die "wrk failed on $path (exit $rc)"
  fi
  local requests duration_us p50_us p99_us status_errors connect_errors read_errors write_errors timeout_errors
  local kv
  for kv in ${line#BENCH }; do
    case ${kv%%=*} in
      requests | duration_us | p50_us | p99_us | status_errors | connect_errors | read_errors | write_errors | timeout_errors)
        printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
    esac
  done
  local id=$key:$conns errors=$((status_errors + connect_errors + read_errors + write_errors + timeout_errors))
  RPS[$id]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  P50[$id]=$p50_us P99[$id]=$p99_us LABEL[$id]=$label
  CPU[$id]=- CPU_NGINX[$id]=""
  if [[ -n $RUN_DIR || -n ${TIER_CONTAINER[nginx]:-} ]] && ((requests > 0)); then
    CPU[$id]=$(cpu_per "$requests" ticks)
    CPU_NGINX[$id]=${CPU[$id]%%/*}
  fi
  ERRS[$id]=$errors
  if ((errors > 0)); then
    ERRS[$id]="$errors ($status_errors non-2xx, $((connect_errors + read_errors + write_errors)) socket, $timeout_errors timeout)"
    WRK_ERRORS=$((WRK_ERRORS + errors))
  fi
  ORDER+=("$id")
  log "$(printf '%-34s c%-3d %8s req/s  p50 %s  p99 %s  errors %s  CPU us/req %s' "$label" "$conns" \
    "${RPS[$id]}" "$(fmt_ms "$p50_us")" "$(fmt_ms "$p99_us")" "${ERRS[$id]}" "${CPU[$id]}")"
}

declare -A RATIO=()
ROUNDS_RESULT=""

# The limit and the status, items and item steps, ROUNDS times in turn. With
# more than one round each step:conns takes the figures of its median round
# by ratio to that round's own limit (the limit: its median req/s).
# usage: run_core KEY_PREFIX LABEL_PREFIX
run_core() {
  local prefix=$1 label_prefix=$2 round step key label path
  for ((round = 1; round <= ROUNDS; round++)); do
    for step in static status items item; do
      [[ $step == static ]] || wants "$step" || continue
      case $step in
        static) label="static file, same body (the limit)" path=$STATIC_ITEMS ;;
        status) label="GET /status" path=/status ;;
        items) label="GET /items ($ITEMS_COUNT rows)" path=/items ;;
        item) label="GET /items/{id}" path=/items/$FIRST_ID ;;
      esac
      key=$prefix$step
      ((ROUNDS == 1)) || key+="~$round"
      run_step "$key" "$label_prefix$label" "$path"
    done
  done
  ((ROUNDS == 1)) || fold_rounds "$prefix"
}

fold_rounds() {
  local prefix=$1 step c round id src best values
  for step in static status items item; do
    [[ $step == static ]] || wants "$step" || continue
    for c in $(conn_counts); do
      values=""
      for ((round = 1; round <= ROUNDS; round++)); do
        if [[ $step == static ]]; then
          values+="${RPS[${prefix}static~$round:$c]} $round"$'\n'
        else
          values+="$(ratio "$prefix$step~$round:$c" "${prefix}static~$round") $round"$'\n'
        fi
      done
      best=$(printf '%s' "$values" | sort -n -k1,1 | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')
      id=$prefix$step:$c src=$prefix$step~$best:$c
      RPS[$id]=${RPS[$src]} P50[$id]=${P50[$src]} P99[$id]=${P99[$src]} LABEL[$id]=${LABEL[$src]}
      CPU[$id]=${CPU[$src]} CPU_NGINX[$id]=${CPU_NGINX[$src]} ERRS[$id]=${ERRS[$src]}
      if [[ $step != static ]]; then
        RATIO[$id]=$(ratio "$src" "${prefix}static~$best")
        ROUNDS_RESULT+="- ${LABEL[$id]} c$c: ratio by round $(printf '%s' "$values" | awk '{ print $1 }' | paste -sd' '), median ${RATIO[$id]} (round $best)"$'\n'
      else
        ROUNDS_RESULT+="- ${LABEL[$id]} c$c: req/s by round $(printf '%s' "$values" | awk '{ print $1 }' | paste -sd' '), median ${RPS[$id]}"$'\n'
      fi
      ORDER+=("$id")
    done
  done
}

# Runs a step at 1 and at CONNECTIONS connections.
# usage: run_step KEY LABEL PATH [LUA_SCRIPT]
run_step() {
  local c
  for c in $(conn_counts); do
    run_wrk "$1" "$2" "$c" "$3" "${4:-}"
  done
}

conn_counts() {
  if ((CONNECTIONS == 1)); then echo 1; else echo 1 "$CONNECTIONS"; fi
}

fmt_ms() { awk -v us="$1" 'BEGIN { printf "%.3f ms", us / 1000 }'; }

# usage: ratio ID REF_KEY -> the req/s of ID over that of REF_KEY at the same connections
# (with --rounds, the ratio of the median round: RATIO)
ratio() {
  local id=$1 ref=$2:${1##*:}
  if [[ -n ${RATIO[$id]:-} ]]; then echo "${RATIO[$id]}"; return; fi
  [[ -n ${RPS[$ref]:-} && ${RPS[$ref]} != 0 ]] || { echo "-"; return; }
  awk -v a="${RPS[$id]}" -v b="${RPS[$ref]}" 'BEGIN { printf "%.2f", a / b }'
}

# ------------------------------------------------------------------ HTTPS --

TLS_RESULT="" HS_ORDER=()
declare -A HS_LABEL HS_CONNS HS_RATE HS_CPU HS_NGINX HS_RESUMED HS_CLIENT

# The same bodies over HTTPS, the certificate checked against the CA: GET
# /items is byte for byte the plain-HTTP one, and so is the static twin.
tls_check_bodies() {
  local code name
  RUN_BASE=$TLS_BASE
  code=$(fetch tls-items GET /items --cacert "$CACERT") ||
    die "body check tls-items: curl failed (is $CACERT the CA of $TLS_BASE?)"
  expect_status tls-items "$code" 200
  cmp -s "$OUT_DIR/items.body" "$OUT_DIR/tls-items.body" || die "body check tls-items: GET /items differs over HTTPS"
  code=$(fetch tls-static GET "$STATIC_ITEMS" --cacert "$CACERT")
  expect_status tls-static "$code" 200
  if [[ -z $STATIC_OPT ]]; then
    cmp -s "$OUT_DIR/items.body" "$OUT_DIR/tls-static.body" || die "body check tls-static: the static copy differs over HTTPS"
  fi
  # The same Content-Security-Policy as over plain HTTP (curl speaks HTTP/2
  # over TLS: header names come in lower case there).
  for name in items tls-items; do
    tr -d '\r' <"$OUT_DIR/$name.head" | sed -n 's/^[Cc]ontent-[Ss]ecurity-[Pp]olicy: *//p' >"$OUT_DIR/$name.csp"
  done
  if [[ ! -s $OUT_DIR/items.csp ]] || ! cmp -s "$OUT_DIR/items.csp" "$OUT_DIR/tls-items.csp"; then
    die "body check tls-items: not the same Content-Security-Policy over HTTPS as over HTTP"
  fi
  RUN_BASE=""
  log "bodies checked over HTTPS ($TLS_BASE, certificate checked against $CACERT): /items, $STATIC_ITEMS"
}

# usage: run_handshakes KEY LABEL PATH VERSION MODE
#   VERSION tls1_3 or tls1_2; MODE new (a full handshake per connection) or
#   reuse (each connection resumes the first one's session)
# openssl s_time: one connection at a time, each an HTTP/1.0 GET of PATH that
# nginx answers and closes. Its output has a character per connection, "r"
# when the session was resumed: the resumed share is counted.
run_handshakes() {
  local key=$1 label=$2 path=$3 version=$4 mode=$5 out rc=0 conns start end resumed user_rate
  local id=$key:$version:$mode hostport=${TLS_BASE#https://}
  out=$OUT_DIR/s_time-$key-$version-$mode.txt
  local -A ticks
  local tier
  # shellcheck disable=SC2034 # read by cpu_per, by name
  for tier in nginx workers db; do ticks[$tier]=$(tier_ticks "$tier"); done
  start=$(date +%s%N)
  timeout $((DURATION + 30)) openssl s_time -connect "$hostport" -CAfile "$CACERT" "-$version" "-$mode" \
    -time "$DURATION" -www "$path" >"$out" 2>&1 || rc=$?
  end=$(date +%s%N)
  conns=$(sed -n 's/^\([0-9][0-9]*\) connections in [0-9.]*s;.*/\1/p' "$out" | tail -n 1)
  user_rate=$(sed -n 's/.*; \([0-9.]*\) connections\/user sec.*/\1/p' "$out" | tail -n 1)
  if ((rc != 0)) || [[ -z $conns ]] || ((conns == 0)); then
    cat "$out" >&2
    die "openssl s_time failed on $TLS_BASE$path ($version, -$mode, exit $rc)"
  fi
  # The progress lines only: one character per connection.
  resumed=$(grep -E '^[*rt3]+$' "$out" | tr -cd 'r' | wc -c)
  HS_LABEL[$id]=$label HS_CONNS[$id]=$conns HS_RESUMED[$id]=$resumed
  HS_RATE[$id]=$(awk -v n="$conns" -v ns="$((end - start))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  # The client's CPU per connection, as s_time counts it (its user time).
  HS_CLIENT[$id]=$(awk -v r="$user_rate" 'BEGIN { if (r > 0) printf "%.0f", 1e6 / r; else print "-" }')
  HS_CPU[$id]=- HS_NGINX[$id]=""
  if [[ -n $RUN_DIR ]]; then
    HS_CPU[$id]=$(cpu_per "$conns" ticks)
    HS_NGINX[$id]=${HS_CPU[$id]%%/*}
  fi
  HS_ORDER+=("$id")
  log "$(printf '%-34s %s -%-5s %6s conn/s  resumed %s/%s  CPU us/conn %s  s_time us/conn %s' "$label" \
    "$version" "$mode" "${HS_RATE[$id]}" "$resumed" "$conns" "${HS_CPU[$id]}" "${HS_CLIENT[$id]}")"
}

run_tls() {
  local version
  tls_check_bodies
  RUN_BASE=$TLS_BASE
  run_step tls_static "HTTPS static file, same body (the limit)" "$STATIC_ITEMS"
  run_step tls_items "HTTPS GET /items ($ITEMS_COUNT rows)" /items
  RUN_BASE=""
  # The baseline of a handshake: a new plain-HTTP (TCP) connection per
  # request, one at a time, as s_time does below.
  WRK_EXTRA=(-H 'Connection: close')
  run_wrk close_static "static file, new TCP connection per request" 1 "$STATIC_ITEMS"
  run_wrk close_items "GET /items, new TCP connection per request" 1 /items
  WRK_EXTRA=()
  for version in tls1_3 tls1_2; do
    run_handshakes hs_static "HTTPS static file, new connection" "$STATIC_ITEMS" "$version" new
    run_handshakes hs_static "HTTPS static file, new connection" "$STATIC_ITEMS" "$version" reuse
    run_handshakes hs_items "HTTPS GET /items, new connection" /items "$version" new
    run_handshakes hs_items "HTTPS GET /items, new connection" /items "$version" reuse
  done
  tls_summary
}

# usage: cpu_sum ID -> the CPU µs per request of every tier together, or "-"
cpu_sum() {
  local cpu=${CPU[$1]:--}
  [[ $cpu != - ]] || { echo -; return; }
  awk -v c="$cpu" 'BEGIN { n = split(c, t, "/"); for (i = 1; i <= n; i++) s += t[i]; print s }'
}

# usage: minus A B -> A - B, or "-" when either is unknown
minus() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.0f", a - b }'; }
# usage: over A B -> A / B with two decimals, or "-"
over() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 <= 0) print "-"; else printf "%.2f", a / b }'; }

# What public-key work alone allows a resumed TLS 1.3 handshake to save on this CPU: clients resume
# with psk_dhe_ke (curl, s_time, browsers), a fresh X25519 exchange (a key pair and a shared secret),
# so resumption saves only the certificate's ECDSA P-256 signature (and the chain's bytes). Full ÷
# resumed is then at most (2 X25519 + 1 P-256 signature) / (2 X25519) before any other cost, which
# both pay alike. TLS 1.2's resumption skips the exchange too: its bound is far higher.
crypto_bound() {
  local speed x25519 sign
  speed=$(openssl speed -seconds 1 ecdhx25519 ecdsap256 2>/dev/null) || { echo "(openssl speed failed: no crypto bound)"; return; }
  x25519=$(awk '/ecdh \(X25519\)/ { print $NF; exit }' <<<"$speed")
  sign=$(awk '/ecdsa \(nistp256\)/ { print $(NF - 1); exit }' <<<"$speed")
  awk -v x="$x25519" -v s="$sign" 'BEGIN {
    if (x <= 0 || s <= 0) { print "(openssl speed gave no figures: no crypto bound)"; exit }
    tx = 1e6 / x; ts = 1e6 / s
    printf "Crypto bound of TLS 1.3 resumption (openssl speed, this CPU): X25519 %.0f µs an operation, P-256 signature %.0f µs:\n", tx, ts
    printf "a full handshake does 2 X25519 + 1 signature, a resumed one (psk_dhe_ke, what clients offer) 2 X25519:\n"
    printf "full ÷ resumed <= %.2f from public-key work alone, whatever else the server does.\n", (2 * tx + ts) / (2 * tx)
  }'
}

# The issue's comparisons, printed (never asserted: a shared machine's
# figures move): the HTTPS ratio next to the plain-HTTP one, and what a full
# handshake costs against a resumed one. A handshake's cost is nginx's CPU per
# new HTTPS connection less its CPU per request on a new plain-HTTP connection
# (the TCP connection and the request itself), both on the same path.
tls_summary() {
  local c version key keep full resumed net_full net_resumed
  # req/s ratios move with whatever else loads the machine; the CPU per
  # request beside them does not: what TLS adds to a kept-alive request.
  TLS_RESULT="| HTTPS vs plain HTTP | conns | GET /items / static, HTTPS | GET /items / static, plain HTTP | CPU µs/req all tiers, HTTPS / plain: GET /items; static | nginx µs/req added by TLS: GET /items; static |"$'\n'
  TLS_RESULT+="|---|---:|---:|---:|---:|---:|"$'\n'
  for c in $(conn_counts); do
    TLS_RESULT+="$(printf '| ratio to the limit | %s | %s | %s | %s / %s; %s / %s | %s; %s |' "$c" \
      "$(ratio "tls_items:$c" tls_static)" "$(ratio "items:$c" static)" \
      "$(cpu_sum "tls_items:$c")" "$(cpu_sum "items:$c")" "$(cpu_sum "tls_static:$c")" "$(cpu_sum "static:$c")" \
      "$(minus "${CPU_NGINX[tls_items:$c]:-}" "${CPU_NGINX[items:$c]:-}")" \
      "$(minus "${CPU_NGINX[tls_static:$c]:-}" "${CPU_NGINX[static:$c]:-}")")"$'\n'
  done
  TLS_RESULT+=$'\n'"| new connection per request | TLS | full: conn/s, CPU µs/conn nginx/workers/db | resumed: conn/s, CPU µs/conn (resumed share) | handshake, nginx µs: full / resumed | full ÷ resumed | client (s_time) µs/conn: full / resumed |"$'\n'
  TLS_RESULT+="|---|---|---:|---:|---:|---:|---:|"$'\n'
  for key in hs_static hs_items; do
    if [[ $key == hs_static ]]; then keep=${CPU_NGINX[close_static:1]:-}; else keep=${CPU_NGINX[close_items:1]:-}; fi
    for version in tls1_3 tls1_2; do
      full=$key:$version:new resumed=$key:$version:reuse
      net_full=$(minus "${HS_NGINX[$full]}" "$keep")
      net_resumed=$(minus "${HS_NGINX[$resumed]}" "$keep")
      TLS_RESULT+="$(printf '| %s | %s | %s, %s | %s, %s (%s/%s) | %s / %s | %s | %s / %s |' \
        "${HS_LABEL[$full]#HTTPS }" "${version/tls1_/1.}" "${HS_RATE[$full]}" "${HS_CPU[$full]}" \
        "${HS_RATE[$resumed]}" "${HS_CPU[$resumed]}" "${HS_RESUMED[$resumed]}" "${HS_CONNS[$resumed]}" \
        "$net_full" "$net_resumed" "$(over "$net_full" "$net_resumed")" \
        "${HS_CLIENT[$full]}" "${HS_CLIENT[$resumed]}")"$'\n'
    done
  done
  TLS_RESULT+=$'\n'"Targets (issue 14), not asserted: the HTTPS ratio no worse than the plain-HTTP ratio; a resumed"$'\n'
  TLS_RESULT+="handshake at least 3x cheaper than a full one (\"full ÷ resumed\": nginx's CPU per new HTTPS connection"$'\n'
  TLS_RESULT+="less its CPU per request on a new plain-HTTP connection, same path, one connection at a time)."$'\n'
  TLS_RESULT+=$'\n'"$(crypto_bound)"$'\n'
  printf '\nHTTPS (%s):\n%s' "$TLS_BASE" "$TLS_RESULT"
}

# ------------------------------------------------ POST against the database --

# POST /items set against MariaDB's own rate of the same insert: the
# worker's prepared INSERT, one autocommit per row, from as many connections
# (ctest/bench/insert-loop.c). Its gap to POST is what nginx, FastCGI, JSON
# and the worker add to a durable write.
POST_RESULT="" INSERT_LOOP=${INSERT_LOOP:-} WORKER_DB_ENV=()
# The loop's bound besides --duration (its latency array: 4 MB).
INSERT_LOOP_MAX=1000000
declare -A LOOP_RATE LOOP_P50 LOOP_P99 LOOP_DB_CPU

# The insert-loop binary: INSERT_LOOP, else built in BUILD_DIR as
# run-local.sh builds the worker there.
find_insert_loop() {
  local dir=${BUILD_DIR:-$REPO/build} log=$OUT_DIR/insert-loop-build.log
  if [[ -n $INSERT_LOOP ]]; then
    [[ -x $INSERT_LOOP ]] || die "INSERT_LOOP=$INSERT_LOOP is not an executable"
    return
  fi
  ensure_stack_packages
  if [[ ! -f $dir/build.ninja ]] && ! meson setup "$dir" "$REPO" >"$log" 2>&1; then
    cat "$log" >&2
    die "meson setup $dir failed (for ctest/bench/insert-loop)"
  fi
  if ! meson compile -C "$dir" insert-loop >>"$log" 2>&1; then
    cat "$log" >&2
    die "building ctest/bench/insert-loop in $dir failed"
  fi
  INSERT_LOOP=$dir/ctest/bench/insert-loop
}

# The database settings a worker runs with, from its environment: the loop
# connects exactly as the workers do (DB_HOST and DB_PORT, so the same
# transport; the user, the database, the password file). Sets WORKER_DB_ENV.
read_worker_db_env() {
  local pool pids
  pool=$(read_pid pool)
  pid_alive "$pool" || die "insert loop: no worker pool running under $RUN_DIR"
  mapfile -t pids < <(ps -o pid= --ppid "$pool")
  ((${#pids[@]} > 0)) || die "insert loop: the pool has no worker"
  mapfile -t WORKER_DB_ENV < <(tr '\0' '\n' <"/proc/${pids[0]// /}/environ" |
    grep -E '^(DB_HOST|DB_PORT|MYSQL_DATABASE|MYSQL_USER|MYSQL_PASSWORD_FILE|MYSQL_PASSWORD)=')
  [[ " ${WORKER_DB_ENV[*]%%=*} " == *" MYSQL_USER "* ]] ||
    die "insert loop: cannot read the database settings of worker ${pids[0]// /} (/proc/PID/environ: run as root or as the workers' user)"
}

# usage: run_insert_loop CONNS
run_insert_loop() {
  local conns=$1 out=$OUT_DIR/insert-loop-c$1.txt line rc=0 kv tier
  local inserts="" inserts_per_s="" p50_us="" p99_us=""
  # mariadbd's CPU per row, beside POST's: whether a POST asks the database for more than the insert.
  local -A ticks
  # shellcheck disable=SC2034 # read by cpu_per, by name
  for tier in nginx workers db; do ticks[$tier]=$(tier_ticks "$tier"); done
  # The settings go through the environment, never argv (ps shows argv).
  (
    unset DB_HOST DB_PORT MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD_FILE MYSQL_PASSWORD
    for kv in "${WORKER_DB_ENV[@]}"; do export "${kv?}"; done
    exec timeout $((DURATION + 30)) "$INSERT_LOOP" --connections "$conns" --duration "$DURATION" \
      --max-count "$INSERT_LOOP_MAX"
  ) >"$out" 2>&1 || rc=$?
  line=$(grep '^INSERT_LOOP ' "$out" || true)
  for kv in ${line#INSERT_LOOP }; do
    case ${kv%%=*} in
      inserts | inserts_per_s | p50_us | p99_us) printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
    esac
  done
  if ((rc != 0)) || ! [[ $inserts =~ ^[1-9][0-9]*$ && $inserts_per_s =~ ^[0-9]+$ &&
    $p50_us =~ ^[0-9]+$ && $p99_us =~ ^[0-9]+$ ]]; then
    cat "$out" >&2
    die "insert loop failed at $conns connections (exit $rc): no figures"
  fi
  LOOP_RATE[$conns]=$inserts_per_s LOOP_P50[$conns]=$p50_us LOOP_P99[$conns]=$p99_us
  LOOP_DB_CPU[$conns]=$(cpu_per "$inserts" ticks)
  LOOP_DB_CPU[$conns]=${LOOP_DB_CPU[$conns]##*/}
  log "$(printf '%-34s c%-3d %8s ins/s  p50 %s  p99 %s  mariadbd CPU us/insert %s  (%s inserts%s)' \
    "MariaDB prepared-insert loop" "$conns" "$inserts_per_s" "$(fmt_ms "$p50_us")" "$(fmt_ms "$p99_us")" \
    "${LOOP_DB_CPU[$conns]}" "$inserts" "$( ((inserts >= INSERT_LOOP_MAX)) && echo ', stopped at the max count')")"
}

# What makes a commit durable, as the server has it (not as my.cnf says):
# the redo log flushed at each commit, the binary log synced (when there is
# one), and where the datadir lives (tmpfs would make fsync free).
durability() {
  local vars
  if [[ ! -S $RUN_DIR/db/mysql.sock ]]; then
    echo "(no database socket in $RUN_DIR/db: the settings in effect are unknown)"
    return
  fi
  vars=$(db_root -e "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('innodb_flush_log_at_trx_commit',
    'sync_binlog', 'log_bin', 'innodb_flush_method', 'innodb_doublewrite')") ||
    die "insert loop: SHOW VARIABLES through the root socket failed"
  [[ $vars == *innodb_flush_log_at_trx_commit* && $vars == *sync_binlog* ]] ||
    die "insert loop: SHOW VARIABLES gave no durability settings"
  awk '{ printf "%s%s=%s", (NR > 1 ? ", " : ""), $1, $2 }' <<<"$vars"
  if grep -qx $'log_bin\tOFF' <<<"$vars"; then printf ' (log_bin OFF: no binary log for sync_binlog to sync)'; fi
  printf '; datadir on %s\n' "$(findmnt -n -o FSTYPE -T "$RUN_DIR/db" 2>/dev/null || echo '?')"
}

# POST /items and the insert loop, one after the other at each connection count.
run_post() {
  local c id durable
  if [[ -z $RUN_DIR ]]; then
    run_step post "POST /items" /items "$LUA_DIR/post-item.lua"
    POST_RESULT="- not compared: the insert loop needs the stack's RUN_DIR (--run-dir)"$'\n'
    return
  fi
  read_worker_db_env
  durable=$(durability) || die "insert loop: the durability settings could not be read"
  log "durability in effect: $durable"
  for c in $(conn_counts); do
    run_wrk post "POST /items" "$c" /items "$LUA_DIR/post-item.lua"
    run_insert_loop "$c"
  done
  POST_RESULT="- durability in effect (SHOW VARIABLES): $durable"$'\n'
  POST_RESULT+="- mariadbd's CPU per row counts its background threads too (purge, page flushing), which weigh"$'\n'
  POST_RESULT+="  more per row at the lower rate: read it beside the rates"$'\n'$'\n'
  POST_RESULT+="| conns | POST /items req/s | MariaDB prepared-insert loop inserts/s | POST /items req/s ÷ MariaDB prepared-insert loop inserts/s | p50 POST / loop | p99 POST / loop | mariadbd CPU µs per row: POST / loop |"$'\n'
  POST_RESULT+="|---:|---:|---:|---:|---:|---:|---:|"$'\n'
  for c in $(conn_counts); do
    id=post:$c
    POST_RESULT+="$(printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s |' "$c" "${RPS[$id]}" "${LOOP_RATE[$c]}" \
      "$(over "${RPS[$id]}" "${LOOP_RATE[$c]}")" "$(fmt_ms "${P50[$id]}")" "$(fmt_ms "${LOOP_P50[$c]}")" \
      "$(fmt_ms "${P99[$id]}")" "$(fmt_ms "${LOOP_P99[$c]}")" "${CPU[$id]##*/}" "${LOOP_DB_CPU[$c]}")"$'\n'
  done
  printf '\nPOST /items against MariaDB'\''s own insert rate:\n%s' "$POST_RESULT"
}

# ------------------------------------------------------------------ scale --

SCALE_RESULT="" SCALE_FAILED=0 SCALE_TITLE="" AFTER_END=""

db_root() { mariadb --no-defaults --socket="$RUN_DIR/db/mysql.sock" -uroot -N -B items "$@"; }

# usage: thousands N -> N with a comma every three digits (1000000 -> 1,000,000)
thousands() { sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta' <<<"$1"; }

# Grows the table to SCALE_ROWS rows and times it; sets SCALE_TITLE and the
# first line of SCALE_RESULT.
load_scale_rows() {
  local count need start end flush_start count_after seconds="" flushed
  [[ -S $RUN_DIR/db/mysql.sock ]] || die "--scale: no database socket at $RUN_DIR/db/mysql.sock"
  count=$(db_root -e 'SELECT COUNT(*) FROM items') || die "--scale: cannot reach the database as root through its socket"
  need=$((SCALE_ROWS - count))
  SCALE_RESULT=""
  if ((need > 0)); then
    log "loading $need rows through the MariaDB root socket"
    start=$(date +%s%N)
    # Multi-row INSERTs of 5,000 rows: seconds, not the minutes the API would
    # take (measured here: 1,000,000 rows in 5.5 s; INSERT ... SELECT from
    # seq_1_to_N was no faster and leaves id gaps, 20,000-row batches neither).
    awk -v n="$need" -v batch=5000 'BEGIN {
      for (i = 1; i <= n; i++) {
        printf "%s('\''scale row %d'\'','\''loaded by scripts/bench.sh --scale'\'')", ((i - 1) % batch ? "," : "INSERT INTO items (name, description) VALUES "), i
        if (i % batch == 0 || i == n) print ";"
      }
    }' | db_root || die "--scale: loading rows failed"
    end=$(date +%s%N)
    seconds=$(awk -v ns="$((end - start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
    # The load leaves thousands of dirty pages that InnoDB's page cleaner
    # writes back at its own pace (measured: 35 s after 1,000,000 rows), on
    # the CPUs and disk of the runs that follow: the first of them
    # (after=0) would pay for it. FOR EXPORT writes the table's pages now.
    flush_start=$(date +%s%N)
    db_root -e 'FLUSH TABLES items FOR EXPORT; UNLOCK TABLES' || die "--scale: flushing the loaded pages failed"
    flushed=$(awk -v ns="$(($(date +%s%N) - flush_start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
    SCALE_RESULT+="- load: $(thousands "$need") rows in $seconds s ($(awk -v n="$need" -v ns="$((end - start))" \
      'BEGIN { printf "%.0f", n / (ns / 1e9) }') rows/s; multi-row INSERTs of 5,000 through the root socket),"
    SCALE_RESULT+=" then $flushed s to write its pages back (FLUSH TABLES items FOR EXPORT) before the runs"$'\n'
  else
    SCALE_RESULT+="- load: none ($(thousands "$count") rows already, SCALE_ROWS $(thousands "$SCALE_ROWS"))"$'\n'
  fi
  count_after=$(db_root -e 'SELECT COUNT(*) FROM items')
  ((count_after >= SCALE_ROWS)) || die "--scale: $count_after rows after the load, expected $SCALE_ROWS"
  SCALE_TITLE="$(thousands "$count_after") rows"
  # The id before the last 100: after it comes the table's last full page.
  AFTER_END=$(db_root -e 'SELECT id FROM items ORDER BY id DESC LIMIT 1 OFFSET 100')
  [[ $AFTER_END =~ ^[0-9]+$ ]] || die "--scale: no id 100 rows before the end"
  log "items: $(db_root -e 'SELECT CONCAT(COUNT(*), " rows, max id ", MAX(id)) FROM items'); the last page comes after id $AFTER_END${seconds:+ (loaded in $seconds s)}"
}

run_scale() {
  local code summary id c p0 p1 cost_c1 cost_cn end_path
  load_scale_rows
  end_path="/items?after=$AFTER_END&limit=100"
  code=$(fetch scale0 GET '/items?after=0&limit=100')
  expect_status scale0 "$code" 200
  check_json list "$OUT_DIR/scale0.body" 100 >/dev/null || die "body check scale0 failed"
  code=$(fetch scale_end GET "$end_path")
  expect_status scale_end "$code" 200
  # Exactly the last 100 rows: a full page, the table's last id at its end.
  summary=$(check_json list "$OUT_DIR/scale_end.body" 100) || die "body check scale_end ($end_path) failed"
  read -r _ id _ <<<"$summary"
  ((id > AFTER_END)) || die "body check scale_end: first id $id, not after $AFTER_END"
  [[ ${summary##* } == "$(db_root -e 'SELECT MAX(id) FROM items')" ]] ||
    die "body check scale_end: the page ends at id ${summary##* }, not at the table's last"
  code=$(fetch limit1000 GET '/items?limit=1000')
  expect_status limit1000 "$code" 200
  check_json list "$OUT_DIR/limit1000.body" 1000 >/dev/null || die "body check limit1000 failed"
  log "bodies checked: after=0, after=$AFTER_END ($summary), limit=1000"
  # Each pair back to back: the load of a shared machine drifts less
  # within a pair than across four runs.
  for c in $(conn_counts); do
    run_wrk scale0 "GET /items?after=0&limit=100" "$c" '/items?after=0&limit=100'
    run_wrk scale_end "GET $end_path" "$c" "$end_path"
  done
  run_step limit1000 "GET /items?limit=1000 ($SCALE_TITLE)" '/items?limit=1000'
  # Cost of a request: 1/(req/s) under load, the median latency at 1 connection.
  for c in $(conn_counts); do
    p0=${RPS[scale0:$c]} p1=${RPS[scale_end:$c]}
    cost_cn=$(awk -v a="$p0" -v b="$p1" 'BEGIN { printf "%.2f", a / b }')
    cost_c1=$(awk -v a="${P50[scale_end:$c]}" -v b="${P50[scale0:$c]}" 'BEGIN { printf "%.2f", a / b }')
    SCALE_RESULT+="- c$c: after=$AFTER_END (the last page) costs ${cost_cn}x after=0 by req/s, ${cost_c1}x by p50"$'\n'
    if ((!SMOKE)) && awk -v r="$cost_cn" 'BEGIN { exit !(r > 1.5) }'; then
      SCALE_FAILED=1
    fi
  done
  for c in $(conn_counts); do
    SCALE_RESULT+="- c$c: GET /items?limit=1000 at $SCALE_TITLE: ${RPS[limit1000:$c]} req/s, p50 $(fmt_ms "${P50[limit1000:$c]}"), p99 $(fmt_ms "${P99[limit1000:$c]}")"$'\n'
  done
  if ((SCALE_FAILED)); then
    SCALE_RESULT+="- FAILED: keyset pagination must keep after=$AFTER_END within 1.5x of after=0"$'\n'
  else
    SCALE_RESULT+="- bound (<= 1.5x by req/s): $( ((SMOKE)) && echo 'not asserted in --smoke' || echo met)"$'\n'
  fi
  printf '\nScale check (%s):\n%s' "$SCALE_TITLE" "$SCALE_RESULT"
}

# The page with a large table (issue 16): the browser test at 1,000,000 rows.
# It starts a stack of its own and fills its table through that stack's
# database socket; its figures are the test's diagnostics.
SCALE_BROWSER_FAILED=0
run_scale_browser() {
  local dir=$REPO/ctest/browser rows=${LARGE_TABLE_ROWS:-1000000} log rc=0
  if ((SMOKE)); then
    log "--scale: the large-table browser test is not run in --smoke"
    return
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 ||
    [[ ! -x ${CHROMIUM_PATH:-/usr/bin/chromium} ]]; then
    printf '\nBrowser check (%s rows): skipped, node, npm or Chromium missing (ctest/browser/README.md)\n' "$rows"
    return
  fi
  log=$OUT_DIR/scale-browser.log
  if [[ ! -d $dir/node_modules/playwright-core ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund) >"$log" 2>&1 || die "--scale: npm ci in ctest/browser failed: see $log"
  fi
  log "--scale: the large-table browser test at $rows rows (log: $log)"
  (cd "$dir" && LARGE_TABLE_ROWS=$rows node --test --test-reporter=tap tests/large-table.test.mjs) >>"$log" 2>&1 || rc=$?
  printf '\nBrowser check (%s rows, ctest/browser/tests/large-table.test.mjs):\n' "$rows"
  grep -E '^[[:space:]]*# (table filled|first items|GET /items before|[0-9]+ items after|after [0-9]+ items|after a garbage collection|/status:|pass|fail)' "$log" |
    sed -E 's/^[[:space:]]*# /- /' || true
  if ((rc != 0)); then
    SCALE_BROWSER_FAILED=1
    printf -- '- FAILED: see %s\n' "$log"
  fi
}

# ----------------------------------------------------------------- memory --

MEMORY_TABLE=""

MEMORY_HEADER="| when | pid | RSS | PSS | peak RSS (VmHWM) | requests (pool.log) |"$'\n'"|---|---|---:|---:|---:|---:|"

# The workers are the children of the pool's supervisor (multiwatch). The
# peak RSS (VmHWM, the most the worker has ever held) catches what a
# snapshot after the runs misses: a large page's buffers, since freed.
worker_memory() {
  local pool pid rss pss peak served status when=$1
  pool=$(read_pid pool)
  if ! pid_alive "$pool"; then
    MEMORY_TABLE+="| $when | (no pool pid: give --run-dir) | | | | |"$'\n'
    return
  fi
  for pid in $(ps -o pid= --ppid "$pool"); do
    [[ -r /proc/$pid/smaps_rollup ]] || continue
    # A worker may end between ps and here (multiwatch starts another): skipped.
    status=$(cat "/proc/$pid/status" 2>/dev/null) || continue
    rss=$(awk '/^Rss:/ { print $2 }' "/proc/$pid/smaps_rollup")
    pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")
    peak=$(awk '/^VmHWM:/ { print $2 }' <<<"$status")
    [[ $peak =~ ^[0-9]+$ ]] || die "worker $pid: no VmHWM in /proc/$pid/status"
    served=$(grep -c "\"pid\":$pid,\"request_id\"" "$RUN_DIR/logs/pool.log" 2>/dev/null || true)
    MEMORY_TABLE+="$(printf '| %s | %s | %.1f MB | %.1f MB | %.1f MB | %s |' "$when" "$pid" \
      "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$pss" 'BEGIN { print k / 1024 }')" \
      "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" "${served:-?}")"$'\n'
  done
}

# ---------------------------------------------------------------- compose --

# The compose deploy (issue 16): the same steps through the front container,
# first with the api on the unix socket both containers share, then over TCP.
# The limit is the same front serving the identical body from a read-only bind
# mount (its image is read-only: nothing can be published into it).
BENCH_PROJECT=items-bench COMPOSE_DIR="" COMPOSE_PORT="" COMPOSE_STARTED=0
COMPOSE_ENV=() COMPOSE_CMD=() COMPOSE_SETTINGS="" COMPOSE_TABLE="" COMPOSE_RESULT=""
COMPOSE_TRANSPORTS=(unix tcp)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Compose for the bench project, with the bind mount of the static limit.
bench_compose() {
  env "${COMPOSE_ENV[@]}" "${COMPOSE_CMD[@]}" --project-directory "$REPO" -f "$REPO/compose.yaml" \
    -f "$COMPOSE_DIR/bench.yaml" -p "$BENCH_PROJECT" "$@"
}

compose_cid() { bench_compose ps -q "$1" 2>/dev/null | head -n 1; }

compose_deploy() {
  local log
  COMPOSE_DIR=$OUT_DIR/compose
  mkdir -p "$COMPOSE_DIR/static" "$COMPOSE_DIR/secrets"
  # The front's uid reads the mounted directory.
  chmod 755 "$COMPOSE_DIR" "$COMPOSE_DIR/static"
  COMPOSE_PORT=$(free_port)
  # Its own project, images, ports and subnets: nothing of another deployment
  # on this machine is touched. The write limit is raised as for the local run.
  COMPOSE_ENV=(COMPOSE_PROJECT_NAME="$BENCH_PROJECT" IMAGE_PREFIX="$BENCH_PROJECT" IMAGE_TAG=latest
    HTTP_BIND=127.0.0.1 HTTP_PORT="$COMPOSE_PORT" HTTPS_PORT="$(free_port)" PROMETHEUS_PORT="$(free_port)"
    SECRETS_DIR="$COMPOSE_DIR/secrets" DEPLOY_STATE_DIR="$COMPOSE_DIR/state" BACKUP_DIR="$COMPOSE_DIR/backup"
    EDGE_SUBNET=172.31.226.0/24 FRONT_EDGE_IP=172.31.226.20 DATA_SUBNET=172.31.227.0/24
    PUBLIC_SUBNET=172.31.225.0/24 MONITORING_SUBNET=172.31.126.0/24 MONITORING_OUT_SUBNET=172.31.26.0/24
    WRITE_RATE=100000r/s WRITE_BURST=100000 COMPOSE_PROFILES= COMPOSE_FILE= REGISTRY=)
  cat >"$COMPOSE_DIR/bench.yaml" <<YAML
# scripts/bench.sh --compose: the static limit, served by the front itself.
services:
  front:
    volumes:
      - $COMPOSE_DIR/static:/usr/share/nginx/html/bench:ro
YAML
  log=$COMPOSE_DIR/deploy.log
  log "--compose: deploying the project $BENCH_PROJECT on 127.0.0.1:$COMPOSE_PORT (log: $log)"
  COMPOSE_STARTED=1
  env "${COMPOSE_ENV[@]}" API_TRANSPORT=unix "$REPO/scripts/deploy.sh" --timeout 600 >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "--compose: scripts/deploy.sh failed (see $log)"; }
  if docker compose version >/dev/null 2>&1; then COMPOSE_CMD=(docker compose); else COMPOSE_CMD=(docker-compose); fi
}

compose_down() {
  ((COMPOSE_STARTED)) || return 0
  env "${COMPOSE_ENV[@]}" "$REPO/scripts/deploy.sh" --down --purge >>"$COMPOSE_DIR/deploy.log" 2>&1 ||
    log "--compose: removing the project $BENCH_PROJECT failed: see $COMPOSE_DIR/deploy.log"
  COMPOSE_STARTED=0
}

# (Re)creates api and front with API_TRANSPORT=$1 and the bind mount; waits
# until both are healthy and /status answers 200 through the front.
compose_transport() {
  local transport=$1 deadline=$((SECONDS + 180)) svc cid healthy
  bench_compose up -d --no-deps --no-build api front >>"$COMPOSE_DIR/deploy.log" 2>&1 ||
    die "--compose: recreating api and front with API_TRANSPORT=$transport failed (see $COMPOSE_DIR/deploy.log)"
  while :; do
    healthy=1
    for svc in api front; do
      cid=$(compose_cid "$svc")
      [[ -n $cid && $(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null) == healthy ]] || healthy=0
    done
    if ((healthy)) && [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$COMPOSE_PORT/status") == 200 ]]; then
      break
    fi
    ((SECONDS < deadline)) || die "--compose: api and front not healthy within 180 s with API_TRANSPORT=$transport"
    sleep 1
  done
  # What the front was given, from its own log: the transport is not assumed.
  docker logs "$(compose_cid front)" 2>&1 | grep -o 'FCGI_BACKEND=[^ ]*\( ([^)]*)\)\?' | tail -n 1
}

run_compose() {
  local transport backend saved_steps=$STEPS saved_base=$BASE cid
  compose_deploy
  STATIC_DIR=$COMPOSE_DIR/static STATIC_PREFIX=/bench
  # The local token and writes stay with the local stack.
  STEPS=",static,status,items,item,"
  for transport in "${COMPOSE_TRANSPORTS[@]}"; do
    COMPOSE_ENV+=(API_TRANSPORT="$transport") # the last one given counts
    backend=$(compose_transport "$transport")
    # The front's own address in the public network: the published port on
    # loopback would add Docker's userland proxy (docker-proxy) to every
    # request, a process of the host's, not of the stack, and cap the limit too.
    BASE=http://$(docker inspect -f "{{(index .NetworkSettings.Networks \"${BENCH_PROJECT}_public\").IPAddress}}" \
      "$(compose_cid front)"):8080
    log "--compose: API_TRANSPORT=$transport, the front has $backend; measured at $BASE"
    TIER_CONTAINER=([nginx]="$(compose_cid front)" [workers]="$(compose_cid api)" [db]="$(compose_cid db)")
    check_bodies
    if ((WARMUP > 0)); then
      timeout $((WARMUP + 30)) wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$BASE/items" >/dev/null 2>&1 || true
    fi
    run_core "${transport}_" "compose $transport: "
  done
  cid=$(compose_cid api)
  COMPOSE_SETTINGS="measured at the front container's address in the project's public network (port 8080), not through the published loopback port (docker-proxy); FCGI_WORKERS=$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$cid" |
    sed -n 's/^FCGI_WORKERS=//p'), CPUs api/front/db $(for cid in "$(compose_cid api)" "$(compose_cid front)" "$(compose_cid db)"; do
      docker inspect -f '{{.HostConfig.NanoCpus}}' "$cid"; done | awk '{ printf "%s%.1f", (NR > 1 ? "/" : ""), $1 / 1e9 }'), nginx worker processes $(docker top "$(compose_cid front)" -eo pid,args | grep -c '[n]ginx: worker')"
  TIER_CONTAINER=()
  STEPS=$saved_steps BASE=$saved_base STATIC_DIR="" STATIC_PREFIX=""
  compose_down
  compose_table
  printf '\n%s\n%s' "$COMPOSE_TABLE" "$COMPOSE_RESULT"
}

# usage: cell KEY CONNS REF -> "req/s · ratio · p99" of one run
cell() {
  local id=$1:$2
  [[ -n ${RPS[$id]:-} ]] || { echo "-"; return; }
  printf '%s req/s · %s · p99 %s' "${RPS[$id]}" "$(ratio "$id" "$3")" "$(fmt_ms "${P99[$id]}")"
}

compose_table() {
  local step c label local_ratio ratio_t t within
  COMPOSE_TABLE="| test | conns | local (run-local.sh) | compose, unix socket | compose, TCP |"$'\n'
  COMPOSE_TABLE+="|---|---:|---|---|---|"$'\n'
  for step in static status items item; do
    for c in $(conn_counts); do
      label=${LABEL[unix_$step:$c]#compose unix: }
      COMPOSE_TABLE+="| $label | $c | $(cell "$step" "$c" static) | $(cell "unix_$step" "$c" unix_static) | $(cell "tcp_$step" "$c" tcp_static) |"$'\n'
    done
  done
  COMPOSE_TABLE+=$'\n'"CPU µs per request, nginx/workers/db (compose: the containers' processes):"$'\n\n'
  COMPOSE_TABLE+="| test | conns | local | compose, unix socket | compose, TCP |"$'\n'"|---|---:|---:|---:|---:|"$'\n'
  for step in status items item; do
    for c in $(conn_counts); do
      COMPOSE_TABLE+="| ${LABEL[unix_$step:$c]#compose unix: } | $c | ${CPU[$step:$c]:--} | ${CPU[unix_$step:$c]:--} | ${CPU[tcp_$step:$c]:--} |"$'\n'
    done
  done
  COMPOSE_RESULT="Compose settings: $COMPOSE_SETTINGS."$'\n'
  c=$CONNECTIONS
  local_ratio=$(ratio "items:$c" static)
  for t in unix tcp; do
    ratio_t=$(ratio "${t}_items:$c" "${t}_static")
    within=$(awk -v a="$ratio_t" -v b="$local_ratio" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }')
    COMPOSE_RESULT+="- compose $t, GET /items c$c: $ratio_t of the limit (target >= 0.15: $(awk -v r="$ratio_t" 'BEGIN { print (r >= 0.15 ? "met" : "missed") }')); $within of the local ratio $local_ratio (target >= 0.75: $(awk -v r="$within" 'BEGIN { print (r >= 0.75 ? "met" : "missed") }'))"$'\n'
  done
}

# ----------------------------------------------------------------- report --

TABLE=""

build_table() {
  local id key ref
  TABLE="| test | conns | req/s | p50 | p99 | errors | ratio to the limit | CPU µs/request: nginx/workers/db |"$'\n'
  TABLE+="|---|---:|---:|---:|---:|---|---:|---:|"$'\n'
  for id in "${ORDER[@]}"; do
    key=${id%%:*}
    case $key in
      unix_* | tcp_*) continue ;; # the compose table (compose_table)
      *~*) continue ;;            # one round of --rounds: its median stands for it
      static) ref=static ;;
      tls_static | tls_items) ref=tls_static ;;
      close_static | close_items) ref=close_static ;;
      list100 | static100 | scale0 | scale_end | limit1000) ref=static100 ;;
      *) ref=static ;;
    esac
    TABLE+="$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "${LABEL[$id]}" "${id##*:}" "${RPS[$id]}" \
      "$(fmt_ms "${P50[$id]}")" "$(fmt_ms "${P99[$id]}")" "${ERRS[$id]}" "$(ratio "$id" "$ref")" "${CPU[$id]}")"$'\n'
  done
}

# What the run measured: read from the stack itself where it can be.
settings() {
  local conf=$RUN_DIR/nginx/nginx.conf fconf=$RUN_DIR/nginx/items-fastcgi.conf nginx_pid workers
  local uconf=$RUN_DIR/nginx/items-upstream.conf
  local upstream keepalive keep_conn access_log write_limit
  nginx_pid=$(read_pid nginx)
  workers=$(tier_pids workers | wc -l)
  if [[ -n $RUN_DIR && -r $conf ]]; then
    # The upstream block is rendered into its own include file.
    upstream=$(awk '/upstream items_api/ { u = 1; next } u && /}/ { u = 0 } u && $1 == "server" { print $2 }' "$uconf" |
      sort -u | paste -sd' ' | sed "s|$RUN_DIR|RUN_DIR|g")
    keepalive=$(awk '/upstream items_api/ { u = 1; next } u && /}/ { u = 0 } u && $1 == "keepalive" { sub(";", "", $2); print $2 }' "$uconf")
    access_log=$(awk '$1 == "access_log" { $1 = ""; sub(/^ /, ""); sub(/;$/, ""); print; exit }' "$conf" |
      tr -d '"' | sed 's|^[^ ]*/||')
    write_limit=$(grep -o 'zone=writes:[^ ]* rate=[^;]*' "$conf" | sed 's/.* //' || true)
  fi
  if [[ -n $RUN_DIR && -r $fconf ]]; then
    keep_conn=$(awk '$1 == "fastcgi_keep_conn" { sub(";", "", $2); print $2 }' "$fconf")
  fi
  cat <<EOF
- FastCGI workers: ${workers:-?} (FCGI_WORKERS), upstream ${upstream:-?}
- nginx worker processes: $( [[ -n $nginx_pid ]] && ps -o pid= --ppid "$nginx_pid" | wc -l || echo '?'); upstream keepalive: ${keepalive:-off}; fastcgi_keep_conn: ${keep_conn:-off}
- access_log: ${access_log:-?}; write limit per address: ${write_limit:-?}
- MariaDB: $(grep -E '^[a-z_-]+ *=' "$REPO/mysql/my.cnf" 2>/dev/null | sed 's/ *= */=/' | paste -sd' ' || echo '?')
- wrk: -t1 --latency, ${DURATION} s per run, 1 and ${CONNECTIONS} connections, loopback; warm-up ${WARMUP} s; ${ROUNDS} round(s) of the limit, status, items and item
- load average before the run: ${LOAD_BEFORE:-?} (other processes on the machine share its $(nproc) CPUs)
EOF
  if [[ -n $STATIC_NOTE ]]; then
    echo "- $STATIC_NOTE"
  fi
}

machine() {
  local cpu
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  cat <<EOF
- $(nproc) CPUs: ${cpu:-unknown}; kernel $(uname -r); $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)
- $(nginx -v 2>&1 | sed 's|^nginx version: ||'); $(mariadbd --version 2>/dev/null | awk '{ print "MariaDB " $3 }')
- libfcgi $(dpkg-query -W -f='${Version}' libfcgi0ldbl 2>/dev/null || echo '?'), MariaDB Connector/C $(dpkg-query -W -f='${Version}' libmariadb3 2>/dev/null || echo '?'), jansson $(dpkg-query -W -f='${Version}' libjansson4 2>/dev/null || echo '?'), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')
EOF
}

# The targets of issue 16 at the high connection count: ratio to the limit,
# p99 under 5 ms, no error.
TARGETS_RESULT=""
targets_summary() {
  local c=$CONNECTIONS step want id r verdict
  TARGETS_RESULT=""
  for step in items:0.25 status:0.30 item:0.30; do
    want=${step#*:} step=${step%%:*} id=${step%%:*}:$c
    [[ -n ${RPS[$id]:-} ]] || continue
    r=$(ratio "$id" static)
    verdict=$(awk -v r="$r" -v w="$want" -v p="${P99[$id]}" 'BEGIN {
      printf "%s; p99 %.2f ms (< 5 ms: %s)", (r >= w ? "met" : "missed"), p / 1000, (p < 5000 ? "met" : "missed") }')
    TARGETS_RESULT+="- ${LABEL[$id]} c$c: $r of the limit (>= $want: $verdict; errors ${ERRS[$id]})"$'\n'
  done
}

report() {
  build_table
  targets_summary
  printf '\n%s\n' "$TABLE"
  printf 'Targets (issue 16):\n%s' "$TARGETS_RESULT"
  [[ -z $ROUNDS_RESULT ]] || printf 'Rounds (--rounds %s):\n%s' "$ROUNDS" "$ROUNDS_RESULT"
  printf 'Workers after the run:\n%s\n%s' "$MEMORY_HEADER" "$MEMORY_TABLE"
}

write_doc() {
  local section tmp
  section=$(
    echo "<!-- bench:begin (generated by scripts/bench.sh --write-doc; edit outside the markers) -->"
    echo "## Results of the last run ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Rewritten by every \`scripts/bench.sh --write-doc\` run; the settings say what was measured."
    echo "Compare the static rows before reading a ratio: when the machine is busy during the"
    echo "static runs, every ratio of the run goes up."
    echo
    echo "Machine:"
    echo
    machine
    echo
    echo "Settings:"
    echo
    settings
    echo
    echo "Ratios compare req/s with the static file at the same connection count: the 5-row"
    echo "body for /status, /items, /items/{id} and POST; the 100-row body for the 100-row pages."
    echo "CPU is the user + system time each tier used during the run (/proc/PID/stat),"
    echo "divided by the requests served: what a request costs, whatever else runs."
    echo
    printf '%s\n' "$TABLE"
    echo "Targets of issue 16 (c$CONNECTIONS):"
    echo
    printf '%s' "$TARGETS_RESULT"
    if [[ -n $ROUNDS_RESULT ]]; then
      echo
      echo "Each of the limit and the status, items and item steps ran $ROUNDS times in turn"
      echo "(\`--rounds $ROUNDS\`); the table shows each one's median round:"
      echo
      printf '%s' "$ROUNDS_RESULT"
    fi
    echo
    if [[ -n $POST_RESULT ]]; then
      echo "POST /items against MariaDB's own insert rate (ctest/bench/insert-loop: the worker's"
      echo "prepared INSERT, one autocommit per row, as many connections as wrk, connected as the"
      echo "workers are, run right after each POST run):"
      echo
      printf '%s\n' "$POST_RESULT"
    fi
    echo "Workers after the run:"
    echo
    printf '%s\n' "$MEMORY_HEADER"
    printf '%s' "$MEMORY_TABLE"
    if [[ -n $TLS_RESULT ]]; then
      echo
      echo "HTTPS (run-local.sh TLS=1, the front's TLS settings; handshakes by openssl s_time):"
      echo
      printf '%s' "$TLS_RESULT"
    fi
    if [[ -n $COMPOSE_TABLE ]]; then
      echo
      echo "The compose deploy (\`--compose\`): the same steps through the front container, the"
      echo "limit being that container serving the identical body; the local column repeats the"
      echo "runs above. Each cell: req/s · ratio to its own limit · p99."
      echo
      printf '%s\n%s' "$COMPOSE_TABLE" "$COMPOSE_RESULT"
    fi
    if [[ -n $SCALE_RESULT ]]; then
      echo
      echo "Scale check ($SCALE_TITLE):"
      echo
      printf '%s' "$SCALE_RESULT"
    fi
    echo "<!-- bench:end -->"
  )
  tmp=$(mktemp "$DOC.XXXXXX")
  printf '%s\n' "$section" >"$OUT_DIR/doc-section.md"
  if [[ -f $DOC ]] && grep -q '^<!-- bench:begin' "$DOC"; then
    awk -v section_file="$OUT_DIR/doc-section.md" '
      /^<!-- bench:begin/ { while ((getline line < section_file) > 0) print line; skip = 1; next }
      /^<!-- bench:end/ { skip = 0; next }
      !skip { print }' "$DOC" >"$tmp"
  elif [[ -f $DOC ]]; then
    { cat "$DOC"; echo; printf '%s\n' "$section"; } >"$tmp"
  else
    { echo "# Performance"; echo; printf '%s\n' "$section"; } >"$tmp"
  fi
  chmod 644 "$tmp"
  mv "$tmp" "$DOC"
  log "wrote $DOC"
}

# ------------------------------------------------------------------- main --

main() {
  parse_args "$@"
  ensure_packages wrk:wrk curl:curl python3:python3 ps:procps
  if ((TLS)); then ensure_packages openssl:openssl; fi
  if ((SCALE)); then ensure_packages mariadb:mariadb-client; fi
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  if [[ -n $URL ]]; then use_stack; else start_stack; fi
  # Built before any run: a build failure must not come after minutes of them.
  if wants post && [[ -n $RUN_DIR ]]; then find_insert_loop; fi

  check_bodies
  if ((WARMUP > 0)); then
    # Every worker opens its database connection lazily: not in the figures.
    timeout $((WARMUP + 30)) wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$BASE/items" >/dev/null 2>&1 || true
  fi
  run_core "" ""
  # Before list100 and post: GET /items must still be the body checked above.
  ((TLS)) && run_tls
  if wants list100; then
    prepare_list100
    run_step static100 "static file, 100-row body" "$STATIC_100"
    run_step list100 "GET /items?limit=100" '/items?limit=100'
  fi
  export BENCH_TOKEN=$TOKEN
  wants post && run_post
  worker_memory "after the runs"
  if ((SCALE)); then
    run_scale
    worker_memory "after --scale"
    run_scale_browser
  fi
  ((COMPOSE_BENCH)) && run_compose
  report
  ((WRITE_DOC)) && write_doc
  if ((WRK_ERRORS > 0)); then
    die "wrk reported $WRK_ERRORS errors (non-2xx or socket errors)"
  fi
  if ((SCALE_FAILED)); then
    die "scale check failed: GET /items?after=$AFTER_END (the last page) costs more than 1.5x after=0"
  fi
  if ((SCALE_BROWSER_FAILED)); then
    die "scale check failed: the large-table browser test (see above)"
  fi
  log "done$( ((SMOKE)) && echo ' (smoke: every step ran, every body was right)')"
}

main "$@"
