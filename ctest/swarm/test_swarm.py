#!/usr/bin/env python3
"""Docker Swarm end-to-end test of the items stack (run through test_swarm.sh; see its --help).

Deploys with `scripts/deploy.sh --swarm` as its own stack, then checks through 127.0.0.1 and
`docker service inspect` / `docker exec` / the host's /proc: the Swarm settings (replicas, dnsrr,
start-first health-gated updates with rollback, restart policies, limits, overlay networks with
the data network internal, Swarm secrets), that compose.yaml's shared settings reached every
service, that requests spread over the api replicas (each replica's own /metrics, read through
FastCGI inside its container), that a rolling update of the api image under continuous load fails
no request, that a replica killed with `docker kill` is replaced while the service keeps answering,
and that scaling to 5 and back to 1 under load fails nothing. It measures throughput with 1 and 3
replicas. Python 3 standard library only (plus python3-yaml to read compose 1.29's output, which
Debian's docker-compose depends on). One line per check, then "N passed, M failed".
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, figure, finish, log, report, tcp_listeners  # noqa: E402


def wait_for(predicate, timeout, interval=0.5):
    return checks.wait_for(predicate, timeout, interval)


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STACK = os.environ.get("SWARM_STACK", "items-swarm-e2e")
REPLICAS = 3
ROLLOUT_TAG = f"{STACK}-rollout"
LOAD_RATE = 100.0  # requests per second, over LOAD_THREADS connections
LOAD_THREADS = 4
LOAD_MAX_SECONDS = 150  # no load loop runs longer than this, whatever happens
SERVICES = ("db", "api", "front")
UID = {"front": 10001, "api": 10002, "db": 10003}

PORT = 0
HTTPS_PORT = 0
SECRETS_DIR = ""
SECRETS = {}



# --- processes -------------------------------------------------------------------------------------


def env():
    e = dict(os.environ)
    e.update(
        STACK_NAME=STACK,
        HTTP_PORT=str(PORT),
        HTTPS_PORT=str(HTTPS_PORT),
        SECRETS_DIR=SECRETS_DIR,
        API_REPLICAS=str(REPLICAS),
        FRONT_UPDATE_ORDER="stop-first",
        PUBLISH_MODE="host",
        ENDPOINT_MODE="dnsrr",
    )
    return e


def run(args, timeout=120, check_rc=True):
    proc = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    if check_rc and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-6000:]}"
        )
    return proc


def docker(*args, timeout=60, check_rc=True):
    return run(["docker", *args], timeout=timeout, check_rc=check_rc)


def deploy(*args, timeout=600):
    return run([os.path.join(REPO, "scripts", "deploy.sh"), *args], timeout=timeout)


def service(name):
    return f"{STACK}_{name}"


def spec(name):
    return json.loads(docker("service", "inspect", service(name)).stdout)[0]


def containers(name, healthy_only=False):
    args = ["ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service(name)}"]
    if healthy_only:
        args += ["--filter", "health=healthy"]
    return docker(*args).stdout.split()


def inspect(container):
    return json.loads(docker("inspect", container).stdout)[0]


def host_pids(container):
    out = docker("top", container, "-eo", "pid").stdout.split()
    return [int(p) for p in out[1:]]


def swarm_state():
    out = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}", check_rc=False)
    if out.returncode != 0:
        return "error"
    state, _, control = out.stdout.strip().partition(" ")
    if state == "active":
        return "manager" if control == "true" else "worker"
    return state or "error"


def update_state(name):
    return docker("service", "inspect", "-f", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                  service(name)).stdout.strip()


def running_tasks(name):
    """{task id: image} of the service's tasks that are running (healthy: Swarm reports a task with
    a healthcheck as running only once it is healthy)."""
    out = docker("service", "ps", "--filter", "desired-state=running", "--no-trunc",
                 "--format", "{{.ID}} {{.Image}} {{.CurrentState}}", service(name)).stdout
    tasks = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "Running":
            tasks[parts[0]] = parts[1]
    return tasks


def converged(name, replicas):
    """True once the service runs exactly `replicas` healthy tasks and no update is in progress."""
    if update_state(name) in ("updating", "rollback_started"):
        return False
    return len(running_tasks(name)) == replicas and len(containers(name, healthy_only=True)) == replicas


def front_resolves_api():
    """The addresses the front's resolver (Docker's DNS, as nginx sees it) gives for `api`."""
    front = containers("front")[0]
    out = docker("exec", front, "/usr/bin/busybox", "nslookup", "api", "127.0.0.11", check_rc=False).stdout
    # busybox prints the server first ("Address: 127.0.0.11:53"), then one Address line per answer
    return sorted(set(re.findall(r"Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)\s*$", out, re.M)) - {"127.0.0.11"})


def nginx_dns_valid():
    """Seconds nginx caches a DNS answer: `resolver ... valid=Ns` in nginx/nginx.conf.template (the
    front's dnsrr configuration is rendered from it); 5, nginx's old setting here, if unreadable."""
    try:
        with open(os.path.join(REPO, "nginx", "nginx.conf.template"), encoding="utf-8") as f:
            m = re.search(r"^\s*resolver\s[^;]*\bvalid=(\d+)s", f.read(), re.M)
        return float(m.group(1)) if m else 5.0
    except OSError:
        return 5.0


SETTLE_DEADLINE = 60  # seconds for each condition of settle()


def api_task_addresses():
    """Addresses on the edge network (where the front resolves `api`) of the api tasks that run."""
    found = set()
    for task in running_tasks("api"):
        info = json.loads(docker("inspect", "--type", "task", task).stdout)[0]
        for attachment in info.get("NetworksAttachments") or []:
            if attachment["Network"]["Spec"]["Name"] == f"{STACK}_edge":
                found.update(a.split("/")[0] for a in attachment.get("Addresses") or [])
    return sorted(found)


def settle(load):
    """Keeps `load` running until nginx can no longer hold the address of a replaced or removed api
    task: first the front's DNS (what nginx's resolver asks) gives exactly the running tasks'
    addresses, then the load sends, through the front, the requests of twice nginx's DNS cache
    lifetime at LOAD_RATE (the answers cached before are gone by then). Returns None, or what did
    not happen within SETTLE_DEADLINE seconds."""
    seen = {"dns": [], "tasks": []}

    def dns_matches_tasks():
        seen["dns"], seen["tasks"] = front_resolves_api(), api_task_addresses()
        return bool(seen["tasks"]) and seen["dns"] == seen["tasks"]

    if not wait_for(dns_matches_tasks, SETTLE_DEADLINE):
        return (f"after {SETTLE_DEADLINE} s the front's DNS still gives {seen['dns']} for api, "
                f"the running api tasks are at {seen['tasks']}")
    start, need = load.total, int(2 * nginx_dns_valid() * LOAD_RATE)
    if not wait_for(lambda: load.total - start >= need, SETTLE_DEADLINE, interval=0.1):
        return (f"the load sent {load.total - start} of the {need} requests wanted after the front's "
                f"DNS settled, in {SETTLE_DEADLINE} s")
    return None


# --- HTTP --------------------------------------------------------------------------------------------


def request(method, path, body=None, headers=None, timeout=5):
    r = checks.http_request(PORT, method, path, body, headers, timeout)
    return r.status, r.body


def Load(path="/items", rate=LOAD_RATE, threads=LOAD_THREADS):  # noqa: N802 - used as the class it returns
    return checks.Load(PORT, path, rate, threads, LOAD_MAX_SECONDS)


def replica_requests():
    """{container id: requests to /items answered by that replica's workers}, read from each api
    task's own pool: GET /metrics through FastCGI with ITEMS_INTERNAL=1, as the healthcheck does."""
    counts = {}
    for c in containers("api"):
        out = docker(
            "exec", c, "/bin/sh", "-c",
            "REQUEST_METHOD=GET DOCUMENT_URI=/metrics REQUEST_URI=/metrics QUERY_STRING= "
            "REQUEST_ID=swarm-test ITEMS_INTERNAL=1 cgi-fcgi -bind -connect 127.0.0.1:9000",
        ).stdout
        counts[c] = sum(
            int(m.group(1))
            for m in re.finditer(r'^items_http_requests_total\{route="/items",[^}]*\} (\d+)$', out, re.M)
        )
    return counts


# --- compose.yaml as compose sees it (the shared definitions) -----------------------------------------


def compose_cmd():
    impl = os.environ.get("COMPOSE_IMPL", "")
    if impl != "docker-compose" and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"], True
    return ["docker-compose"], False


# What compose.swarm.yaml may change in compose.yaml's environment, and nothing else: Swarm chooses the
# replicas' and the front's addresses in overlays whose subnets it allocates, so the pool listens on
# every address and admits any peer there (compose.yaml: its address in EDGE_SUBNET, and only the
# front's fixed address and its own). The front reaches the api over TCP (compose's default unix
# socket needs both on one host: API_TRANSPORT=tcp, and the socket volume is dropped).
SWARM_ENV_OVERRIDES = {"api": {"API_TRANSPORT": "tcp", "FCGI_LISTEN_SUBNET": "", "FCGI_WEB_SERVER_ADDRS": ""},
                       "front": {"API_TRANSPORT": "tcp"}}


def compose_config(*extra_files):
    cmd, v2 = compose_cmd()
    args = [*cmd, "--project-directory", REPO, "-f", os.path.join(REPO, "compose.yaml")]
    for name in extra_files:
        args += ["-f", os.path.join(REPO, name)]
    args.append("config")
    if v2:
        args += ["--format", "json"]
    text = run(args).stdout
    if v2:
        return json.loads(text)
    import yaml  # python3-yaml, a dependency of Debian's docker-compose

    return yaml.safe_load(text)


def nanoseconds(duration):
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration)):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return int(round(total * 1e9))


def size_bytes(text):
    m = re.fullmatch(r"(\d+)([bkmg]?)", str(text).lower())
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)]


# --- checks ------------------------------------------------------------------------------------------


def check_definition(deploy_stderr):
    specs = {s: spec(s) for s in SERVICES}

    def nothing_ignored():
        assert "Ignoring unsupported options" not in deploy_stderr, \
            [ln for ln in deploy_stderr.splitlines() if "Ignoring" in ln]

    def api_service():
        s = specs["api"]["Spec"]
        assert s["Mode"]["Replicated"]["Replicas"] == REPLICAS, s["Mode"]
        assert s["EndpointSpec"]["Mode"] == "dnsrr", s["EndpointSpec"]
        u = s["UpdateConfig"]
        assert u["Order"] == "start-first" and u["FailureAction"] == "rollback", u
        assert u["Parallelism"] == 1 and u.get("Monitor", 0) > 0, u
        assert s["RollbackConfig"]["Order"] == "start-first", s["RollbackConfig"]
        assert s["TaskTemplate"]["RestartPolicy"]["Condition"] == "any", s["TaskTemplate"]["RestartPolicy"]
        hc = s["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"]
        assert hc == ["CMD", "items-healthcheck"], hc  # GET /status through FastCGI (fcgi-app/items-healthcheck)

    def front_service():
        s = specs["front"]["Spec"]
        ports = s["EndpointSpec"]["Ports"]
        assert ports == [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": PORT, "PublishMode": "host"},
                         {"Protocol": "tcp", "TargetPort": 8443, "PublishedPort": HTTPS_PORT, "PublishMode": "host"}], ports
        u = s["UpdateConfig"]
        assert u["FailureAction"] == "rollback" and u.get("Monitor", 0) > 0, u
        assert u["Order"] == "stop-first", f"{u['Order']}: two front tasks cannot share a host-mode port"
        # The image's own start (front-entrypoint renders nginx.conf, api:9000 re-resolved), as under compose.
        assert not s["TaskTemplate"]["ContainerSpec"].get("Command"), s["TaskTemplate"]["ContainerSpec"].get("Command")
        front = containers("front")[0]
        conf = docker("exec", front, "/usr/bin/busybox", "cat", "/run/nginx/conf/nginx.conf").stdout
        assert 'default "api:9000";' in conf and "resolver 127.0.0.11 valid=1s" in conf, "not the re-resolving config"

    def db_service():
        s = specs["db"]["Spec"]
        assert s["Mode"]["Replicated"]["Replicas"] == 1, s["Mode"]
        assert s["UpdateConfig"]["Order"] == "stop-first", s["UpdateConfig"]
        mounts = {m["Target"]: m for m in s["TaskTemplate"]["ContainerSpec"]["Mounts"]}
        data = mounts.get("/var/lib/mysql")
        assert data and data["Type"] == "volume" and data["Source"] == f"{STACK}_db-data", data
        assert s["TaskTemplate"]["Placement"]["Constraints"], "no placement constraint"

    def networks():
        nets = {}
        for name in ("public", "edge", "data"):
            nets[name] = json.loads(docker("network", "inspect", f"{STACK}_{name}").stdout)[0]
            assert nets[name]["Driver"] == "overlay", nets[name]["Driver"]
        internal = {name: nets[name]["Internal"] for name in nets}
        assert internal == {"public": False, "edge": True, "data": True}, f"Internal flags {internal}"
        attached = {s: {n["Target"] for n in specs[s]["Spec"]["TaskTemplate"]["Networks"]} for s in SERVICES}
        ids = {name: nets[name]["Id"] for name in nets}
        assert attached["front"] == {ids["public"], ids["edge"]}, "front must be on public and edge only"
        assert attached["api"] == {ids["edge"], ids["data"]}, "api must be on edge and data"
        assert attached["db"] == {ids["data"]}, "db must be on data only"

    def front_cannot_resolve_db():
        front = containers("front")[0]
        out = docker("exec", front, "/usr/bin/busybox", "nslookup", "db", "127.0.0.11", check_rc=False)
        found = re.findall(r"Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)\s*$", out.stdout, re.M)
        assert set(found) <= {"127.0.0.11"}, f"front resolves db: {found}"

    def secrets():
        out = stack_secrets()
        names_all = ("api_token", "db_password", "db_root_password", "tls_cert", "tls_key", "db_exporter_password",
                     "alert_webhook_url")
        for n in names_all:
            versions = [name for name in out if re.fullmatch(rf"{re.escape(STACK)}_{n}-[0-9a-f]{{12}}", name)]
            assert len(versions) == 1, f"{n}: {out}"
        assert len(out) == len(names_all), out
        wanted = {"db": {"db_root_password", "db_password", "db_exporter_password"},
                  "api": {"db_password", "api_token"}, "front": {"tls_cert", "tls_key"}}
        for svc, names in wanted.items():
            got = specs[svc]["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
            assert {g["File"]["Name"] for g in got} == names, f"{svc}: {got}"
            for g in got:
                mode = 0o444 if g["File"]["Name"] == "tls_cert" else 0o400  # a certificate is public
                assert g["File"]["UID"] == str(UID[svc]) and g["File"]["Mode"] == mode, g
        values = [v for v in SECRETS.values() if v]
        for svc in SERVICES:
            text = json.dumps(specs[svc])
            for c in containers(svc):
                text += docker("inspect", c).stdout
            for v in values:
                assert v not in text, f"a secret value appears in docker inspect of {svc}"

    def limits_and_restart():
        for svc in SERVICES:
            t = specs[svc]["Spec"]["TaskTemplate"]
            lim = t["Resources"]["Limits"]
            assert lim.get("MemoryBytes", 0) > 0 and lim.get("NanoCPUs", 0) > 0 and lim.get("Pids", 0) > 0, f"{svc}: {lim}"
            assert t["RestartPolicy"]["Condition"] == "any", f"{svc}: {t['RestartPolicy']}"

    def shared_with_compose():
        cfg = compose_config()["services"]
        merged = compose_config("compose.swarm.yaml")["services"]
        for svc in SERVICES:
            c = cfg[svc]
            cs = specs[svc]["Spec"]["TaskTemplate"]["ContainerSpec"]
            lim = specs[svc]["Spec"]["TaskTemplate"]["Resources"]["Limits"]
            assert cs["Image"].split("@")[0] == c["image"], f"{svc}: image {cs['Image']} != {c['image']}"
            base_env = {k: "" if v is None else str(v) for k, v in (c.get("environment") or {}).items()}
            swarm_env = {k: "" if v is None else str(v) for k, v in (merged[svc].get("environment") or {}).items()}
            changed = {k: swarm_env.get(k) for k in set(base_env) | set(swarm_env) if base_env.get(k) != swarm_env.get(k)}
            assert changed == SWARM_ENV_OVERRIDES.get(svc, {}), \
                f"{svc}: compose.swarm.yaml changes the environment {changed}, want {SWARM_ENV_OVERRIDES.get(svc, {})}"
            want_env = {f"{k}={v}" for k, v in swarm_env.items()}
            assert set(cs.get("Env") or []) == want_env, f"{svc}: env {cs.get('Env')} != {sorted(want_env)}"
            assert cs.get("User") == c["user"], f"{svc}: user"
            assert cs.get("ReadOnly") is bool(c.get("read_only")), f"{svc}: read_only"
            assert cs.get("CapabilityDrop") == c.get("cap_drop"), f"{svc}: cap_drop {cs.get('CapabilityDrop')}"
            hc = c["healthcheck"]
            test = [part.replace("$$", "$") for part in hc["test"]]
            assert cs["Healthcheck"]["Test"] == test, f"{svc}: healthcheck test differs"
            assert cs["Healthcheck"]["Interval"] == nanoseconds(hc["interval"]), f"{svc}: healthcheck interval"
            assert cs.get("StopGracePeriod") == nanoseconds(c["stop_grace_period"]), f"{svc}: stop_grace_period"
            if c.get("stop_signal"):
                assert cs.get("StopSignal") == c["stop_signal"], f"{svc}: stop_signal"
            assert lim["MemoryBytes"] == size_bytes(c["mem_limit"]), f"{svc}: memory {lim['MemoryBytes']} != {c['mem_limit']}"
            assert lim["Pids"] == int(c["pids_limit"]), f"{svc}: pids {lim['Pids']} != {c['pids_limit']}"
            targets = {m["Target"] for m in cs.get("Mounts") or []}
            for t in c.get("tmpfs") or []:
                assert t.split(":")[0] in targets, f"{svc}: compose's tmpfs {t} is not mounted"
            assert "/run/items-api" not in targets, f"{svc}: the unix transport's socket volume is mounted"

    def runtime_hardening():
        for svc in SERVICES:
            for c in containers(svc):
                statuses = checks.proc_statuses(host_pids(c))
                assert statuses, f"{svc}: no process"
                for pid, st in statuses:
                    uids = {int(x) for x in st["Uid"].split()}
                    assert uids == {UID[svc]}, f"{svc}: pid {pid} runs as {uids}"
                    assert int(st["CapEff"], 16) == 0, f"{svc}: pid {pid} CapEff {st['CapEff']}"
                assert inspect(c)["HostConfig"]["ReadonlyRootfs"] is True, f"{svc}: root filesystem writable"

    def pool_listens_everywhere():
        for c in containers("api"):
            info = inspect(c)
            env = dict(v.split("=", 1) for v in info["Config"]["Env"] or [])
            assert env.get("FCGI_LISTEN") == "0.0.0.0:9000", f"{c[:12]}: FCGI_LISTEN {env.get('FCGI_LISTEN')}"
            assert env.get("FCGI_WEB_SERVER_ADDRS", "") == "", f"{c[:12]}: FCGI_WEB_SERVER_ADDRS {env['FCGI_WEB_SERVER_ADDRS']}"
            on_9000 = [s for s in tcp_listeners(info["State"]["Pid"]) if s[1] == 9000]
            assert on_9000 == [("0.0.0.0", 9000)], f"{c[:12]}: port 9000 bound to {on_9000}"

    check("stack: docker stack deploy ignored no option of the stack file", nothing_ignored)
    check(f"api: {REPLICAS} replicas, endpoint_mode dnsrr, start-first update, rollback on failure, FastCGI healthcheck", api_service)
    check(f"front: published in host mode on {PORT} and {HTTPS_PORT} (HTTPS), update gated with rollback (stop-first: host port), "
          "the image's re-resolving config", front_service)
    check("db: one replica, stop-first, its data volume, a placement constraint", db_service)
    check("networks: public, edge and data are overlays, edge and data internal; front on public+edge, api on "
          "edge+data, db on data", networks)
    check("networks: the front cannot even resolve db", front_cannot_resolve_db)
    check("secrets: Swarm secrets, mounted 0400 for each tier's uid where needed, in no docker inspect", secrets)
    check("limits and restart: memory, CPU and pids limits and restart_policy any on every service", limits_and_restart)
    check("shared with compose.yaml: image, environment, user, read-only, cap_drop, healthcheck, stop, memory/pids, tmpfs", shared_with_compose)
    check("runtime: every process non-root with no capability, root filesystems read-only", runtime_hardening)
    check("api: compose.swarm.yaml's overrides reached every replica: the pool on 0.0.0.0:9000, any peer admitted",
          pool_listens_everywhere)


def check_api():
    state = {}

    def status():
        code, body = request("GET", "/status")
        assert code == 200, f"HTTP {code} {body[:200]!r}"
        assert json.loads(body)["database_connection"] == "OK", body

    def write_read():
        auth = {"Authorization": f"Bearer {SECRETS['api_token']}"}
        code, body = request("POST", "/items", {"name": "swarm e2e", "description": "through the stack"}, auth)
        assert code == 201, f"POST HTTP {code} {body[:200]!r}"
        state["id"] = json.loads(body)["id"]
        code, body = request("GET", f"/items/{state['id']}")
        assert code == 200 and json.loads(body)["name"] == "swarm e2e", f"GET HTTP {code}"

    def unauthorized():
        code, _ = request("POST", "/items", {"name": "no token"})
        assert code == 401, f"HTTP {code}"

    check(f"api: GET /status 200, database OK, through 127.0.0.1:{PORT}", status)
    check("api: POST /items with the token from the Swarm secret 201, read back", write_read)
    check("api: POST /items without a token 401", unauthorized)


def prometheus_query(expr):
    """An instant query, asked from inside the Prometheus task (Swarm publishes no loopback-only
    port): [(labels, value)]."""
    (c,) = containers("prometheus")[:1]
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    out = docker("exec", c, "busybox", "wget", "-q", "-O", "-", url, timeout=30).stdout
    return [(r["metric"], float(r["value"][1])) for r in json.loads(out)["data"]["result"]]


def check_monitoring():
    def every_replica():
        def scraped():
            up = prometheus_query('up{job="api"} == 1')
            return len(up) == REPLICAS and up
        up = wait_for(scraped, 60, interval=1)
        assert up, f"api targets: {prometheus_query('up')} (want {REPLICAS} api targets up, one per task)"
        tasks = sorted(api_task_addresses())
        assert sorted(m["instance"].split(":")[0] for m, _ in up) == tasks, (up, tasks)
        per = prometheus_query("items_workers_configured")
        total = prometheus_query("sum(items_workers_configured)")
        alive = prometheus_query("sum(items_workers)")
        assert len(per) == REPLICAS and total[0][1] == sum(v for _, v in per) == alive[0][1], (per, total, alive)
        figure(f"monitoring: {len(up)} api tasks scraped through tasks.api ({', '.join(tasks)}); "
               f"workers {alive[0][1]:.0f} alive of {total[0][1]:.0f} configured, summed over the replicas")

    def all_targets_up():
        down = [(m["job"], m["instance"]) for m, v in prometheus_query("up") if v != 1]
        jobs = {m["job"] for m, _ in prometheus_query("up")}
        assert not down and set(checks.MONITORING_JOBS) <= jobs, \
            (down, jobs)

    check(f"monitoring (--monitoring): Prometheus scrapes each of the {REPLICAS} api tasks (DNS SD of tasks.api), "
          "the per-replica series sum to the pool", every_replica)
    check("monitoring: every target up under Swarm (api, front, nginx, mysqld, volume, alertmanager, prometheus)",
          all_targets_up)


def check_backup_and_schema():
    """The db task applied the migrations at its first start, and backup.sh --swarm dumps it from this
    node (what deploy.sh --swarm runs before a deploy that brings migrations)."""
    def schema():
        db = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service('db')}").stdout.split()
        assert db, "no db task on this node"
        out = docker("exec", db[0], "mariadb", "--batch", "--skip-column-names", "items", "-e",
                     "SELECT MAX(version) FROM schema_migrations").stdout.strip()
        assert out == str(len(os.listdir(os.path.join(REPO, "mysql", "migrations")))), f"schema version {out!r}"

    def backup():
        path = os.path.join(tempfile.mkdtemp(prefix="items-swarm-backup."), "dump.sql.gz")
        try:
            run([os.path.join(REPO, "scripts", "backup.sh"), "--swarm", path], timeout=120)
            assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
            text = subprocess.run(["gzip", "-dc", path], capture_output=True, check=True).stdout.decode()
            assert "CREATE TABLE `items`" in text and "CREATE TABLE `schema_migrations`" in text, text[:300]
            assert text.rstrip().splitlines()[-1].startswith("-- Dump completed"), "incomplete dump"
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    check("db: the migrations were applied at the db task's first start (schema version = newest migration)", schema)
    check("backup: scripts/backup.sh --swarm writes a complete 0600 dump from the db task on this node", backup)


def check_spread():
    def spread():
        addresses = front_resolves_api()
        assert len(addresses) == REPLICAS, f"api resolves to {addresses}"
        before = replica_requests()
        n = 90
        for _ in range(n):
            code, _ = request("GET", "/items")
            assert code == 200, f"HTTP {code}"
        after = replica_requests()
        served = {c[:12]: after.get(c, 0) - before.get(c, 0) for c in after}
        log(f"{n} GET /items served per replica: {served}; the front resolves api to {addresses}")
        assert sum(served.values()) >= n, f"the replicas count {sum(served.values())} of {n} requests"
        busy = [c for c, k in served.items() if k > 0]
        assert len(busy) >= 2, f"only {busy} served"
        figure(f"spread: {n} requests over {len(busy)} of {REPLICAS} replicas: {sorted(served.values())}")

    check(f"spread: `api` resolves to the {REPLICAS} replicas and requests reach more than one of them (per-replica /metrics)", spread)


def check_rolling_update(during_monitor):
    """`during_monitor()` runs once every replica is replaced, while Swarm
    still watches the new tasks (update_config.monitor) before it calls the
    update completed: the wait is spent measuring, not idle."""
    def rolling():
        before = running_tasks("api")
        docker("tag", containers_image("api"), f"{image_repo('api')}:{ROLLOUT_TAG}")
        new_image = f"{image_repo('api')}:{ROLLOUT_TAG}"
        def ended():
            return update_state("api") in ("completed", "paused", "rollback_completed", "rollback_paused")

        def replaced():
            if ended():
                return True
            tasks = running_tasks("api")
            return (not set(tasks) & set(before)
                    and all(img.split("@")[0] == new_image for img in tasks.values())
                    and converged("api", REPLICAS))

        with Load() as load:
            wait_for(lambda: load.total > 100, 10)
            t0 = time.monotonic()
            docker("service", "update", "--detach", "--no-resolve-image", "--image", new_image, service("api"), timeout=60)
            done = wait_for(replaced, 150)
            took = time.monotonic() - t0
            # past nginx's DNS cache: the last replaced address is gone from it
            unsettled = settle(load) if done else None
        if done:
            during_monitor()
            done = wait_for(ended, 60)
        state = update_state("api")
        figure(f"rolling update of {REPLICAS} api replicas (start-first) in {took:.0f} s under load: {load.summary()}")
        assert done, f"the update did not end in time (state {state})"
        assert not unsettled, unsettled
        assert state == "completed", f"update state {state}: {docker('service', 'inspect', '-f', '{{.UpdateStatus.Message}}', service('api')).stdout.strip()}"
        after = running_tasks("api")
        assert len(after) == REPLICAS and not set(after) & set(before), f"tasks before {list(before)}, after {list(after)}"
        assert all(img.split("@")[0] == new_image for img in after.values()), after
        assert load.total > 500, f"only {load.total} requests were sent"
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"

    check("rolling update: api image replaced replica by replica under continuous load, zero failed requests", rolling)


def check_killed_replica():
    def killed():
        victims = containers("api", healthy_only=True)
        assert len(victims) == REPLICAS, f"{len(victims)} healthy api containers"
        victim = victims[0]
        with Load() as load:
            wait_for(lambda: load.total > 100, 10)
            t0 = time.monotonic()
            docker("kill", victim)
            replaced = wait_for(
                lambda: victim not in containers("api") and converged("api", REPLICAS), 90)
            took = time.monotonic() - t0
            unsettled = settle(load) if replaced else None
        figure(f"docker kill of an api replica: replaced (healthy) after {took:.1f} s; under load: {load.summary()}")
        assert replaced, "no healthy replacement within 90 s"
        assert not unsettled, unsettled
        assert load.total > 300, f"only {load.total} requests"
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"

    check("docker kill: the killed api replica is replaced, the service answers throughout (zero failed requests)", killed)


def stack_secrets():
    return docker("secret", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                  "--format", "{{.Name}}").stdout.split()


def check_token_rotation():
    def rotation():
        path = os.path.join(SECRETS_DIR, "api_token")
        old = SECRETS["api_token"]
        with Load() as load:
            wait_for(lambda: load.total > 100, 10)
            t0 = time.monotonic()
            # a new token in the file, a new Swarm secret version, the api rolled (deploy.sh --swarm)
            run([os.path.join(REPO, "scripts", "rotate-secret.sh"), "--swarm", "api_token"], timeout=400)
            took = time.monotonic() - t0
            unsettled = settle(load)
        with open(path, encoding="utf-8") as f:
            new = f.read().strip()
        assert new != old, "rotate-secret.sh did not change the file"
        SECRETS["api_token"] = new
        figure(f"API token rotation (rotate-secret.sh --swarm: new Swarm secret version, api rolled) in {took:.0f} s; "
               f"under load: {load.summary()}")
        tokens = [n for n in stack_secrets() if n.startswith(f"{STACK}_api_token-")]
        assert len(tokens) == 1, f"token versions left: {tokens}"
        post = lambda token: request("POST", "/items", {"name": "rotated"}, {"Authorization": f"Bearer {token}"})[0]  # noqa: E731
        assert post(new) == 201, "the new token is refused"
        assert post(old) == 401, "the old token still works"
        assert not unsettled, unsettled
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"

    check("secret rotation: rotate-secret.sh --swarm api_token: a new Swarm secret, the api rolls onto it, "
          "old token 401, new 201, zero failed requests", rotation)


def check_scaling():
    def scale(n):
        docker("service", "scale", "--detach", f"{service('api')}={n}", timeout=60)
        ok = wait_for(lambda: converged("api", n) and len(front_resolves_api()) == n, 120)
        assert ok, f"api did not reach {n} healthy replicas in the front's DNS within 120 s: {front_resolves_api()}"

    def five_then_one():
        with Load() as load:
            wait_for(lambda: load.total > 100, 10)
            t0 = time.monotonic()
            scale(5)
            up = time.monotonic() - t0
            t1 = time.monotonic()
            scale(1)
            down = time.monotonic() - t1
            unsettled = settle(load)
        figure(f"scale api 3 -> 5 in {up:.0f} s, 5 -> 1 in {down:.0f} s; under load: {load.summary()}")
        assert not unsettled, unsettled
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"

    check("scaling: api to 5 replicas, then to 1, under load, zero failed requests", five_then_one)


class Throughput:
    """req/s through the front (GET /items, loopback) with a number of api
    replicas: wrk when it is installed (bounded by -d), else a bounded
    closed-loop Python load. Measured where the stack already has that many
    replicas (3 while the rolling update's monitor runs, 1 after the
    scale-down), then checked and reported by check()."""
    SECONDS = 6

    def __init__(self):
        self.results = {}

    def measure(self, n):
        if not (converged("api", n) and len(front_resolves_api()) == n):
            self.results[n] = None
            return
        if shutil.which("wrk"):
            tool = f"wrk -t2 -c16 -d{self.SECONDS}s"
            out = subprocess.run(tool.split() + ["--latency", f"http://127.0.0.1:{PORT}/items"],
                                 capture_output=True, text=True, timeout=60).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            p99 = re.search(r"99%\s+(\S+)", out)
            self.results[n] = (rps, int(errors.group(1)) if errors else 0, p99.group(1) if p99 else "?", tool,
                               os.getloadavg()[0])
        else:
            load = Load(rate=1e9, threads=16)
            with load:
                time.sleep(self.SECONDS)
            self.results[n] = (load.ok / load.elapsed, load.failed, f"{load.max_latency * 1000:.0f}ms max",
                               f"python, 16 connections, {self.SECONDS} s", os.getloadavg()[0])

    def check(self):
        def throughput():
            for n in (1, REPLICAS):
                assert self.results.get(n), f"not measured with {n} api replica(s) (not converged at the time)"
            for n in (1, REPLICAS):
                rps, errors, p99, tool, loadavg = self.results[n]
                figure(f"throughput GET /items with {n} api replica(s): {rps:.0f} req/s ({tool}; non-2xx: {errors}; "
                       f"p99 {p99}; load average {loadavg:.1f} on {os.cpu_count()} CPUs)")
            assert all(self.results[n][1] == 0 for n in self.results), "errors during the measurement"

        check(f"throughput: measured with 1 and {REPLICAS} api replicas (GET /items, loopback), no error", throughput)


def containers_image(name):
    return spec(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]


def image_repo(name):
    return containers_image(name).rsplit(":", 1)[0]


def leftovers():
    found = {}
    label = f"label=com.docker.stack.namespace={STACK}"
    queries = {
        "service": ["service", "ls", "-q", "--filter", label],
        "container": ["ps", "-aq", "--filter", label],
        "network": ["network", "ls", "-q", "--filter", label],
        "secret": ["secret", "ls", "-q", "--filter", label],
        "volume": ["volume", "ls", "-q", "--filter", label],
    }
    for kind, args in queries.items():
        proc = docker(*args, check_rc=False)
        if proc.returncode == 0 and proc.stdout.split():
            found[kind] = proc.stdout.split()
    if docker("volume", "inspect", f"{STACK}_db-data", check_rc=False).returncode == 0:
        found.setdefault("volume", []).append(f"{STACK}_db-data")
    return found


def free_port(variable="SWARM_HTTP_PORT", candidates=range(18480, 18500)):
    wanted = os.environ.get(variable)
    return checks.free_port([int(wanted)] if wanted else candidates)


def run_checks(keep):
    global PORT, HTTPS_PORT
    if leftovers():
        log(f"removing leftovers of an earlier run of stack {STACK}")
        deploy("--swarm", "--down", "--purge", timeout=240)
    PORT = free_port()
    HTTPS_PORT = free_port("SWARM_HTTPS_PORT", range(18500, 18520))
    if not report("free ports for the front on 127.0.0.1 (HTTP and HTTPS)", PORT != 0 and HTTPS_PORT != 0,
                  "18480-18499 or 18500-18519 are all taken: set SWARM_HTTP_PORT, SWARM_HTTPS_PORT"):
        return
    log(f"stack {STACK}, front on port {PORT}")

    result = {}

    def deployed():
        t0 = time.monotonic()
        proc = deploy("--swarm", "--monitoring", "--timeout", "300")
        result["stderr"] = proc.stderr
        log(f"deploy.sh --swarm (build included) took {time.monotonic() - t0:.1f} s")
        for line in proc.stderr.splitlines():
            if line.startswith("[deploy] the stack"):
                log(line)

    if not check(f"deploy: scripts/deploy.sh --swarm deploys {REPLICAS} api replicas, all healthy, smoke test ok", deployed):
        return
    for name in ("db_root_password", "db_password", "api_token"):
        with open(os.path.join(SECRETS_DIR, name), encoding="utf-8") as f:
            SECRETS[name] = f.read().strip()

    check_definition(result["stderr"])
    check_api()
    check_monitoring()
    check_backup_and_schema()
    check_spread()
    throughput = Throughput()
    check_rolling_update(lambda: throughput.measure(REPLICAS))
    check_killed_replica()
    check_token_rotation()
    check_scaling()
    throughput.measure(1)
    throughput.check()
    if not keep:
        def removed():
            deploy("--swarm", "--down", "--purge", timeout=240)
            left = leftovers()
            assert not left, f"left behind: {left}"

        check("down --purge: no service, container, network, secret or volume of the stack remains", removed)


def main():
    global SECRETS_DIR
    keep = checks.keep_requested(__doc__)

    initial = swarm_state()
    if initial not in ("inactive", "manager"):
        print(f"SKIP: this Docker engine cannot run the test's swarm (its swarm state is {initial}; "
              "a manager or no swarm at all is needed)")
        return 77
    created_swarm = False
    gwbridge_before = docker("network", "inspect", "docker_gwbridge", check_rc=False).returncode == 0
    if initial == "inactive":
        # docker_gwbridge outside 172.31.0.0/16, where the compose suites' subnets are (they run at
        # the same time): scripts/lib/docker.sh's dk_ensure_gwbridge, as deploy.sh --init-swarm.
        run(["bash", "-c", '. "$1/scripts/lib/docker.sh" && dk_ensure_gwbridge', "gwbridge", REPO],
            check_rc=False)
        proc = docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377",
                      check_rc=False)
        if proc.returncode != 0:
            print(f"SKIP: docker swarm init fails here: {proc.stderr.strip()[:300]}")
            return 77
        created_swarm = True
        log("created a single-node swarm for the test (it is left at the end)")

    SECRETS_DIR = tempfile.mkdtemp(prefix="items-swarm-secrets.")
    started = time.monotonic()
    try:
        run_checks(keep)
    finally:
        if not keep:
            if leftovers():
                try:
                    deploy("--swarm", "--down", "--purge", timeout=240)
                except Exception as exc:  # noqa: BLE001
                    log(f"cleanup failed: {exc}")
            for img in docker("images", "--format", "{{.Repository}}:{{.Tag}}", check_rc=False).stdout.split():
                if img.endswith(f":{ROLLOUT_TAG}"):
                    docker("image", "rm", img, check_rc=False)  # the tag only: the image is latest's
            if created_swarm:
                docker("swarm", "leave", "--force", check_rc=False)
                if not gwbridge_before:
                    docker("network", "rm", "docker_gwbridge", check_rc=False)
                report("the machine is left as found: the swarm the test created is gone",
                       swarm_state() == "inactive", f"swarm state {swarm_state()}")
            else:
                report("the machine is left as found: the swarm that existed is still there",
                       swarm_state() == initial, f"swarm state {swarm_state()}")
        shutil.rmtree(SECRETS_DIR, ignore_errors=True)
        log(f"swarm end-to-end test took {time.monotonic() - started:.0f} s")
    return finish()



if __name__ == "__main__":
    sys.exit(main())
