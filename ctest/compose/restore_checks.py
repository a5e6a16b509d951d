#!/usr/bin/env python3
"""Checks of scripts/restore.sh against a deployed compose stack: a restore that cannot hurt
(issue 13, point 4). Python 3 standard library only.

    import restore_checks
    restore_checks.run_all({"repo": REPO, "env": {...}, "port": 8080, "api_token": "..."})

ctx["env"] is the environment of the scripts (COMPOSE_PROJECT_NAME, HTTP_PORT, SECRETS_DIR,
BACKUP_DIR, ...), laid over this process's. Each check reports through ctest/lib/checks.py:
- a good restore brings back exactly the dumped items, after backing the current data up first
  (the pre-restore backup holds a write made after the dump), and the live trigger works after it;
- a failing pre-restore backup stops the restore before anything is touched;
- a dump cut in the middle of its INSERTs, and one with a syntax error, leave the live data exactly
  as it was and the api serving, never restarted;
- a fault after the api stopped (RESTORE_FAIL_AFTER_STOP=1, restore.sh's test hook) leaves the api
  stopped, names the pre-restore backup and the commands to recover, and the printed recovery
  command brings the data back.
The stack's data ends as it was at the start (the first dump is restored last).

Run alone against a stack already deployed (the environment as for scripts/deploy.sh):
    COMPOSE_PROJECT_NAME=... HTTP_PORT=... SECRETS_DIR=... BACKUP_DIR=... \
        python3 ctest/compose/restore_checks.py
"""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, log, wait_for  # noqa: E402

RESTORE_TIMEOUT = 300


class Stack:
    """The deployed stack of ctx, and the few operations the checks need."""

    def __init__(self, ctx):
        self.repo = ctx["repo"]
        self.env = {**os.environ, **ctx["env"]}
        self.port = int(ctx["port"])
        self.token = ctx["api_token"]
        self.project = self.env["COMPOSE_PROJECT_NAME"]

    def run(self, args, timeout=120, extra_env=None):
        return subprocess.run(args, cwd=self.repo, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def script(self, name, *args, timeout=RESTORE_TIMEOUT, extra_env=None):
        return self.run([os.path.join(self.repo, "scripts", name), *args], timeout, extra_env)

    def cid(self, service, running=True):
        out = self.run(["docker", "ps", "-q" if running else "-aq",
                        "--filter", f"label=com.docker.compose.project={self.project}",
                        "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
        return out[0] if out else ""

    def started_at(self, service):
        """(container id, its StartedAt): a stopped, restarted or replaced api changes it."""
        cid = self.cid(service, running=False)
        assert cid, f"no container for {service}"
        out = self.run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", cid]).stdout.split()
        return cid, out[0] == "true", out[1]

    def sql(self, statement):
        """Rows (lists of strings) of statement run as the db's admin, in the application database."""
        proc = self.run(["docker", "exec", self.cid("db"), "sh", "-c",
                         'exec mariadb --batch --skip-column-names "$MYSQL_DATABASE" -e "$1"', "sh", statement])
        assert proc.returncode == 0, f"{statement}: {proc.stderr.strip()}"
        return [line.split("\t") for line in proc.stdout.splitlines()]

    def request(self, method, path, body=None, auth=False):
        headers = {"Authorization": f"Bearer {self.token}"} if auth else None
        return checks.http_request(self.port, method, path, body, headers)

    def items(self):
        """The whole listing as the api serves it (the body's bytes)."""
        r = self.request("GET", "/items?limit=1000")
        assert r.status == 200, f"GET /items: HTTP {r.status} {r.body[:200]!r}"
        return r.body

    def status(self):
        return checks.try_status(self.port)

    def serving(self):
        return wait_for(lambda: self.status() == 200, 30)


def dump_text(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def write_dump(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def cut_in_inserts(text):
    """The dump cut in the middle of the items rows, its completion line kept (so that the
    completeness check alone cannot catch it)."""
    start = text.index("INSERT INTO `items` VALUES")
    end = text.index(";\n", start)
    cut = start + (end - start) // 2
    # Inside a row, never just after one: "VALUES (...),(...)" with the rest cut off is a valid
    # statement of fewer rows (the client runs it at the end of its input), which a mid-row cut
    # is not.
    if text[cut - 1] == ")":
        cut -= 1
    return text[:cut] + "\n-- Dump completed on 2026-12-01  0:00:00\n"


def with_syntax_error(text):
    """The whole dump, with one row of items turned into invalid SQL."""
    start = text.index("INSERT INTO `items` VALUES")
    row = text.index("(", start + len("INSERT INTO `items` VALUES"))
    return text[:row] + "(oops " + text[row + 1:]


def pre_restore_backup(stderr):
    m = re.search(r"^\[restore\] backing up the current data first: (\S+)$", stderr, re.M)
    return m.group(1) if m else None


def run_all(ctx):
    st = Stack(ctx)
    tmp = tempfile.mkdtemp(prefix="hb-restore-checks.")
    dump = os.path.join(tmp, "start.sql.gz")
    state = {}
    t0 = time.monotonic()

    def setup():
        proc = st.script("backup.sh", dump, timeout=120)
        assert proc.returncode == 0, proc.stderr[-800:]
        state["start"] = st.items()
        state["db"] = st.sql("SELECT DATABASE()")[0][0]

    def trigger_works():
        """An UPDATE that leaves the version as it was gets a new one from the trigger (0003)."""
        (first,), = st.sql("SELECT MIN(id) FROM items")
        (before,), = st.sql(f"SELECT version FROM items WHERE id = {first}")
        st.sql(f"UPDATE items SET name = name WHERE id = {first}")
        (after,), = st.sql(f"SELECT version FROM items WHERE id = {first}")
        assert before != after, f"item {first}: version {before} unchanged by an UPDATE (no trigger?)"

    def good_restore():
        r = st.request("POST", "/items", {"name": "restore checks: written after the dump"}, auth=True)
        assert r.status == 201, f"POST: HTTP {r.status}"
        state["after_dump"] = r.json()["id"]
        first = json.loads(state["start"])[0]["id"]
        assert st.request("DELETE", f"/items/{first}", auth=True).status == 204, "DELETE failed"
        assert st.items() != state["start"], "the data did not change"
        proc = st.script("restore.sh", "--yes", dump)
        assert proc.returncode == 0, f"restore.sh exited {proc.returncode}: {proc.stderr[-1200:]}"
        state["good_stderr"] = proc.stderr
        backup = pre_restore_backup(proc.stderr)
        assert backup and os.path.isfile(backup), "no backup of the data before the restore was named or made"
        assert st.serving(), f"/status {st.status()} after the restore"
        assert st.items() == state["start"], "GET /items differs from the dumped items"
        triggers = st.sql("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")
        assert ["items_new_version"] in triggers, f"live triggers: {triggers}"
        trigger_works()
        state["start"] = st.items()  # the version changed; the listing may show it
        left = st.sql(f"SHOW DATABASES LIKE '{state['db']}\\_%restore%'")
        assert not left, f"databases left behind: {left}"

    def backup_before():
        path = pre_restore_backup(state.get("good_stderr", ""))
        assert path, "restore.sh named no backup of the data before the restore"
        assert os.path.isfile(path), f"{path} does not exist"
        assert os.stat(path).st_mode & 0o077 == 0, f"{path} is readable by others"
        text = dump_text(path)
        assert text.rstrip("\n").splitlines()[-1].startswith("-- Dump completed"), f"{path} is incomplete"
        assert "restore checks: written after the dump" in text, f"{path} lacks the write made after the dump"

    def untouched(label, file_path, extra_env=None, want=None):
        """restore.sh of file_path fails, and the live data and the api are as they were."""
        r = st.request("POST", "/items", {"name": f"restore checks: before the {label}"}, auth=True)
        assert r.status == 201, f"POST: HTTP {r.status}"
        before = st.items()
        api_before = st.started_at("api")
        proc = st.script("restore.sh", "--yes", file_path, extra_env=extra_env)
        assert proc.returncode != 0, f"restore.sh of the {label} succeeded: {proc.stderr[-600:]}"
        api_after = st.started_at("api")
        assert api_after == api_before and api_after[1], f"the api was stopped or replaced: {api_before} -> {api_after}"
        assert st.status() == 200, f"/status {st.status()}"
        assert st.items() == before, "GET /items changed"
        assert "nothing was changed" in proc.stderr, f"no word that nothing changed: {proc.stderr[-600:]}"
        if want:
            assert want in proc.stderr, f"{want!r} not in: {proc.stderr[-600:]}"
        state["last"] = before

    def backup_fails():
        untouched("failed backup", dump, {"BACKUP_DIR": "/dev/null/cannot-be-a-directory"},
                  "the backup of the current data failed")

    def cut_dump():
        path = os.path.join(tmp, "cut.sql")
        write_dump(path, cut_in_inserts(dump_text(dump)))
        untouched("dump cut in its INSERTs", path, want="loading")

    def syntax_error():
        path = os.path.join(tmp, "syntax.sql")
        write_dump(path, with_syntax_error(dump_text(dump)))
        untouched("dump with a syntax error", path, want="loading")

    def fault_after_stop():
        before = st.items()
        proc = st.script("restore.sh", "--yes", dump, extra_env={"RESTORE_FAIL_AFTER_STOP": "1"})
        err = proc.stderr
        assert proc.returncode != 0, f"restore.sh exited 0 despite the fault: {err[-600:]}"
        _, running, _ = st.started_at("api")
        assert not running, "the api runs after a failure past its stop"
        assert st.status() != 200, "/status answers 200 with the api stopped"
        assert "left STOPPED" in err, err[-800:]
        backup = pre_restore_backup(err)
        assert backup and os.path.isfile(backup), f"pre-restore backup {backup} missing"
        assert f"The data from before this restore: {backup}" in err, err[-800:]
        lines = err.splitlines()
        fix = lines[lines.index("[restore] To put that data back (the api starts again at the end):") + 1]
        start = lines[lines.index("[restore] To start the api anyway on the database as it is:") + 1]
        assert backup in fix and "restore.sh --yes" in fix, fix
        assert start.rstrip().endswith("start api"), start
        log(f"after the fault, the recovery printed: {fix.strip()[len('[restore]'):].strip()}")
        # The printed command, as printed, brings the data from before back and the api with it.
        fix_cmd = fix[len("[restore]"):].strip()
        proc = subprocess.run(["bash", "-c", fix_cmd], cwd=tmp, env=st.env, capture_output=True, text=True,
                              timeout=RESTORE_TIMEOUT)
        assert proc.returncode == 0, f"{fix_cmd} exited {proc.returncode}: {proc.stderr[-800:]}"
        assert st.serving(), f"/status {st.status()} after the recovery"
        assert st.items() == before, "after the recovery, GET /items differs from before the failed restore"
        trigger_works()
        # The failed run's tables from before (named in its message) are the test's to drop.
        for (name,) in st.sql(f"SHOW DATABASES LIKE '{state['db']}\\_pre\\_restore\\_%'"):
            assert name in err, f"{name} left but not named in the message"
            st.sql(f"DROP DATABASE `{name}`")

    def back_to_start():
        proc = st.script("restore.sh", "--yes", dump)
        assert proc.returncode == 0, proc.stderr[-800:]
        assert st.serving(), f"/status {st.status()}"

    try:
        if not check("restore checks: the starting dump (scripts/backup.sh)", setup):
            return
        check("restore: a good dump, after a backup of the data before, brings back exactly the dumped items; "
              "the live trigger works after it",
              good_restore)
        check("restore: the data from before is backed up first (0600, complete, holding a later write)",
              backup_before)
        check("restore: a failing pre-restore backup stops it: data and api untouched", backup_fails)
        check("restore: a dump cut in the middle of its INSERTs leaves the live data as it was and the api "
              "serving, never restarted", cut_dump)
        check("restore: a dump with a syntax error leaves the live data as it was and the api serving",
              syntax_error)
        check("restore: a fault after the api stop leaves the api stopped and names the backup and the "
              "recovery commands, which work", fault_after_stop)
        check("restore checks: the starting data restored", back_to_start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"restore checks took {time.monotonic() - t0:.1f} s")


def main():
    repo = os.environ.get("RESTORE_REPO") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    found = checks.stack_from_environment(repo, ("COMPOSE_PROJECT_NAME", "HTTP_PORT", "HTTPS_PORT", "SECRETS_DIR",
                                                 "BACKUP_DIR"), ("COMPOSE_PROJECT_NAME", "HTTP_PORT", "SECRETS_DIR"))
    if found is None:
        return 2
    env, token = found
    t0 = time.monotonic()
    run_all({"repo": repo, "env": env, "port": int(env["HTTP_PORT"]), "api_token": token})
    log(f"run_all: {time.monotonic() - t0:.1f} s")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
