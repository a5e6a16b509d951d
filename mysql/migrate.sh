#!/usr/bin/env bash
# The schema migration runner, the one every way of running the stack uses: scripts/run-local.sh,
# and the db image's entrypoint (compose and Swarm). See docs/deployment.md "Schema migrations".
set -euo pipefail

usage() {
    cat <<'EOF'
usage: migrate.sh [--dir DIR] [--lock-timeout SECONDS] [--pending] DATABASE -- CLIENT...

Applies DIR/NNNN_name.sql [the migrations/ directory beside this script] to DATABASE in
version order, each exactly once, and records each in DATABASE.schema_migrations (version,
name, checksum, applied_at). CLIENT is the mariadb client command with its connection and
credentials, e.g. `mariadb --socket=/run/mysqld/mysqld.sock --user=root`; the account needs
ALTER, CREATE, INDEX, INSERT, SELECT, UPDATE and TRIGGER on DATABASE (the server's admin will
do). DIR holds nothing but NNNN_description.sql files numbered 0001, 0002, ... without a gap.

- One runner at a time: it holds GET_LOCK('schema_migrations.DATABASE') for its whole run
  (waiting up to --lock-timeout [60] seconds for another runner to finish); a runner that
  waited then finds the migrations applied and applies nothing.
- Refuses to run (exit 1, nothing applied) when a migration already applied has changed
  (its SHA-256 differs from the recorded one) or was recorded under another name, when the
  files have a gap (a file gone), or when a later migration is applied but an earlier one is
  not (a row removed from schema_migrations by hand).
- Each file runs in one session with time_zone '+00:00', statement by statement; the first
  error stops the run (exit 1) naming the file, the line and the statement; the migrations
  before it stay applied and recorded. DDL cannot be rolled back, so the statements of that
  file before the failing one stay applied: write each statement so that it can run again
  (IF [NOT] EXISTS, a WHERE that skips rows already done), then fix the cause and run again.
- A database whose recorded version is newer than DIR's last file is left as it is (a newer
  release ran there; its migrations must keep older workers working).

--pending  list the migrations not applied yet (one name a line) and exit; nothing is changed
           (SELECT is enough).
Output: one line per migration applied, then "DATABASE at schema version N".
EOF
}

log() { printf '[migrate] %s\n' "$*" >&2; }
die() { printf '[migrate] error: %s\n' "$*" >&2; exit 1; }

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/migrations
lock_timeout=60
pending_only=0
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
        --lock-timeout) lock_timeout=${2:?--lock-timeout needs seconds}; shift 2 ;;
        --pending) pending_only=1; shift ;;
        --) die "no DATABASE before --" ;;
        -*) usage >&2; exit 2 ;;
        *) break ;;
    esac
done
database=${1:-}
[[ -n $database && ${2:-} == -- && -n ${3:-} ]] || { usage >&2; exit 2; }
shift 2
client=("$@")
[[ $database =~ ^[A-Za-z0-9_]+$ ]] || die "DATABASE must be a plain name (letters, digits, _): $database"
[[ $lock_timeout =~ ^[0-9]+$ ]] || die "--lock-timeout needs a whole number of seconds"
[[ -d $dir ]] || die "no migrations directory $dir"

# The files, checked before anything is sent: only NNNN_name.sql, versions unique, no gap.
declare -A file_of=() sum_of=()
versions=()
shopt -s nullglob dotglob
for path in "$dir"/*; do
    base=${path##*/}
    [[ $base =~ ^([0-9]{4})_[a-z0-9_]+\.sql$ ]] ||
        die "$dir/$base: the migrations directory holds only NNNN_description.sql files (lower case, digits, _)"
    version=$((10#${BASH_REMATCH[1]}))
    ((version > 0)) || die "$base: versions start at 0001"
    [[ -z ${file_of[$version]:-} ]] || die "two migrations have version $version: ${file_of[$version]##*/} and $base"
    file_of[$version]=$path
    sum_of[$version]=$(sha256sum "$path" | cut -d ' ' -f 1)
    versions+=("$version")
done
shopt -u nullglob dotglob
((${#versions[@]})) || die "no migration in $dir"
mapfile -t versions < <(printf '%s\n' "${versions[@]}" | sort -n)
for i in "${!versions[@]}"; do
    ((versions[i] == i + 1)) || die "no migration $(printf '%04d' $((i + 1))) in $dir: the versions go 0001, 0002, ... without a gap"
done

# utf8mb4 whatever the client's defaults: a migration may hold any text.
client+=(--default-character-set=utf8mb4)
sql() { "${client[@]}" --batch --skip-column-names "$database" -e "$1"; }

# The lock lives as long as this session, held open beside the others and closed at exit.
lock_session() {
    coproc LOCK { "${client[@]}" --batch --skip-column-names --unbuffered "$database" 2>&1; }
    printf "SELECT GET_LOCK('schema_migrations.%s', %d);\n" "$database" "$lock_timeout" >&"${LOCK[1]}"
    local got=""
    read -r -t $((lock_timeout + 10)) got <&"${LOCK[0]}" || true
    case $got in
        1) ;;
        0) die "another runner held the migration lock for more than ${lock_timeout} s: nothing applied" ;;
        *) die "could not take the migration lock: ${got:-no answer from the server}" ;;
    esac
}
release_lock() {
    local fd=${LOCK[1]:-}
    if [[ -n ${LOCK_PID:-} && -n $fd ]]; then
        exec {fd}>&- || true
        wait "$LOCK_PID" 2>/dev/null || true
    fi
}
trap release_lock EXIT
if ((!pending_only)); then
    lock_session
    sql "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INT UNSIGNED NOT NULL PRIMARY KEY,
            name       VARCHAR(255) NOT NULL,
            checksum   CHAR(64) NOT NULL,
            applied_at DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6)
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4" || die "cannot create $database.schema_migrations"
fi

# "version<TAB>name<TAB>checksum" lines; none when the table does not exist yet (--pending).
applied_rows() {
    local out
    if out=$(sql "SELECT version, name, checksum FROM schema_migrations ORDER BY version" 2>&1); then
        printf '%s\n' "$out"
    elif ((pending_only)) && [[ $out == *"ERROR 1146"* ]]; then
        return 0
    else
        printf '%s\n' "$out" >&2
        return 1
    fi
}
declare -A applied_name=() applied_sum=()
applied_max=0
rows=$(applied_rows) || die "cannot read $database.schema_migrations"
while IFS=$'\t' read -r version name checksum; do
    [[ -n $version ]] || continue
    applied_name[$version]=$name
    applied_sum[$version]=$checksum
    ((version > applied_max)) && applied_max=$version
done <<<"$rows"

# Everything recorded must still be what ran: refuse before applying anything.
pending=()
for version in "${versions[@]}"; do
    base=${file_of[$version]##*/}
    if [[ -n ${applied_name[$version]:-} ]]; then
        [[ ${applied_name[$version]} == "$base" ]] ||
            die "version $version was applied as ${applied_name[$version]}, but the file is $base: refusing"
        [[ ${applied_sum[$version]} == "${sum_of[$version]}" ]] ||
            die "$base was changed after it was applied (recorded SHA-256 ${applied_sum[$version]:0:16}..., file ${sum_of[$version]:0:16}...): refusing to run. A migration that ran is never edited: restore the file, and put the change in a new migration"
    else
        ((version < applied_max)) &&
            die "$base is not applied, but a later migration (version $applied_max) is: refusing (migrations apply in order)"
        pending+=("$version")
    fi
done

if ((pending_only)); then
    for version in "${pending[@]}"; do printf '%s\n' "${file_of[$version]##*/}"; done
    exit 0
fi

# The statement that begins at or before LINE of FILE, up to its semicolon (at most 8 lines).
statement_at() {
    awk -v want="$2" '
        { lines[NR] = $0 }
        END {
            start = 1
            for (i = 1; i < want && i <= NR; i++) if (lines[i] ~ /;[[:space:]]*(--.*)?$/) start = i + 1
            while (start < NR && lines[start] ~ /^[[:space:]]*(--.*)?$/) start++
            for (i = start; i <= NR && i < start + 8; i++) { print "    " lines[i]; if (lines[i] ~ /;[[:space:]]*(--.*)?$/) break }
        }' "$1"
}

for version in "${pending[@]}"; do
    path=${file_of[$version]}
    base=${path##*/}
    started=$(date +%s.%N)
    err=$(
        {
            echo "SET SESSION time_zone = '+00:00';"
            cat "$path"
            echo
            echo "INSERT INTO schema_migrations (version, name, checksum) VALUES ($version, '$base', '${sum_of[$version]}');"
        } | "${client[@]}" --batch "$database" 2>&1 >/dev/null
    ) || {
        # "ERROR 1054 (42S22) at line 7: ..." counts the SET line first.
        if [[ $err =~ at\ line\ ([0-9]+):\ (.*)$ ]]; then
            line=$((BASH_REMATCH[1] - 1))
            printf '[migrate] error: %s failed at line %d: %s\n[migrate] the statement:\n' "$base" "$line" "${BASH_REMATCH[2]}" >&2
            statement_at "$path" "$line" >&2
        else
            printf '[migrate] error: %s failed: %s\n' "$base" "$err" >&2
        fi
        die "stopped at $base: the migrations before it are applied and recorded, nothing after it ran; statements of $base before the failing one may have run (DDL is not rolled back): fix the cause and run again (each statement must be able to run twice)"
    }
    log "applied $base in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
done
if ((${#pending[@]} == 0)); then
    log "nothing to apply"
fi
version=$(sql "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
log "$database at schema version $version"
