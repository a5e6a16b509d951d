#!/usr/bin/env python3
"""The monitoring tier (compose profile "monitoring") and its fault drills, on a stack of its own.
Usage: ctest/compose/test_monitoring.py [--keep]
(run by ctest/compose/test_monitoring.sh; Python 3 standard library only)

  1. scripts/deploy.sh --monitoring from this repository as compose project MON_PROJECT
     (items-mon), images items-mon-*, front on 127.0.0.1 (a free port of 18660-18679), Prometheus
     on 127.0.0.1 (18680-18699), subnets 172.31.232-234.0/24 (monitoring: 172.31.133/172.31.33),
     secrets in a temporary directory whose alert_webhook_url names the test's receiver;
  2. a webhook receiver on the stack's internal `monitoring` network (busybox httpd from the front
     image, a CGI script writing each POST into a host directory): what Alertmanager sends arrives
     there, and only there;
  3. checks: every target up; the monitoring containers hardened (non-root, read-only root,
     no capabilities, no published port but Prometheus' on 127.0.0.1); promtool accepts the
     configuration and rules in the image; `--scale api=2`: both replicas scraped, the per-replica
     series summing to the pool; the dashboard console served, and checked in headless Chromium
     (ctest/browser/consoles, screenshots in ctest/browser/output), also while the db is down;
  4. drills, each timed (fire: from the fault to the notification at the receiver; resolve: from
     the repair to the "resolved" notification):
       database: docker stop db -> ItemsDatabaseDown within 60 s; docker start db -> resolved
                 within 60 s;
       workers:  one replica's workers killed faster than multiwatch restarts them (it gives up on
                 the slot) -> ItemsWorkersMissing; the api restarted -> resolved;
       errors:   the api stopped, a bounded burst of GET /items answered 502 by the front ->
                 ItemsHighErrorRatio;
  5. deploy.sh --down --purge, the receiver and the temporary files removed (unless --keep).
One line per check ("ok - ..." / "FAIL - ...: reason"), "# ..." figures, then "N passed, M failed".
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, figure, log, report, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.environ.get("MON_PROJECT", "items-mon")
IMAGE_PREFIX = os.environ.get("MON_IMAGE_PREFIX", "items-mon")
NETWORKS = {"EDGE_SUBNET": "172.31.233.0/24", "FRONT_EDGE_IP": "172.31.233.20",
            "DATA_SUBNET": "172.31.234.0/24", "PUBLIC_SUBNET": "172.31.232.0/24"}
RECEIVER = f"{PROJECT}-receiver"
DEPLOY_TIMEOUT = 1200
FIRE_LIMIT = 60     # seconds: the bound for the database drill, both ways
DRILL_TIMEOUT = 150  # seconds a drill waits for a notification before it fails

PORT = HTTPS_PORT = PROM_PORT = 0
TMP = SECRETS = INBOX = ""
# API_TRANSPORT of the compose runs ("": compose.yaml's default, unix).
TRANSPORT = ""


def env():
    e = checks.deploy_env(PROJECT, PORT, "127.0.0.1", SECRETS, NETWORKS,
                          drop=("REGISTRY", "COMPOSE_FILE", "COMPOSE_PROFILES"), https_port=HTTPS_PORT)
    e.update(IMAGE_PREFIX=IMAGE_PREFIX, IMAGE_TAG="latest", PROMETHEUS_PORT=str(PROM_PORT),
             DEPLOY_STATE_DIR=os.path.join(TMP, "state"), BACKUP_DIR=os.path.join(TMP, "backup"))
    if TRANSPORT:
        e["API_TRANSPORT"] = TRANSPORT
    return e


def run(args, timeout=120, check_rc=True):
    """args in a process group of its own, ended whole on timeout."""
    proc = subprocess.Popen(args, cwd=REPO, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout} s") from None
    if check_rc and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {err[-1500:]}")
    return proc.returncode, out, err


def compose(*args, timeout=300):
    return run([*checks.plain_compose(), "--project-directory", REPO, "-p", PROJECT, *args], timeout=timeout)


def cid(service):
    return compose("ps", "-q", service)[1].split()


# --- Prometheus and the receiver -----------------------------------------------------------------

def prom(path, **params):
    url = f"http://127.0.0.1:{PROM_PORT}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def query(expr):
    """The instant vector of expr as [(labels, float)]."""
    return [(r["metric"], float(r["value"][1])) for r in prom("/api/v1/query", query=expr)["data"]["result"]]


def notifications():
    """What the receiver got, in arrival order: (arrival time, the parsed body Alertmanager posted)."""
    found = []
    for path in sorted(glob.glob(os.path.join(INBOX, "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                found.append((os.fstat(f.fileno()).st_mtime, json.load(f)))
        except ValueError:
            continue  # still being written
    return found


def alert_seen(name, status, since):
    """Seconds since `since` at which a notification carrying alert name with status arrived, or None."""
    for at, body in notifications():
        if at < since:
            continue
        for alert in body.get("alerts", []):
            if alert.get("labels", {}).get("alertname") == name and alert.get("status") == status:
                return at - since
    return None


def wait_alert(name, status, since, timeout=DRILL_TIMEOUT):
    found = wait_for(lambda: alert_seen(name, status, since) is not None, timeout, interval=1)
    return alert_seen(name, status, since) if found else None


def start_receiver():
    os.makedirs(os.path.join(INBOX, "cgi-bin"))
    os.chmod(INBOX, 0o777)
    hook = os.path.join(INBOX, "cgi-bin", "hook")
    # busybox httpd runs it per request: the body (CONTENT_LENGTH bytes) into a file of its own.
    with open(hook, "w", encoding="utf-8") as f:
        f.write('#!/bin/sh\n'
                'name=/www/$(busybox date +%s)-$$.json\n'
                'busybox head -c "${CONTENT_LENGTH:-0}" >"$name.part" && busybox mv "$name.part" "$name"\n'
                'printf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n')
    os.chmod(hook, 0o755)
    network = f"{PROJECT}_monitoring"
    subprocess.run(["docker", "rm", "-f", RECEIVER], capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--name", RECEIVER, "--network", network, "--network-alias", "receiver",
                    "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                    "--user", "10001:10001", "-v", f"{INBOX}:/www", "--entrypoint", "/usr/bin/busybox",
                    f"{IMAGE_PREFIX}-front:latest", "httpd", "-f", "-p", "8080", "-h", "/www"],
                   check=True, capture_output=True, text=True, timeout=60)


# --- checks --------------------------------------------------------------------------------------

def check_targets():
    def all_up():
        targets = prom("/api/v1/targets", state="active")["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets}
        down = [(t["labels"]["job"], t["labels"]["instance"], t.get("lastError")) for t in targets
                if t["health"] != "up"]
        return (not down and set(checks.MONITORING_JOBS) <= jobs), \
            (jobs, down)
    ok = wait_for(lambda: all_up()[0], 60, interval=1)
    assert ok, f"targets not all up: {all_up()[1]}"
    ups = query("up")
    assert all(v == 1 for _, v in ups), ups
    figure(f"targets up: {len(ups)} ({', '.join(sorted(m['job'] + ' ' + m['instance'] for m, _ in ups))})")


def check_hardening():
    bad = []
    for service in ("prometheus", "alertmanager", "nginx-exporter", "mysqld-exporter", "volume-exporter"):
        (c,) = cid(service)
        info = json.loads(subprocess.run(["docker", "inspect", c], capture_output=True, text=True, check=True).stdout)[0]
        hc = info["HostConfig"]
        user = info["Config"]["User"]
        if not user or user.split(":")[0] in ("", "0", "root"):
            bad.append(f"{service}: user {user!r}")
        if not hc.get("ReadonlyRootfs"):
            bad.append(f"{service}: root filesystem writable")
        if "ALL" not in (hc.get("CapDrop") or []):
            bad.append(f"{service}: capabilities not dropped")
        ports = info["NetworkSettings"]["Ports"] or {}
        bound = [(p, b["HostIp"]) for p, binds in ports.items() for b in (binds or [])]
        if service == "prometheus":
            if bound != [("9090/tcp", "127.0.0.1")]:
                bad.append(f"prometheus publishes {bound}, expected 9090 on 127.0.0.1 only")
        elif bound:
            bad.append(f"{service} publishes {bound}")
    assert not bad, "; ".join(bad)


def check_promtool():
    (c,) = cid("prometheus")
    for args in (["promtool", "check", "config", "/run/prometheus/prometheus.yml"],
                 ["sh", "-c", "promtool check rules /etc/prometheus/rules/*.yml"]):
        res = subprocess.run(["docker", "exec", c, *args], capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0 and "SUCCESS" in res.stdout + res.stderr, f"{args}: {res.stdout}{res.stderr}"


def check_replicas():
    """Deployed with the default transport (a unix socket: one api container, scraped through the
    front like a replica); replicas need API_TRANSPORT=tcp: api and front recreated with it."""
    global TRANSPORT
    TRANSPORT = "tcp"
    compose("up", "-d", "--no-deps", "api", "front", timeout=300)
    compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "api=2", "api", timeout=300)
    ok = wait_for(lambda: len([v for _, v in query('up{job="api"}') if v == 1]) == 2, 90, interval=1)
    api = query('up{job="api"}')
    assert ok, f"api targets after --scale api=2: {api}"
    per = query("items_workers_configured")
    total = query("sum(items_workers_configured)")
    assert len(per) == 2 and total and total[0][1] == sum(v for _, v in per) == 8, (per, total)
    # The recording rule sums over the replicas: one series per route, no instance label.
    wait_for(lambda: query("route:items_http_requests:rate1m"), 30, interval=1)
    rec = query("route:items_http_requests:rate1m")
    assert rec and all("instance" not in m for m, _ in rec), rec
    figure(f"api replicas scraped: {sorted(m['instance'] for m, _ in api)}; workers configured 4 + 4 = {total[0][1]:.0f}")


def check_console():
    url = f"http://127.0.0.1:{PROM_PORT}/consoles/items.html"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode("utf-8", "replace")
        assert resp.status == 200, resp.status
    assert "/items" in body and "error executing template" not in body.lower(), body[:400]


def check_console_browser(expect_db="up"):
    """ctest/browser/consoles in headless Chromium against this Prometheus: the page renders, every
    figure says what it should, nothing is fetched from elsewhere; screenshots into
    ctest/browser/output (monitoring-dashboard*.png). Needs node, Chromium and
    ctest/browser/node_modules (scripts/test.sh prepares them)."""
    browser_dir = os.path.join(REPO, "ctest", "browser")
    assert os.path.isdir(os.path.join(browser_dir, "node_modules", "playwright-core")), \
        "ctest/browser/node_modules is missing: cd ctest/browser && npm ci (scripts/test.sh does it)"
    e = dict(os.environ, PROMETHEUS_URL=f"http://127.0.0.1:{PROM_PORT}", EXPECT_DB=expect_db)
    proc = subprocess.run(["node", "--test", "consoles/"], cwd=browser_dir, env=e, capture_output=True,
                          text=True, timeout=300, check=False)
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith(("# pass", "# fail"))]
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout[-2500:]}{proc.stderr[-500:]}"
    figure(f"dashboard in Chromium (DB {expect_db}): {', '.join(summary)}; screenshots in ctest/browser/output/")


# --- drills --------------------------------------------------------------------------------------

def drill_database():
    (db,) = cid("db")
    t0 = time.time()
    subprocess.run(["docker", "stop", "-t", "30", db], check=True, capture_output=True, timeout=90)
    fired = wait_alert("ItemsDatabaseDown", "firing", t0)
    if fired is not None:
        check("the dashboard in Chromium shows the database down during the drill",
              lambda: check_console_browser("down"))
    t1 = time.time()
    subprocess.run(["docker", "start", db], check=True, capture_output=True, timeout=90)
    resolved = wait_alert("ItemsDatabaseDown", "resolved", t1)
    figure(f"drill database: ItemsDatabaseDown fired {fired if fired is None else round(fired, 1)} s after "
           f"`docker stop db`, resolved {resolved if resolved is None else round(resolved, 1)} s after `docker start db`")
    assert fired is not None and fired <= FIRE_LIMIT, f"fired after {fired} s (limit {FIRE_LIMIT})"
    assert resolved is not None and resolved <= FIRE_LIMIT, f"resolved after {resolved} s (limit {FIRE_LIMIT})"
    assert wait_for(lambda: checks.try_status(PORT) == 200, 120), "/status not 200 after the db came back"


def pool_children(container):
    """Host PIDs of one api container's workers (the children of its multiwatch), with their age in s."""
    top = subprocess.run(["docker", "top", container, "-eo", "pid,ppid,etimes,comm"], capture_output=True,
                         text=True, check=True, timeout=30).stdout.splitlines()[1:]
    rows = [line.split() for line in top]
    watch = [r[0] for r in rows if r[3] == "multiwatch"]
    return [(int(r[0]), int(r[2])) for r in rows if watch and r[1] == watch[0] and r[3] == "items-fcgi"]


def drill_workers():
    api = cid("api")
    target = api[0]
    t0 = time.time()
    kills = 0
    # Kill one worker, then each restarted one within its first second: multiwatch counts a worker
    # dead within 1 s as a failed start and gives up on the slot after 5 in a row (items-pool).
    first = pool_children(target)
    assert len(first) == 4, f"workers before the drill: {first}"
    os.kill(first[0][0], signal.SIGKILL)
    kills += 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        young = [pid for pid, age in pool_children(target) if age < 1 and pid != first[0][0]]
        for pid in young:
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        if len(pool_children(target)) < 4 and time.monotonic() > deadline - 25:
            # Given up once no restart came for 2 s.
            time.sleep(2)
            if len(pool_children(target)) < 4:
                break
        time.sleep(0.05)
    alive = len(pool_children(target))
    fired = wait_alert("ItemsWorkersMissing", "firing", t0)
    t1 = time.time()
    compose("restart", "api", timeout=120)
    resolved = wait_alert("ItemsWorkersMissing", "resolved", t1)
    figure(f"drill workers: {kills} kills, {alive} of 4 workers left in one replica; ItemsWorkersMissing fired "
           f"{fired if fired is None else round(fired, 1)} s after the first kill, resolved "
           f"{resolved if resolved is None else round(resolved, 1)} s after `restart api`")
    assert alive < 4, f"multiwatch kept the pool whole ({alive} alive after {kills} kills)"
    assert fired is not None, "ItemsWorkersMissing never reached the receiver"
    assert resolved is not None, "ItemsWorkersMissing was not resolved after the api restart"
    assert wait_for(lambda: checks.try_status(PORT) == 200, 120), "/status not 200 after the api restart"


def drill_errors():
    t0 = time.time()
    compose("stop", "api", timeout=120)
    codes = {}
    deadline = time.monotonic() + 20
    for _ in range(400):  # bounded in count and time, loopback only
        if time.monotonic() > deadline:
            break
        code = checks.try_status(PORT, "/items")
        codes[code] = codes.get(code, 0) + 1
        time.sleep(0.02)
    fired = wait_alert("ItemsHighErrorRatio", "firing", t0)
    compose("start", "api", timeout=120)
    figure(f"drill errors: the api stopped, GET /items answered {codes}; ItemsHighErrorRatio fired "
           f"{fired if fired is None else round(fired, 1)} s after the stop")
    assert sum(n for c, n in codes.items() if isinstance(c, int) and c >= 500) >= 50, codes
    assert fired is not None, "ItemsHighErrorRatio never reached the receiver"
    assert wait_for(lambda: checks.try_status(PORT) == 200, 120), "/status not 200 after the api came back"


def check_receiver_only():
    """Every notification came through the internal network's receiver, with Alertmanager's shape."""
    bodies = [body for _, body in notifications()]
    assert bodies, "nothing arrived"
    for body in bodies:
        assert body.get("receiver") == "webhook" and "alerts" in body and body.get("version") == "4", body
    figure(f"receiver: {len(bodies)} notifications, alerts "
           f"{sorted({a['labels']['alertname'] + ':' + a['status'] for b in bodies for a in b['alerts']})}")


def main(argv):
    global PORT, HTTPS_PORT, PROM_PORT, TMP, SECRETS, INBOX
    keep = "--keep" in argv
    PORT = checks.free_port(range(18660, 18670))
    HTTPS_PORT = checks.free_port(range(18670, 18680))
    PROM_PORT = checks.free_port(range(18680, 18700))
    assert PORT and HTTPS_PORT and PROM_PORT, "no free port in 18660-18699"
    TMP = tempfile.mkdtemp(prefix="items-mon-")
    os.chmod(TMP, 0o755)
    SECRETS = os.path.join(TMP, "secrets")
    INBOX = os.path.join(TMP, "inbox")
    os.makedirs(SECRETS, mode=0o700)
    with open(os.path.join(SECRETS, "alert_webhook_url"), "w", encoding="utf-8") as f:
        f.write("http://receiver:8080/cgi-bin/hook\n")
    try:
        deployed = check("deploy.sh --monitoring: the stack and the monitoring tier healthy, every target up",
                         lambda: run(["scripts/deploy.sh", "--monitoring", "--timeout", "300"], timeout=DEPLOY_TIMEOUT))
        if deployed:
            start_receiver()
            check("Prometheus: every target up (api, front, nginx, mysqld, volume, alertmanager, prometheus)",
                  check_targets)
            check("monitoring containers: non-root, read-only root, no capabilities, only Prometheus on 127.0.0.1",
                  check_hardening)
            check("promtool check config and check rules in the Prometheus image", check_promtool)
            check("--scale api=2: both replicas scraped, per-replica series aggregate", check_replicas)
            check("the dashboard console /consoles/items.html is served", check_console)
            check("the dashboard in headless Chromium: every figure right, nothing from elsewhere, screenshots",
                  check_console_browser)
            check("drill database: ItemsDatabaseDown fires within 60 s and resolves within 60 s of the restart",
                  drill_database)
            check("drill workers: killed faster than restarted -> ItemsWorkersMissing, resolved after restart",
                  drill_workers)
            check("drill errors: api stopped, a burst answered 502 -> ItemsHighErrorRatio", drill_errors)
            check("notifications arrive at the receiver on the internal network", check_receiver_only)
    finally:
        if keep:
            log(f"kept: project {PROJECT}, receiver {RECEIVER}, files {TMP}")
        else:
            subprocess.run(["docker", "rm", "-f", RECEIVER], capture_output=True, check=False)
            try:
                run(["scripts/deploy.sh", "--down", "--purge"], timeout=300, check_rc=False)
            finally:
                shutil.rmtree(TMP, ignore_errors=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
