#!/usr/bin/env python3
"""Upgrade test of the compose deployment: the release before schema migrations -> this commit.

Usage: ctest/compose/test_upgrade.py [--keep] [--worktree]
(run by ctest/compose/test_compose.sh after test_compose.py; Python 3 standard library only)

In a temporary clone of the repository this file is in (`git clone`, then `git checkout`):
  1. check out UPGRADE_FROM (fd03663, the last release without migrations) and deploy it with
     that checkout's own scripts/deploy.sh as compose project UPGRADE_PROJECT (items-upgrade),
     images UPGRADE_IMAGE_PREFIX-{db,api,front} (items-upgrade-*: the other suites' items-*
     images are never rebuilt from an old commit), secrets in a temporary directory, front
     bound to 127.0.0.1:UPGRADE_HTTP_PORT (the first free port of 18580..18599), edge subnet
     172.31.240.0/24 (api .10, front .20), data subnet 172.31.241.0/24;
  2. write 20 items (accents, emoji, quotes, HTML, null and long descriptions) through the API,
     read every item back page by page (id, name, description, created_at);
  3. check out this commit in the same checkout and deploy it on the same volume and secrets,
     while a client polls GET /items every 50 ms on loopback (bounded in count and time);
     then: every item reads back unchanged (created_at included), the schema version went from
     0 (no schema_migrations table) to the last migration's, /status is 200, items carry an ETag;
  4. deploy once more (down, up: the db starts again): nothing is applied, schema_migrations
     unchanged;
  5. append a comment to an applied migration, redeploy: refused ("was changed after it was
     applied"), the deploy fails; restore the file, redeploy: healthy, the data unchanged;
  6. two migrate.sh at once (both held at the migration lock, then released together) against a
     scratch database in the db container: each migration recorded once, both exit 0, one
     applied them all and the other nothing;
  7. deploy.sh --down --purge of the project, the clone removed (always, also on failure,
     unless --keep).
Figures ("# ..." lines): items carried over, time to migrate (from the db logs), what the polling
client saw during the upgrade deploy (requests, non-200 answers, longest time without a 200).

"This commit" is the HEAD commit of the repository (`git rev-parse HEAD`): uncommitted changes
of the working tree are NOT part of it. --worktree tests the working tree as it is instead: its
state (tracked changes, deletions, untracked files that .gitignore does not exclude) is committed
in the temporary clone only; the repository itself is only read.

  --keep      leave the stack running and the clone in place (the output says where; remove
              them with COMPOSE_PROJECT_NAME=items-upgrade <clone>/scripts/deploy.sh --down --purge)
  --worktree  upgrade to the working tree, uncommitted changes included (see above)

One line per check ("ok - ..." or "FAIL - ...: reason"), then "N passed, M failed"; exit 1 if a
check failed. Environment: UPGRADE_FROM (fd03663), UPGRADE_PROJECT (items-upgrade),
UPGRADE_HTTP_PORT, UPGRADE_IMAGE_PREFIX (items-upgrade), UPGRADE_EDGE_SUBNET, UPGRADE_API_EDGE_IP,
UPGRADE_FRONT_EDGE_IP, UPGRADE_DATA_SUBNET, UPGRADE_PUBLIC_SUBNET, COMPOSE_IMPL (see scripts/deploy.sh).
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, log, report, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OLD_COMMIT = os.environ.get("UPGRADE_FROM", "fd03663")
PROJECT = os.environ.get("UPGRADE_PROJECT", "items-upgrade")
IMAGE_PREFIX = os.environ.get("UPGRADE_IMAGE_PREFIX", "items-upgrade")
EDGE_SUBNET = os.environ.get("UPGRADE_EDGE_SUBNET", "172.31.240.0/24")
API_EDGE_IP = os.environ.get("UPGRADE_API_EDGE_IP", "172.31.240.10")
FRONT_EDGE_IP = os.environ.get("UPGRADE_FRONT_EDGE_IP", "172.31.240.20")
DATA_SUBNET = os.environ.get("UPGRADE_DATA_SUBNET", "172.31.241.0/24")
PUBLIC_SUBNET = os.environ.get("UPGRADE_PUBLIC_SUBNET", "172.31.239.0/24")
PORTS = range(18580, 18600)
DATABASE = "items"  # MYSQL_DATABASE of both releases
SCRATCH_DB = "upgrade_scratch"
MIGRATIONS_IN_IMAGE = "/usr/share/items/migrations"
ITEMS = 20
DEPLOY_TIMEOUT = 900  # seconds for one deploy.sh, the build included
HEALTH_TIMEOUT = "300"  # deploy.sh --timeout
POLL_INTERVAL = 0.05
POLL_MAX_REQUESTS = 20000
POLL_MAX_SECONDS = DEPLOY_TIMEOUT + 60

PORT = 0
HTTPS_PORT = 0
TMP = ""
CHECKOUT = ""
SECRETS_DIR = ""
TOKEN = ""
FIGURES = []


def figure(msg):
    FIGURES.append(msg)
    log(msg)


# --- processes -------------------------------------------------------------------------------------


def env():
    e = checks.deploy_env(PROJECT, PORT, "127.0.0.1", SECRETS_DIR,
                          {"EDGE_SUBNET": EDGE_SUBNET, "API_EDGE_IP": API_EDGE_IP, "FRONT_EDGE_IP": FRONT_EDGE_IP,
                           "DATA_SUBNET": DATA_SUBNET, "PUBLIC_SUBNET": PUBLIC_SUBNET},
                          drop=("REGISTRY", "COMPOSE_FILE_PATH", "SWARM_FILE_PATH", "COMPOSE_FILE",
                                "DOCKER_HOST_IGNORE"), https_port=HTTPS_PORT)
    e.update(STACK_NAME=PROJECT, IMAGE_PREFIX=IMAGE_PREFIX, IMAGE_TAG="latest")
    return e


class Result:
    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


def run(args, timeout=120, check_rc=True, cwd=None, extra_env=None):
    """Runs args in a process group of its own; on timeout the whole group is ended (deploy.sh's
    compose and docker children included) and the call fails."""
    e = env()
    e.update(extra_env or {})
    proc = subprocess.Popen(args, cwd=cwd or (CHECKOUT if os.path.isdir(CHECKOUT) else REPO), env=e, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout} s "
                             f"(stopped); its last output: {(err or '')[-800:]}") from None
    res = Result(args, proc.returncode, out, err)
    if check_rc and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {(err or out)[-1500:]}")
    return res


def docker(*args, timeout=60, check_rc=True):
    return run(["docker", *args], timeout=timeout, check_rc=check_rc)


def git(*args, timeout=120, cwd=None, extra_env=None):
    return run(["git", *args], timeout=timeout, cwd=cwd or CHECKOUT, extra_env=extra_env).stdout.strip()


def deploy(*args, timeout=DEPLOY_TIMEOUT, check_rc=True):
    return run([os.path.join(CHECKOUT, "scripts", "deploy.sh"), *args], timeout=timeout, check_rc=check_rc)


def containers(service, all_states=False):
    """The service's containers, newest first."""
    args = ["ps", "-q"] + (["-a"] if all_states else []) + [
        "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}"]
    return docker(*args).stdout.split()


def cid(service):
    out = containers(service)
    assert out, f"no running container for service {service}"
    return out[0]


def inspect(container):
    return json.loads(docker("inspect", container).stdout)[0]


def container_logs(container):
    res = docker("logs", container, timeout=60, check_rc=False)
    return res.stdout + res.stderr


def mariadb(sql, database=DATABASE, timeout=60):
    """Rows of sql, run in the db container as its OS user mysql (MariaDB's mysql@localhost through
    the unix socket: the image's admin account, no password)."""
    args = ["exec", cid("db"), "mariadb", "--batch", "--skip-column-names"]
    if database:
        args.append(database)
    out = docker(*args, "-e", sql, timeout=timeout).stdout
    return [line.split("\t") for line in out.splitlines()]


def leftovers():
    found = {}
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind, args in (("container", ["ps", "-aq", "--filter", label]),
                       ("network", ["network", "ls", "-q", "--filter", label]),
                       ("volume", ["volume", "ls", "-q", "--filter", label])):
        out = docker(*args, check_rc=False).stdout.split()
        if out:
            found[kind] = out
    return found


def purge_by_label():
    """What deploy.sh --down --purge removes, by the project's label (when no checkout is there to
    run it)."""
    left = leftovers()
    if left.get("container"):
        docker("rm", "-f", "-v", *left["container"], timeout=120, check_rc=False)
    if left.get("network"):
        docker("network", "rm", *left["network"], check_rc=False)
    if left.get("volume"):
        docker("volume", "rm", "-f", *left["volume"], check_rc=False)


# --- HTTP ------------------------------------------------------------------------------------------


def request(method, path, body=None, headers=None, timeout=5):
    return checks.http_request(PORT, method, path, body, headers, timeout)


def try_status(path="/status"):
    return checks.try_status(PORT, path)


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def read_all_items(limit=7):
    """Every item, page by page (limit per page, following Link rel="next"): {id: item}."""
    items, path, pages = {}, f"/items?limit={limit}", 0
    while path:
        pages += 1
        assert pages <= 1000, "more than 1000 pages: the Link chain does not end"
        r = request("GET", path)
        assert r.status == 200, f"GET {path}: HTTP {r.status} {r.body[:200]!r}"
        page = r.json()
        assert isinstance(page, list), f"GET {path}: not a list: {r.body[:200]!r}"
        for item in page:
            assert item["id"] not in items, f"item {item['id']} on two pages"
            items[item["id"]] = item
        m = re.search(r'<([^>]+)>\s*;\s*rel="next"', r.header("link") or "")
        path = m.group(1) if m else None
        if path:
            assert page, f"an empty page with a Link: {r.header('link')}"
    return items


FIELDS = ("id", "name", "description", "created_at")


def essentials(items):
    return {i: {k: item.get(k) for k in FIELDS} for i, item in items.items()}


def compare(before, after):
    """Differences between two {id: item} snapshots, at most 5, as text."""
    diffs = []
    for i in sorted(set(before) | set(after)):
        if i not in after:
            diffs.append(f"item {i} is gone")
        elif i not in before:
            diffs.append(f"item {i} is new: {after[i]}")
        elif before[i] != after[i]:
            diffs.append(f"item {i}: before {before[i]}, after {after[i]}")
    return diffs


def new_items():
    """ITEMS items for the test: accents, emoji (astral and ZWJ sequences), quotes, HTML, SQL
    metacharacters, a null, an empty and a long description."""
    descriptions = [
        None,
        "",
        "Créé avant la migration : « été », naïveté, cœur, Ærøskøbing",
        "emoji 🚀🎉 ⚽🇫🇷 👩‍👩‍👧 ✓",
        "l'apostrophe et \"les guillemets\" ; -- pas un commentaire SQL; DROP TABLE items;",
        "<b>gras</b> & <script>alert(1)</script>",
        "東京 · Москва · القاهرة · Ελλάδα",
        "ligne 1\nligne 2\ttabulée\\antislash",
        "long " + "éà😀" * 500,
    ]
    names = ["Zoë", "Ça déménage", "Ñandú", "Øresund", "İstanbul", "🚀 fusée", "Crème brûlée",
             "naïve café", "Ελληνικά", "日本語テキスト"]
    out = []
    for k in range(ITEMS):
        out.append({"name": f"upgrade {k:02d} {names[k % len(names)]} ✓",
                    "description": descriptions[k % len(descriptions)]})
    return out


# --- the polling client ----------------------------------------------------------------------------


class Poller(threading.Thread):
    """GET /items every POLL_INTERVAL s on 127.0.0.1:PORT, one connection per request (2 s timeout),
    at most POLL_MAX_REQUESTS requests and POLL_MAX_SECONDS s, until stop()."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []  # (start, end, status or None, error)
        self._halt = threading.Event()

    def run(self):
        t_end = time.monotonic() + POLL_MAX_SECONDS
        while not self._halt.is_set() and len(self.samples) < POLL_MAX_REQUESTS and time.monotonic() < t_end:
            t0 = time.monotonic()
            status, error = None, None
            try:
                r = request("GET", "/items", timeout=2)
                status = r.status
                if status == 200:
                    json.loads(r.body.decode("utf-8"))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = type(exc).__name__
                if status == 200:
                    status = None  # a 200 without a complete JSON body is no answer
            t1 = time.monotonic()
            self.samples.append((t0, t1, status, error))
            self._halt.wait(max(0.0, POLL_INTERVAL - (t1 - t0)))

    def stop(self):
        self._halt.set()
        self.join(10)

    def summary(self, t_deploy0, t_deploy1):
        """Figures of what the client saw: (requests, non-200 count, kinds, longest gap without a
        200 in s, first and last non-200 relative to the deploy's start)."""
        s = self.samples
        bad = [x for x in s if x[2] != 200]
        kinds = {}
        for x in bad:
            key = str(x[2]) if x[2] is not None else (x[3] or "no answer")
            kinds[key] = kinds.get(key, 0) + 1
        # The longest time between two consecutive 200 answers (ends of the requests), the start
        # and the end of the polling counting as bounds.
        marks = [s[0][0]] + [x[1] for x in s if x[2] == 200] + [s[-1][1]] if s else []
        gap = max((b - a for a, b in zip(marks, marks[1:])), default=0.0)
        first_bad = bad[0][0] - t_deploy0 if bad else None
        last_bad = bad[-1][1] - t_deploy0 if bad else None
        return {"requests": len(s), "bad": len(bad), "kinds": kinds, "gap": gap,
                "first_bad": first_bad, "last_bad": last_bad,
                "span": (s[-1][1] - s[0][0]) if s else 0.0, "deploy": t_deploy1 - t_deploy0,
                "ends_200": bool(s) and s[-1][2] == 200}


# --- the schema --------------------------------------------------------------------------------------


def schema_table_exists():
    rows = mariadb("SELECT COUNT(*) FROM information_schema.TABLES "
                   f"WHERE TABLE_SCHEMA = '{DATABASE}' AND TABLE_NAME = 'schema_migrations'", database=None)
    return rows == [["1"]]


def schema_rows(database=DATABASE):
    """(version, name, checksum, applied_at) of every recorded migration."""
    return [tuple(r) for r in mariadb(
        "SELECT version, name, checksum, DATE_FORMAT(applied_at, '%Y-%m-%d %H:%i:%s.%f') "
        "FROM schema_migrations ORDER BY version", database=database)]


def schema_version():
    if not schema_table_exists():
        return 0
    rows = mariadb("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(rows[0][0])


def checkout_migrations():
    """The migration files of the checkout's commit: {version: name}."""
    found = {}
    path = os.path.join(CHECKOUT, "mysql", "migrations")
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        m = re.fullmatch(r"([0-9]{4})_[a-z0-9_]+\.sql", name)
        if m:
            found[int(m.group(1))] = name
    return found


APPLIED_RE = re.compile(r"\[migrate\] applied (\S+) in ([0-9.]+) s")


def migrate_lines(text):
    return [ln for ln in text.splitlines() if "[migrate]" in ln]


def entrypoint_window(container):
    """Seconds between the entrypoint's 'starting a temporary server' and 'stopping the temporary
    server' lines of the container's last migration (docker's own timestamps of the lines), or None."""
    res = docker("logs", "-t", container, timeout=60, check_rc=False)
    start = stop = None
    for line in (res.stdout + res.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        m = re.match(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z$", stamp)
        if not m:
            continue
        ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)
        if "[entrypoint] starting a temporary server" in text:
            start, stop = ts, None
        elif "[entrypoint] stopping the temporary server" in text and start is not None:
            stop = ts
    return (stop - start) if start is not None and stop is not None else None


# --- the steps -------------------------------------------------------------------------------------


STATE = {}


def step_clone(worktree):
    def clone():
        head = git("rev-parse", "HEAD", cwd=REPO)
        git("clone", "--quiet", REPO, CHECKOUT, cwd=TMP, timeout=300)
        git("checkout", "--quiet", "--detach", head)
        target = head
        if worktree:
            # The working tree's state, committed in the clone only (the repository is only read).
            wt = {"GIT_DIR": os.path.join(CHECKOUT, ".git"), "GIT_WORK_TREE": REPO}
            git("add", "-A", cwd=REPO, extra_env=wt, timeout=300)
            changed = git("diff", "--cached", "--name-status", "HEAD", cwd=REPO, extra_env=wt)
            ident = {"GIT_AUTHOR_NAME": "test_upgrade", "GIT_AUTHOR_EMAIL": "test_upgrade@localhost",
                     "GIT_COMMITTER_NAME": "test_upgrade", "GIT_COMMITTER_EMAIL": "test_upgrade@localhost"}
            if changed:
                git("commit", "--quiet", "--no-verify", "-m", f"the working tree of {REPO} on top of {head[:12]}",
                    cwd=REPO, extra_env={**wt, **ident})
                target = git("rev-parse", "HEAD")
                log(f"--worktree: {len(changed.splitlines())} changed paths committed in the clone as {target[:12]}")
            else:
                log("--worktree: the working tree has no change: testing HEAD")
        old = git("rev-parse", "--verify", f"{OLD_COMMIT}^{{commit}}")
        git("checkout", "--quiet", "--force", old)
        assert git("rev-parse", "HEAD") == old
        assert git("status", "--porcelain", "--untracked-files=no") == "", "the clone's checkout is not clean"
        STATE.update(head=head, target=target, old=old)
        log(f"upgrade from {old[:12]} ({git('log', '-1', '--format=%s', old)[:70]}) "
            f"to {target[:12]}{' (the working tree)' if target != head else ''}")

    return check(f"clone: a temporary clone of the repository at {OLD_COMMIT}", clone)


def step_deploy_old():
    def deployed():
        t0 = time.monotonic()
        deploy("--timeout", HEALTH_TIMEOUT)
        figure(f"deploy of {STATE['old'][:12]} (its own deploy.sh, build included) took {time.monotonic() - t0:.1f} s")
        assert try_status() == 200, f"/status {try_status()}"

    return check(f"old release: {OLD_COMMIT}'s deploy.sh deploys project {PROJECT} on 127.0.0.1:{PORT}", deployed)


def step_write_and_read():
    def write():
        global TOKEN
        with open(os.path.join(SECRETS_DIR, "api_token"), encoding="utf-8") as f:
            TOKEN = f.read().strip()
        created = []
        for body in new_items():
            for attempt in range(20):
                r = request("POST", "/items", body, auth())
                if r.status != 429:
                    break
                time.sleep(0.5 + attempt * 0.1)  # the write rate limit (10 r/s): wait, retry
            assert r.status == 201, f"POST {body['name']!r}: HTTP {r.status} {r.body[:200]!r}"
            item = r.json()
            assert item["name"] == body["name"] and item["description"] == body["description"], item
            created.append(item["id"])
            time.sleep(0.15)  # below the rate limit; spreads created_at over a few seconds
        STATE["created"] = created

    def read():
        items = essentials(read_all_items())
        missing = [i for i in STATE["created"] if i not in items]
        assert not missing, f"written but not listed: {missing}"
        assert len({it["created_at"] for it in items.values()}) >= 2, "every created_at is the same"
        STATE["before"] = items
        STATE["version_before"] = schema_version()
        assert STATE["version_before"] == 0, f"schema version {STATE['version_before']} before the upgrade (want 0)"
        log(f"{len(items)} items before the upgrade ({len(STATE['created'])} written by the test), "
            f"created_at from {min(i['created_at'] for i in items.values())} "
            f"to {max(i['created_at'] for i in items.values())}; no schema_migrations table")

    if not check(f"old release: {ITEMS} items written through the API (accents, emoji, quotes, HTML, null)", write):
        return False
    return check("old release: every item read back page by page; schema version 0 (no schema_migrations)", read)


def step_upgrade():
    poller = Poller()

    def upgraded():
        git("checkout", "--quiet", STATE["target"])
        assert git("rev-parse", "HEAD") == STATE["target"]
        db_before = cid("db")
        poller.start()
        time.sleep(1)  # a baseline of answers before the deploy starts
        t0 = time.monotonic()
        try:
            proc = deploy("--timeout", HEALTH_TIMEOUT)
        finally:
            t1 = time.monotonic()
            time.sleep(2)  # and after it
            poller.stop()
            STATE["poll"] = poller.summary(t0, t1)
        for line in proc.stderr.splitlines():
            if line.startswith("[deploy] the stack is up") or "backing the database up" in line \
                    or line.startswith("[backup]"):
                log(line)
        db = cid("db")
        assert db != db_before, "the db container was not recreated by the upgrade deploy"
        STATE["upgrade_db"] = db

    ok = check(f"upgrade: this commit's deploy.sh on the same checkout, volume and secrets, "
               f"while a client polls GET /items every {int(POLL_INTERVAL * 1000)} ms", upgraded)
    if "poll" in STATE:
        p = STATE["poll"]
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(p["kinds"].items())) or "none"
        figure(f"downtime during the upgrade deploy ({p['deploy']:.1f} s, build included): {p['requests']} "
               f"GET /items in {p['span']:.1f} s, {p['bad']} not 200 ({kinds}); longest time without a 200: "
               f"{p['gap']:.2f} s" + (f"; non-200 from {p['first_bad']:.1f} s to {p['last_bad']:.1f} s after "
                                      f"the deploy started" if p["bad"] else ""))

        def back():
            assert p["ends_200"], f"its last answers: {poller.samples[-3:]}"

        check("upgrade: the polling client gets 200 again after the deploy", back)
    return ok


def step_after_upgrade():
    def identical():
        after = essentials(read_all_items())
        diffs = compare(STATE["before"], after)
        assert not diffs, f"{len(diffs)} differences: {diffs[:5]}"
        figure(f"items carried over the upgrade: {len(after)} of {len(STATE['before'])}, identical "
               f"(id, name, description, created_at)")

    def one_by_one():
        tags = set()
        for i, want in STATE["before"].items():
            r = request("GET", f"/items/{i}")
            assert r.status == 200, f"GET /items/{i}: HTTP {r.status} {r.body[:200]!r}"
            got = {k: r.json().get(k) for k in FIELDS}
            assert got == want, f"GET /items/{i}: {got}, before the upgrade {want}"
            tag = r.header("etag")
            assert tag and re.fullmatch(r'"[^"]+"', tag), f"GET /items/{i}: ETag {tag!r}"
            tags.add(tag)
        log(f"every item has an ETag ({len(tags)} distinct tags for {len(STATE['before'])} items)")

    def version():
        files = checkout_migrations()
        assert files, "the checkout has no mysql/migrations/NNNN_*.sql"
        want = max(files)
        rows = schema_rows()
        STATE["rows"] = rows
        got = schema_version()
        assert got == want == 3, f"schema version {got} (the checkout's last migration: {want}; the issue says 3)"
        assert [(int(r[0]), r[1]) for r in rows] == sorted(files.items()), f"schema_migrations {rows}, files {files}"
        cols = {r[0]: (r[1], r[2]) for r in mariadb(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = '{DATABASE}' AND TABLE_NAME = 'items'", database=None)}
        assert cols.get("created_at", ("?",))[0] == "datetime", f"created_at is {cols.get('created_at')}"
        assert "version" in cols, f"no version column: {sorted(cols)}"
        log(f"schema version {STATE['version_before']} -> {got}: " + ", ".join(f"{r[0]} {r[1]}" for r in rows))

    def status():
        r = request("GET", "/status")
        assert r.status == 200, f"HTTP {r.status} {r.body[:300]!r}"
        assert r.json().get("database_connection") == "OK", r.json()
        assert inspect(cid("api"))["State"]["Health"]["Status"] == "healthy", "the api is not healthy"

    def db_logs():
        text = container_logs(STATE["upgrade_db"])
        lines = migrate_lines(text)
        applied = APPLIED_RE.findall(text)
        want = [name for _, name in sorted(checkout_migrations().items())]
        assert [name for name, _ in applied] == want, f"applied {applied}; the [migrate] lines: {lines}"
        assert any(f"{DATABASE} at schema version {len(want)}" in ln for ln in lines), f"[migrate] lines: {lines}"
        window = entrypoint_window(STATE["upgrade_db"])
        figure("time to migrate (the db's [migrate] lines): " + ", ".join(f"{n} {s} s" for n, s in applied)
               + f"; {sum(float(s) for _, s in applied):.2f} s in all"
               + (f"; the entrypoint's temporary server, from its start to its stop after the migrations: {window:.2f} s"
                  if window is not None else ""))

    check("upgrade: every item reads back identical page by page (created_at included)", identical)
    check("upgrade: every item identical through GET /items/{id}, each with an ETag", one_by_one)
    check("upgrade: schema version 0 -> 3, one schema_migrations row per migration file, "
          "created_at DATETIME, version column", version)
    check("upgrade: /status 200 with the database OK, the api healthy", status)
    check("upgrade: the db logs name each migration applied and the version reached", db_logs)


def step_redeploy():
    state = {}

    def again():
        deploy("--down", timeout=300)
        t0 = time.monotonic()
        deploy("--timeout", HEALTH_TIMEOUT)
        log(f"second deploy of {STATE['target'][:12]} after --down (the db starts again) took {time.monotonic() - t0:.1f} s")
        state["db"] = cid("db")
        assert state["db"] != STATE["upgrade_db"], "the db container was not started again"

    def nothing():
        assert "db" in state, "the second deploy failed"
        text = container_logs(state["db"])
        lines = migrate_lines(text)
        assert not APPLIED_RE.search(text), f"the second start applied something: {lines}"
        rows = schema_rows()
        assert rows == STATE.get("rows"), f"schema_migrations changed: {STATE.get('rows')} -> {rows}"
        state["lines"] = lines

    def said():
        assert "db" in state, "the second deploy failed"
        text = container_logs(state["db"])
        assert any("[migrate] nothing to apply" in ln for ln in state.get("lines", [])), (
            "no '[migrate] nothing to apply' in the db logs of that start: the runner did not run there; "
            f"the entrypoint said: {[ln for ln in text.splitlines() if '[entrypoint]' in ln and 'migrat' in ln][-3:]}")

    if check("redeploy: down and deploy again (same volume): healthy", again):
        check("redeploy: nothing applied, schema_migrations rows unchanged (applied_at included)", nothing)
        check("redeploy: the db logs of that start say '[migrate] nothing to apply'", said)

    def still():
        diffs = compare(STATE["before"], essentials(read_all_items()))
        assert not diffs, f"{len(diffs)} differences: {diffs[:5]}"

    check("redeploy: the items still identical", still)


def step_tampered():
    files = checkout_migrations()
    name = files.get(2) or (files and files[min(files)])
    rel = os.path.join("mysql", "migrations", name) if name else None
    state = {}

    def refused():
        assert rel, "no migration file to tamper with"
        with open(os.path.join(CHECKOUT, rel), "a", encoding="utf-8") as f:
            f.write("-- an edit after the migration was applied (test_upgrade.py)\n")
        t0 = time.monotonic()
        # --no-rollback: deploy.sh would otherwise put the images before back by itself (tested in
        # the compose suite), and the refusing db is what this step looks at.
        res = deploy("--timeout", "120", "--no-rollback", timeout=600, check_rc=False)
        log(f"deploy with {name} changed exited {res.returncode} after {time.monotonic() - t0:.1f} s")
        assert res.returncode != 0, "the deploy succeeded with an applied migration changed"
        assert "was changed after it was applied" in res.stderr, "deploy.sh did not show the db's refusal"
        dbs = containers("db", all_states=True)
        assert dbs, "no db container"
        state["db"] = dbs[0]
        text = container_logs(dbs[0])
        assert "was changed after it was applied" in text, (
            f"not in the db logs; its [migrate] lines: {migrate_lines(text)[-5:]}; "
            f"its last lines: {text.splitlines()[-5:]}")
        info = inspect(dbs[0])["State"]
        log(f"the db container with the changed migration: {info['Status']}, exit code {info['ExitCode']}, "
            f"restarts {inspect(dbs[0])['RestartCount']}; deploy.sh said: "
            f"{[ln for ln in res.stderr.splitlines() if 'FAILED' in ln or 'service db' in ln][:2]}")
        refusal = [ln for ln in text.splitlines() if "was changed after it was applied" in ln]
        log(f"refusal: {refusal[0][:220]}")

    def restored():
        assert "db" in state, "the refusal was not seen"
        git("checkout", "--", rel)
        assert git("status", "--porcelain", "--untracked-files=no") == "", "the file is not restored"
        # Deploy while the engine is restarting the refused db (its loop's usual state): the
        # replacement must not depend on catching it between two restarts.
        wait_for(lambda: inspect(state["db"])["State"]["Restarting"], 10)
        log(f"the refused db is restarting: {inspect(state['db'])['State']['Restarting']}")
        t0 = time.monotonic()
        try:
            deploy("--timeout", HEALTH_TIMEOUT)
        except AssertionError as exc:
            state["failed"] = True
            raise AssertionError(f"deploy.sh failed: {str(exc).splitlines()[-12:]}") from None
        log(f"deploy with the file restored took {time.monotonic() - t0:.1f} s")
        assert try_status() == 200, f"/status {try_status()}"

    def unchanged():
        if rel:
            git("checkout", "--", rel)
        if state.get("failed"):
            # Not a check of its own: the following checks need a running stack.
            log("bringing the stack back for the next checks: deploy.sh --down, then deploy.sh")
            deploy("--down", timeout=300)
            deploy("--timeout", HEALTH_TIMEOUT)
        assert try_status() == 200, f"/status {try_status()}"
        rows = schema_rows()
        assert rows == STATE.get("rows"), f"schema_migrations changed: {STATE.get('rows')} -> {rows}"
        diffs = compare(STATE["before"], essentials(read_all_items()))
        assert not diffs, f"items changed: {diffs[:5]}"

    check(f"tampered: an applied migration ({name}) changed: the db refuses it, the deploy fails", refused)
    check("tampered: the file restored (git checkout --), deploy.sh is healthy again", restored)
    check("tampered: items and schema_migrations rows unchanged by the refused start", unchanged)


class LockHolder:
    """A mariadb session in the db container holding GET_LOCK(name) until release()."""

    def __init__(self, db, name):
        self.name = name
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", db, "mariadb", "--batch", "--skip-column-names", "--unbuffered"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ask(self, sql, timeout=20):
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"no answer to {sql} within {timeout} s"
        return self.proc.stdout.readline().strip()

    def take(self):
        got = self.ask(f"SELECT GET_LOCK('{self.name}', 10);")
        assert got == "1", f"GET_LOCK answered {got!r}"

    def release(self):
        if self.proc.poll() is None:
            try:
                self.ask(f"SELECT RELEASE_LOCK('{self.name}');", timeout=10)
                self.proc.stdin.close()
            except (OSError, AssertionError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def step_concurrent():
    def concurrent():
        db = cid("db")
        mariadb(f"DROP DATABASE IF EXISTS {SCRATCH_DB}; CREATE DATABASE {SCRATCH_DB}", database=None)
        lock = f"schema_migrations.{SCRATCH_DB}"
        holder = LockHolder(db, lock)
        runners = []
        try:
            holder.take()
            cmd = ["docker", "exec", db, "migrate.sh", "--dir", MIGRATIONS_IN_IMAGE, SCRATCH_DB, "--",
                   "mariadb", "--protocol=socket", "--user=mysql"]
            runners = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True) for _ in range(2)]
            waiting = wait_for(lambda: mariadb(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' "
                f"AND INFO LIKE 'SELECT GET_LOCK(''{lock}''%'", database=None) == [["2"]], 30)
            t_release = time.monotonic()
        finally:
            holder.release()
        outs = []
        for p in runners:
            try:
                out, _ = p.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate(timeout=10)
                out += "\n(killed after 180 s)"
            outs.append((p.returncode, out))
        took = time.monotonic() - t_release
        assert waiting, f"the two runners were not both seen waiting at the lock {lock!r}: {outs}"
        assert all(rc == 0 for rc, _ in outs), f"exit codes {[rc for rc, _ in outs]}: {outs}"
        n = len(checkout_migrations())
        counts = sorted(len(APPLIED_RE.findall(out)) for _, out in outs)
        assert counts == [0, n], f"migrations applied per runner {counts} (want 0 and {n}): {outs}"
        quiet = [out for _, out in outs if not APPLIED_RE.search(out)][0]
        assert "nothing to apply" in quiet, f"the runner that applied nothing said: {quiet}"
        rows = mariadb("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version",
                       database=SCRATCH_DB)
        assert rows == [[str(v), "1"] for v in range(1, n + 1)], f"schema_migrations of {SCRATCH_DB}: {rows}"
        log(f"two runners held at the lock, then released together: both exit 0, applied {counts}, "
            f"done {took:.1f} s after the release; each version recorded once")

    try:
        check("concurrent: two migrate.sh at once on a scratch database: each migration recorded once, "
              "both exit 0, one applied all and the other nothing", concurrent)
    finally:
        try:
            mariadb(f"DROP DATABASE IF EXISTS {SCRATCH_DB}", database=None)
        except Exception as exc:  # noqa: BLE001 - the purge removes it anyway
            log(f"could not drop {SCRATCH_DB}: {exc}")


def free_port(variable="UPGRADE_HTTP_PORT", candidates=PORTS):
    wanted = os.environ.get(variable)
    return checks.free_port([int(wanted)] if wanted else candidates)


def cleanup(keep):
    if keep:
        log(f"--keep: the stack {PROJECT} runs on 127.0.0.1:{PORT}; the clone is {CHECKOUT}, the secrets "
            f"{SECRETS_DIR}; remove them with COMPOSE_PROJECT_NAME={PROJECT} {CHECKOUT}/scripts/deploy.sh "
            f"--down --purge and rm -rf {TMP}")
        return
    if leftovers():
        try:
            if os.path.isfile(os.path.join(CHECKOUT, "scripts", "deploy.sh")):
                deploy("--down", "--purge", timeout=300)
        except Exception as exc:  # noqa: BLE001 - the label purge below follows
            log(f"deploy.sh --down --purge failed: {exc}")
        if leftovers():
            purge_by_label()
    report(f"cleanup: no container, network or volume of project {PROJECT} remains", not leftovers(),
           f"left behind: {leftovers()}")
    shutil.rmtree(TMP, ignore_errors=True)


def main():
    global PORT, HTTPS_PORT, TMP, CHECKOUT, SECRETS_DIR
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    unknown = [a for a in args if a not in ("--keep", "--worktree")]
    if unknown:
        print(f"unknown argument: {unknown[0]} (see --help)", file=sys.stderr)
        return 2
    keep, worktree = "--keep" in args, "--worktree" in args
    started = time.monotonic()
    TMP = tempfile.mkdtemp(prefix="items-upgrade.")
    CHECKOUT = os.path.join(TMP, "checkout")
    SECRETS_DIR = os.path.join(TMP, "secrets")
    try:
        if leftovers():
            log(f"removing leftovers of an earlier run of project {PROJECT}")
            purge_by_label()
        PORT = free_port()
        HTTPS_PORT = free_port("UPGRADE_HTTPS_PORT", range(18560, 18580))
        if not report("upgrade: free loopback ports for the front (HTTP 18580-18599, HTTPS 18560-18579)",
                      PORT != 0 and HTTPS_PORT != 0,
                      "all taken: set UPGRADE_HTTP_PORT, UPGRADE_HTTPS_PORT"):
            return checks.finish()
        log(f"project {PROJECT}, front on 127.0.0.1:{PORT}, edge {EDGE_SUBNET}, data {DATA_SUBNET}, "
            f"images {IMAGE_PREFIX}-*:latest, work in {TMP}")
        if (step_clone(worktree) and step_deploy_old() and step_write_and_read()
                and step_upgrade()):
            step_after_upgrade()
            step_redeploy()
            step_tampered()
            step_concurrent()
    except Exception as exc:  # noqa: BLE001 - a failure outside a check is one too
        report("upgrade: the test ran to its end", False, f"{type(exc).__name__}: {exc}")
    finally:
        try:
            cleanup(keep)
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on to its closing line
            report("cleanup", False, f"{type(exc).__name__}: {exc}")
        log(f"upgrade test took {time.monotonic() - started:.0f} s")
        for line in FIGURES:
            log(f"figure: {line}")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
