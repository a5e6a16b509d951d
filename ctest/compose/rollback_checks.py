#!/usr/bin/env python3
"""Rollback and upgrade checks of the compose deployment (scripts/deploy.sh), against a stack
already deployed by the caller from a checkout (commit A). Python 3 standard library only.

    import rollback_checks
    rollback_checks.run_all({"repo": CHECKOUT, "env": ENV, "port": PORT})

ctx["repo"]: the checkout A was deployed from; ctx["env"]: the environment its scripts/deploy.sh
ran with (COMPOSE_PROJECT_NAME, HTTP_PORT, IMAGE_PREFIX, SECRETS_DIR, subnets...: every deploy
here uses the same); ctx["port"]: the stack's port on 127.0.0.1.

In a temporary `git clone` of the checkout:
  1. the deployed stack's images carry A's commit tag (IMAGE_PREFIX-<tier>:<12 hex>);
  2. commit B (a marker in nginx/html/index.html) is deployed from the clone, which another user
     owns (root deploying a user's checkout): the page has it, the images are tagged B;
  3. `deploy.sh --rollback A` from the checkout, under a bounded background load of GET /status
     and GET / on 127.0.0.1: only the tiers whose image differs are replaced (db and api keep
     running), A serves again (no marker), nothing was built, IMAGE_TAG names A's
     images (a plain `docker compose up -d` keeps A); the time it took and the requests that
     failed are reported ("# ..." lines), and no answer was a 5xx;
  4. the clone made dirty (index.html edited, not committed): `deploy.sh --build-only` tags the
     build <commit>-dirty, never the bare commit, and leaves the running stack alone;
  5. commit C (index.html removed: the front's healthcheck and the smoke test of / fail) is
     deployed: deploy.sh exits non-zero saying "rolled back to A", and A serves;
  6. `deploy.sh --rollback nosuchtag...` fails naming the tags that exist and changes nothing.
The tags of B and C made here are removed at the end, and the clone; A stays deployed.

Run alone against a deployed stack (each setting as deploy.sh reads it; the environment is
passed to the scripts as it is):
    COMPOSE_PROJECT_NAME=hc-items HTTP_PORT=18082 IMAGE_PREFIX=hc-items SECRETS_DIR=/tmp/s ... \\
        ctest/compose/rollback_checks.py [--repo CHECKOUT]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, log, wait_for  # noqa: E402

DEPLOY_TIMEOUT = 600  # seconds for one deploy.sh (a front rebuild from the cache, a failed health wait)
TIERS = ("front", "api", "db")
LOAD_INTERVAL = 0.02  # seconds between two requests of the background load
LOAD_MAX_REQUESTS = 20000
LOAD_MAX_SECONDS = 300


class Ctx:
    def __init__(self, ctx):
        self.repo = os.path.abspath(ctx["repo"])
        self.port = int(ctx["port"])
        env = dict(ctx["env"])
        env.pop("REGISTRY", None)  # the commits made here are never pushed
        # Paths relative to a checkout would name another directory from the clone: the same
        # secrets, backups and deploy record for every deploy of the project.
        for name in ("SECRETS_DIR", "BACKUP_DIR", "DEPLOY_STATE_DIR"):
            if env.get(name) and not os.path.isabs(env[name]):
                env[name] = os.path.normpath(os.path.join(self.repo, env[name]))
        if not env.get("SECRETS_DIR"):
            env["SECRETS_DIR"] = os.path.join(self.repo, "secrets")
        env.setdefault("HTTP_PORT", str(self.port))
        self.env = env
        self.prefix = env.get("IMAGE_PREFIX") or setting(self.repo, "IMAGE_PREFIX", "items")
        self.image_tag = env.get("IMAGE_TAG") or setting(self.repo, "IMAGE_TAG", "latest")
        self.project = env.get("COMPOSE_PROJECT_NAME") or setting(self.repo, "COMPOSE_PROJECT_NAME", "items")
        self.tmp = tempfile.mkdtemp(prefix="rollback-checks.")
        self.clone = os.path.join(self.tmp, "clone")
        self.tag_a = ""
        self.made_tags = []  # tags of B and C, removed at the end
        self.b_deployed = False
        self.figures = []

    def figure(self, msg):
        self.figures.append(msg)
        log(msg)


def setting(repo, name, default):
    """A setting from the checkout's .env, as deploy.sh reads it (when the environment has none)."""
    value = ""
    try:
        with open(os.path.join(repo, ".env"), encoding="utf-8") as f:
            for line in f:
                if line.startswith(name + "="):
                    value = line[len(name) + 1:].strip().strip("'\"")
    except FileNotFoundError:
        pass
    return value or default


def run(c, args, cwd=None, timeout=120, check_rc=True):
    proc = subprocess.run(args, cwd=cwd or c.repo, env=c.env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if check_rc and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
    return proc


def git(c, *args, cwd=None):
    # safe.directory: the clone belongs to another user (make_clone).
    return run(c, ["git", "-c", "user.name=rollback check", "-c", "user.email=rollback@check.invalid",
                   "-c", "safe.directory=*", *args], cwd=cwd or c.clone).stdout.strip()


def deploy(c, checkout, *args, check_rc=True):
    t0 = time.monotonic()
    proc = run(c, [os.path.join(checkout, "scripts", "deploy.sh"), *args], cwd=checkout,
               timeout=DEPLOY_TIMEOUT, check_rc=check_rc)
    proc.seconds = time.monotonic() - t0
    return proc


def image_id(c, tier, tag):
    proc = run(c, ["docker", "image", "inspect", "-f", "{{.Id}}", f"{c.prefix}-{tier}:{tag}"], check_rc=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def prefix_images(c):
    """The IDs of every IMAGE_PREFIX-<tier> image (other projects build on the same engine)."""
    ids = set()
    for tier in TIERS:
        ids.update(run(c, ["docker", "images", "-q", "--no-trunc", f"{c.prefix}-{tier}"]).stdout.split())
    return ids


def running_images(c):
    """{tier: (container id, image id)} of the project's running containers."""
    found = {}
    for tier in TIERS:
        out = run(c, ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={c.project}",
                      "--filter", f"label=com.docker.compose.service={tier}"]).stdout.split()
        if out:
            found[tier] = (out[0], run(c, ["docker", "inspect", "-f", "{{.Image}}", out[0]]).stdout.strip())
    return found


def commit_tag(c, checkout):
    """The tag deploy.sh gives a build of checkout (its rule: any `git status --porcelain` line = dirty)."""
    head = git(c, "rev-parse", "HEAD", cwd=checkout)[:12]
    return head + "-dirty" if git(c, "status", "--porcelain", cwd=checkout) else head


def page(c):
    resp = checks.http_request(c.port, "GET", "/")
    return resp.status, resp.body.decode("utf-8", "replace")


def serves(c, marker_absent=None):
    """The stack answers / with the page (without marker_absent) and /status with 200."""
    status, body = page(c)
    assert status == 200 and "<html" in body, f"GET / -> {status}"
    if marker_absent:
        assert marker_absent not in body, f"the page still has {marker_absent!r}"
    assert checks.try_status(c.port) == 200, "GET /status is not 200"
    return True


class Load:
    """GET /status and GET / in turn on 127.0.0.1, one at a time, bounded in count and time."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.results = []  # (monotonic time, path, status or None)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t_end = time.monotonic() + LOAD_MAX_SECONDS
        paths = ("/status", "/")
        i = 0
        while not self.stop.is_set() and i < LOAD_MAX_REQUESTS and time.monotonic() < t_end:
            path = paths[i % 2]
            try:
                status = checks.http_request(self.port, "GET", path, timeout=5).status
            except Exception:  # noqa: BLE001 - refused, reset, timeout: a failed request
                status = None
            self.results.append((time.monotonic(), path, status))
            i += 1
            time.sleep(LOAD_INTERVAL)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)

    def summary(self):
        total = len(self.results)
        errors = sum(1 for _, _, s in self.results if s is None)
        five = sum(1 for _, _, s in self.results if s is not None and s >= 500)
        other = sum(1 for _, _, s in self.results if s is not None and s != 200 and s < 500)
        gap, last_ok = 0.0, self.results[0][0] if self.results else 0.0
        for t, _, s in self.results:
            if s == 200:
                gap = max(gap, t - last_ok)
                last_ok = t
        return {"total": total, "conn_errors": errors, "5xx": five, "other": other, "gap": gap}


# --- the checks ---------------------------------------------------------------------------------------


def check_a_tagged(c):
    c.tag_a = commit_tag(c, c.repo)
    running = running_images(c)
    assert set(running) == set(TIERS), f"the stack does not run all three tiers: {sorted(running)}"
    for tier in TIERS:
        tagged = image_id(c, tier, c.tag_a)
        assert tagged, f"no image {c.prefix}-{tier}:{c.tag_a}: the deploy did not tag its build with the commit"
        assert tagged == running[tier][1], f"{c.prefix}-{tier}:{c.tag_a} is not the image the {tier} container runs"
    return True


def make_clone(c):
    """The clone, owned by another user (nobody), as when root deploys a user's checkout: git
    refuses to read such a repository unless told to trust it, and deploy.sh must still name the
    build by its commit."""
    run(c, ["git", "clone", "-q", c.repo, c.clone], cwd=c.tmp)
    git(c, "checkout", "-q", "--detach", git(c, "rev-parse", "HEAD", cwd=c.repo))
    run(c, ["chown", "-R", "65534:65534", c.clone])


def check_deploy_b(c, marker):
    make_clone(c)
    checks.mark_page(c.clone, marker)
    git(c, "commit", "-qam", "rollback check: commit B (a marker in the page)")
    tag_b = commit_tag(c, c.clone)
    c.made_tags.append(tag_b)
    proc = deploy(c, c.clone)
    c.figure(f"deploy of B ({tag_b}) from a clone, front rebuilt from the cache: {proc.seconds:.1f} s")
    status, body = page(c)
    assert status == 200 and marker in body, f"after deploying B, GET / -> {status} without the marker"
    c.b_deployed = True
    assert image_id(c, "front", tag_b) == running_images(c)["front"][1], f"the front does not run {c.prefix}-front:{tag_b}"
    return True


def check_rollback_to_a(c, marker):
    before = prefix_images(c)
    containers_before = running_images(c)
    unchanged = [t for t in TIERS if containers_before[t][1] == image_id(c, t, c.tag_a)]
    with Load(c.port) as load:
        time.sleep(1)  # a few requests before, as a baseline
        # From A's checkout, not the one B was deployed from: to compose every service's
        # configuration differs then (the build contexts' paths), and only deploy.sh's choice of
        # the tiers whose image changes keeps the db and the api running.
        proc = deploy(c, c.repo, "--rollback", c.tag_a, check_rc=False)
        time.sleep(1)
    s = load.summary()
    c.figure(f"deploy.sh --rollback {c.tag_a}: exit {proc.returncode} in {proc.seconds:.1f} s; background load "
             f"{s['total']} requests (GET /status + GET /), {s['conn_errors']} connection errors, {s['5xx']} 5xx, "
             f"{s['other']} other non-200, longest time without a 200 {s['gap']:.2f} s")
    assert proc.returncode == 0, f"--rollback exited {proc.returncode}: {proc.stderr[-1500:]}"
    m = re.search(r"rolled back to \S+ in (\d+) s", proc.stderr)
    assert m, "deploy.sh did not print how long the rollback took"
    assert "building the images" not in proc.stderr and "Step 1/" not in proc.stdout + proc.stderr, "--rollback built images"
    after = prefix_images(c)
    assert after <= before, f"new {c.prefix}-* images appeared during --rollback: {sorted(after - before)[:3]}"
    serves(c, marker_absent=marker)
    running = running_images(c)
    for tier in TIERS:
        a_id = image_id(c, tier, c.tag_a)
        assert running[tier][1] == a_id, f"{tier} does not run A's image"
        # what a plain `docker compose up -d` in the checkout would run
        assert image_id(c, tier, c.image_tag) == a_id, f"{c.prefix}-{tier}:{c.image_tag} is not A's image"
    kept = [t for t in unchanged if running[t][0] == containers_before[t][0]]
    c.figure(f"tiers whose image A and B share ({', '.join(unchanged) or 'none'}): "
             f"{', '.join(kept) or 'none'} kept running through the rollback")
    assert kept == unchanged, f"--rollback replaced {sorted(set(unchanged) - set(kept))}, whose image did not change"
    assert s["5xx"] == 0, f"{s['5xx']} answers were 5xx during the rollback"
    assert s["total"] > 0 and s["gap"] < 30, f"the page was unavailable for {s['gap']:.1f} s"
    return True


def check_dirty_build(c):
    clean = commit_tag(c, c.clone)
    ids_clean = {tier: image_id(c, tier, clean) for tier in TIERS}
    latest_before = {tier: image_id(c, tier, c.image_tag) for tier in TIERS}
    running_before = running_images(c)
    checks.mark_page(c.clone, "rollback check: uncommitted")
    dirty = commit_tag(c, c.clone)
    assert dirty == clean + "-dirty", f"expected {clean}-dirty, got {dirty}"
    c.made_tags.append(dirty)
    proc = deploy(c, c.clone, "--build-only", check_rc=False)
    c.figure(f"deploy.sh --build-only of a dirty tree: exit {proc.returncode} in {proc.seconds:.1f} s")
    assert proc.returncode == 0, f"--build-only exited {proc.returncode}: {proc.stderr[-1500:]}"
    assert image_id(c, "front", dirty), f"no image {c.prefix}-front:{dirty}"
    assert image_id(c, "front", dirty) != ids_clean["front"], "the dirty build's front is the commit's"
    for tier in TIERS:
        assert image_id(c, tier, clean) == ids_clean[tier], f"{c.prefix}-{tier}:{clean} changed: the dirty build took the commit's name"
        assert image_id(c, tier, c.image_tag) == latest_before[tier], f"--build-only moved {c.prefix}-{tier}:{c.image_tag}"
    assert running_images(c) == running_before, "--build-only changed the running containers"
    git(c, "checkout", "--", ".")
    return True


def check_failed_deploy_rolls_back(c, marker):
    git(c, "checkout", "--", ".")  # the dirty build's change, if its check stopped before undoing it
    git(c, "rm", "-q", "nginx/html/index.html")
    git(c, "commit", "-qm", "rollback check: commit C (no page: the front's healthcheck and the smoke test fail)")
    tag_c = commit_tag(c, c.clone)
    c.made_tags.append(tag_c)
    proc = deploy(c, c.clone, check_rc=False)
    c.figure(f"deploy of the broken C ({tag_c}): exit {proc.returncode} after {proc.seconds:.1f} s, "
             f"last line: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    assert proc.returncode != 0, "the deploy of a commit whose page is gone succeeded"
    assert f"rolled back to {c.tag_a}" in proc.stderr, f"no 'rolled back to {c.tag_a}' in: {proc.stderr[-800:]}"
    m = re.search(r"serving again, healthy and smoke-tested, (\d+) s after the failure", proc.stderr)
    if m:
        c.figure(f"automatic rollback: serving again {m.group(1)} s after the failure was seen")
    serves(c, marker_absent=marker)
    running = running_images(c)
    for tier in TIERS:
        assert running[tier][1] == image_id(c, tier, c.tag_a), f"{tier} does not run A's image after the rollback"
        assert image_id(c, tier, c.image_tag) == image_id(c, tier, c.tag_a), f"{c.prefix}-{tier}:{c.image_tag} is not A's"
    return True


def check_unknown_tag(c):
    before = (running_images(c), {tier: image_id(c, tier, c.image_tag) for tier in TIERS})
    tag = f"nosuchtag{os.getpid()}"
    proc = deploy(c, c.repo, "--rollback", tag, check_rc=False)
    assert proc.returncode != 0, "--rollback to a tag that does not exist succeeded"
    assert f"{c.prefix}-front:{tag}" in proc.stderr and c.tag_a in proc.stderr, \
        f"the error names neither the missing image nor the tags that exist: {proc.stderr[-600:]}"
    after = (running_images(c), {tier: image_id(c, tier, c.image_tag) for tier in TIERS})
    assert after == before, "--rollback to a missing tag changed the containers or IMAGE_TAG"
    serves(c)
    return True


def cleanup(c):
    for tag in c.made_tags:
        if tag == c.tag_a:
            continue
        for tier in TIERS:
            run(c, ["docker", "rmi", f"{c.prefix}-{tier}:{tag}"], check_rc=False)
    shutil.rmtree(c.tmp, ignore_errors=True)


def run_all(ctx):
    """The checks, in order (each later one needs the earlier); A is left deployed."""
    c = Ctx(ctx)
    marker = f"rollback-check-B-{os.getpid()}-{int(time.time())}"
    t0 = time.monotonic()
    try:
        check("rollback: the deployed stack's three images carry A's commit tag", lambda: check_a_tagged(c))
        c.tag_a = c.tag_a or commit_tag(c, c.repo)
        check("rollback: commit B (a page marker) deployed from a clone with the same project and secrets, tagged B "
              "(the clone owned by another user than the one deploying)",
              lambda: check_deploy_b(c, marker))
        if not c.b_deployed:
            return
        check("rollback: deploy.sh --rollback A brings A back without building, no 5xx under load",
              lambda: check_rollback_to_a(c, marker))
        check("rollback: a dirty tree's build is tagged <commit>-dirty, never the commit",
              lambda: check_dirty_build(c))
        check("rollback: a deploy whose health wait fails exits non-zero, rolled back to A, A serving",
              lambda: check_failed_deploy_rolls_back(c, marker))
        check("rollback: --rollback to a missing tag fails naming the tags that exist, nothing changed",
              lambda: check_unknown_tag(c))
    finally:
        cleanup(c)
        c.figure(f"rollback checks took {time.monotonic() - t0:.1f} s")


def main():
    args = sys.argv[1:]
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    if args[:1] == ["--repo"] and len(args) == 2:
        repo = args[1]
    elif args:
        print(__doc__)
        return 2
    port = os.environ.get("HTTP_PORT") or setting(repo, "HTTP_PORT", "80")
    run_all({"repo": repo, "env": dict(os.environ), "port": int(port)})
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
