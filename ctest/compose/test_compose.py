#!/usr/bin/env python3
"""Compose end-to-end test of the items stack (run through test_compose.sh).

Deploys with scripts/deploy.sh under its own compose project, then checks through 127.0.0.1 and
`docker exec` / `docker inspect` / the host's /proc every security and reliability claim of the
deployment (issue: "Compose deployment"). Python 3 standard library only. One line per check
("ok - ..." or "FAIL - ...: reason"), then "N passed, M failed". Exit 1 if any check failed.
"""

import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
import db_checks  # noqa: E402 - beside this file
import restore_checks  # noqa: E402 - beside this file
import rollback_checks  # noqa: E402 - beside this file
import tls_checks  # noqa: E402 - beside this file
from checks import check, log, proc_status, report, tcp_listeners, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.environ.get("E2E_PROJECT", "items-e2e")
PORT = int(os.environ.get("E2E_HTTP_PORT", "80"))
HTTPS_PORT = int(os.environ.get("E2E_HTTPS_PORT", "443"))
EDGE_SUBNET = os.environ.get("E2E_EDGE_SUBNET", "172.31.254.0/24")
FRONT_EDGE_IP = os.environ.get("E2E_FRONT_EDGE_IP", "172.31.254.20")
DATA_SUBNET = os.environ.get("E2E_DATA_SUBNET", "172.31.252.0/24")
PUBLIC_SUBNET = os.environ.get("E2E_PUBLIC_SUBNET", "172.31.251.0/24")
DEPLOY_TIMEOUT = 900  # seconds, the build included
# The big-page check: BIG_ITEMS items of 64 KiB of control characters (each ~390 KB of JSON), read by
# BIG_CLIENTS concurrent GET /items?limit=1000 through the front.
BIG_ITEMS = int(os.environ.get("E2E_BIG_ITEMS", "400"))
BIG_CLIENTS = int(os.environ.get("E2E_BIG_CLIENTS", "4"))
BIG_PREFIX = "e2e big page "
SERVICES = ("db", "api", "front")



# --- processes -------------------------------------------------------------------------------------


def env():
    e = checks.deploy_env(PROJECT, PORT, "0.0.0.0", SECRETS_DIR,
                          {"EDGE_SUBNET": EDGE_SUBNET, "FRONT_EDGE_IP": FRONT_EDGE_IP,
                           "DATA_SUBNET": DATA_SUBNET, "PUBLIC_SUBNET": PUBLIC_SUBNET}, https_port=HTTPS_PORT)
    if TRANSPORT:
        e["API_TRANSPORT"] = TRANSPORT
    return e


def run(args, timeout=120, check_rc=True, input_text=None, extra_env=None):
    proc = subprocess.run(
        args, cwd=REPO, env={**env(), **(extra_env or {})}, input=input_text, capture_output=True,
        text=True, timeout=timeout
    )
    if check_rc and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"
        )
    return proc


def docker(*args, timeout=60, check_rc=True):
    return run(["docker", *args], timeout=timeout, check_rc=check_rc)


def deploy(*args, timeout=DEPLOY_TIMEOUT):
    return run([os.path.join(REPO, "scripts", "deploy.sh"), *args], timeout=timeout)


def cid(service):
    out = docker(
        "ps", "-q",
        "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()
    assert out, f"no running container for service {service}"
    return out[0]


def inspect(container):
    return json.loads(docker("inspect", container).stdout)[0]


def host_pids(container):
    """Host PIDs of every process of a container (docker top)."""
    out = docker("top", container, "-eo", "pid").stdout.split()
    return [int(p) for p in out[1:]]


def proc_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace")


def worker_pids(container):
    out = docker("top", container, "-eo", "pid,args").stdout.splitlines()[1:]
    return sorted(int(line.split()[0]) for line in out if "items-fcgi" in line and "multiwatch" not in line)


# --- HTTP --------------------------------------------------------------------------------------------


def request(method, path, body=None, headers=None, timeout=5):
    return checks.http_request(PORT, method, path, body, headers, timeout)


def try_status(path="/status"):
    return checks.try_status(PORT, path)


def auth():
    return {"Authorization": f"Bearer {SECRETS['api_token']}"}


# --- checks ------------------------------------------------------------------------------------------


def check_contract():
    state = {}

    def status():
        r = request("GET", "/status")
        assert r.status == 200, f"HTTP {r.status} {r.body[:200]!r}"
        assert r.header("content-type").startswith("application/json"), r.header("content-type")
        body = r.json()
        assert body == {"status": "OK", "database_connection": "OK", "message": "<<< OK >>>"}, body
        assert r.header("x-request-id"), "no X-Request-ID"

    def listing():
        r = request("GET", "/items")
        assert r.status == 200, f"HTTP {r.status}"
        items = r.json()
        assert isinstance(items, list) and len(items) >= 5, items
        names = [i["name"] for i in items]
        assert "Zinédine Zidane" in names and "Kylian Mbappé" in names, names

    def create():
        r = request("POST", "/items", {"name": "e2e ✓ <b>é</b>", "description": "créé par le test"}, auth())
        assert r.status == 201, f"HTTP {r.status} {r.body[:200]!r}"
        item = r.json()
        assert r.header("location") == f"/items/{item['id']}", r.header("location")
        assert item["name"] == "e2e ✓ <b>é</b>", item
        state["id"] = item["id"]

    def read():
        r = request("GET", f"/items/{state['id']}")
        assert r.status == 200, f"HTTP {r.status}"
        assert r.json()["description"] == "créé par le test", r.json()

    def update():
        r = request("PUT", f"/items/{state['id']}", {"name": "e2e updated", "description": None}, auth())
        assert r.status == 200, f"HTTP {r.status} {r.body[:200]!r}"
        assert r.json()["name"] == "e2e updated" and r.json()["description"] is None, r.json()

    def delete():
        r = request("DELETE", f"/items/{state['id']}", headers=auth())
        assert r.status == 204, f"HTTP {r.status}"
        assert request("GET", f"/items/{state['id']}").status == 404, "still there after DELETE"

    def bad_request():
        r = request("GET", "/items?limit=0")
        assert r.status == 400, f"HTTP {r.status}"
        assert "error" in r.json(), r.body

    def unauthorized():
        r = request("POST", "/items", {"name": "no token"})
        assert r.status == 401, f"HTTP {r.status}"
        assert (r.header("www-authenticate") or "").startswith("Bearer"), r.headers

    check("contract: GET /status 200 with the database OK (port %d)" % PORT, status)
    check("contract: GET /items lists the seed items, accents intact", listing)
    check("contract: POST /items 201 with Location", create)
    if "id" in state:
        check("contract: GET /items/{id} 200", read)
        check("contract: PUT /items/{id} 200", update)
        check("contract: DELETE /items/{id} 204, then 404", delete)
    check("contract: GET /items?limit=0 400 with a JSON error", bad_request)
    check("contract: POST /items without a token 401 + WWW-Authenticate", unauthorized)


def check_hardening():
    for svc in SERVICES:
        c = cid(svc)

        def processes(c=c):
            statuses = checks.proc_statuses(host_pids(c))
            assert statuses, "no process"
            for pid, st in statuses:
                uids = st["Uid"].split()
                assert all(u != "0" for u in uids), f"pid {pid} ({proc_cmdline(pid)[:60]}) has uid {uids}"
                assert int(st["CapEff"], 16) == 0, f"pid {pid} CapEff={st['CapEff']}"
                assert int(st["CapPrm"], 16) == 0, f"pid {pid} CapPrm={st['CapPrm']}"
                assert st.get("NoNewPrivs") == "1", f"pid {pid} NoNewPrivs={st.get('NoNewPrivs')}"
            return True

        def readonly(c=c):
            info = inspect(c)
            assert info["HostConfig"]["ReadonlyRootfs"] is True, "ReadonlyRootfs is not set"
            pid = info["State"]["Pid"]
            with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
                root = [line.split() for line in f if line.split()[4] == "/"]
            assert root and "ro" in root[-1][5].split(","), f"/ mounted {root[-1][5] if root else '?'}"

        def config(c=c):
            info = inspect(c)
            hc = info["HostConfig"]
            assert hc["CapDrop"] and "ALL" in [x.upper() for x in hc["CapDrop"]], hc["CapDrop"]
            assert not hc.get("CapAdd"), f"CapAdd {hc.get('CapAdd')}"
            assert any("no-new-privileges" in s for s in hc.get("SecurityOpt") or []), hc.get("SecurityOpt")
            assert hc["Memory"] > 0, "no memory limit"
            assert (hc.get("PidsLimit") or 0) > 0, "no pids limit"
            assert hc["RestartPolicy"]["Name"] in ("unless-stopped", "always", "on-failure"), hc["RestartPolicy"]
            assert not hc.get("Privileged"), "privileged"
            user = info["Config"]["User"]
            assert user and user.split(":")[0] not in ("", "0", "root"), f"user {user!r}"
            assert info["Config"].get("Healthcheck", {}).get("Test"), "no healthcheck"
            assert info["State"]["Health"]["Status"] == "healthy", info["State"]["Health"]["Status"]

        check(f"{svc}: every process non-root, no capabilities, no-new-privileges", processes)
        check(f"{svc}: root filesystem read-only", readonly)
        check(f"{svc}: cap_drop ALL, no cap_add, memory/pids limits, restart policy, healthy", config)


def check_db_contract():
    db = cid("db")
    image = inspect(db)["Config"]["Image"]

    def grants():
        out = docker("exec", db, "mariadb", "--batch", "--skip-column-names",
                     "-e", "SHOW GRANTS FOR 'items'@'%'").stdout.splitlines()
        on_schema = [g for g in out if " ON `items`.*" in g]
        assert on_schema == ["GRANT SELECT, INSERT, UPDATE, DELETE ON `items`.* TO `items`@`%`"], out
        assert not any("ALL PRIVILEGES" in g for g in out), out
        assert all(" ON *.* " not in g or g.startswith("GRANT USAGE ON *.*") for g in out), out

    def half_finished():
        tmp = tempfile.mkdtemp(prefix="items-e2e-init.")
        volume = f"{PROJECT}-initcheck"
        bad = os.path.join(tmp, "03-bad.sql")
        with open(bad, "w", encoding="utf-8") as f:
            f.write("CREATE TABLE t (i INT);\nTHIS IS NOT SQL;\n")
        os.chmod(bad, 0o644)
        common = ["run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                  "--tmpfs", "/run/mysqld:uid=10003,gid=10000,mode=0750", "--tmpfs", "/tmp:uid=10003,gid=10000",
                  "-v", f"{volume}:/var/lib/mysql", "-e", "MYSQL_ROOT_PASSWORD=e2e-only", "-e", "MYSQL_DATABASE=items"]
        try:
            first = docker(*common, "-v", f"{bad}:/docker-entrypoint-initdb.d/03-bad.sql:ro", image,
                           timeout=180, check_rc=False)
            assert first.returncode != 0, "a failing init script did not fail the first start"
            second = docker(*common, image, timeout=180, check_rc=False)
            assert second.returncode != 0, "the second start accepted a half-finished initialisation"
            assert "half-finished initialisation" in second.stderr, second.stderr[-500:]
        finally:
            docker("volume", "rm", "-f", volume, check_rc=False)
            shutil.rmtree(tmp, ignore_errors=True)

    check("db: the application account has only SELECT, INSERT, UPDATE, DELETE on its schema", grants)
    check("db: a failed first initialisation is detected and refused on the next start", half_finished)
    # root local only, the buffer pool from the memory limit, max_connections within the pids limit
    db_checks.check_running_db(db, docker)
    # the db image on volumes of its own: the MariaDB pin, mariadb-upgrade on a version change,
    # no remote root, no password needed after initialisation, limits (ctest/compose/db_checks.py)
    db_checks.run_all(image, f"{PROJECT}-dbcheck")


def netns_probe(container, target, port):
    """True when TCP target:port answers from container's network namespace. Runs a throwaway
    container of the db image (it has bash) in that namespace, with no capabilities."""
    image = inspect(cid("db"))["Config"]["Image"]
    script = f'exec 3<>/dev/tcp/{target}/{port}'
    proc = docker(
        "run", "--rm", "--network", f"container:{container}", "--cap-drop", "ALL", "--user", "10003",
        "--entrypoint", "timeout", image, "4", "bash", "-c", script,
        timeout=30, check_rc=False,
    )
    return proc.returncode == 0


def routes(container):
    """The IPv4 routes of a container's network namespace, from the host's /proc (the images have
    no `ip`): [(destination network, prefix length, gateway)], 0.0.0.0/0 being a default route."""
    pid = inspect(container)["State"]["Pid"]
    out = []
    with open(f"/proc/{pid}/net/route", encoding="utf-8") as f:
        next(f)
        for line in f:
            fields = line.split()
            dest, gateway, mask = (socket.inet_ntoa(int(x, 16).to_bytes(4, "little")) for x in
                                   (fields[1], fields[2], fields[7]))
            prefix = bin(int.from_bytes(socket.inet_aton(mask), "big")).count("1")
            out.append((ipaddress.ip_network(f"{dest}/{prefix}"), gateway))
    return out


def networks_of(container):
    return {name[len(PROJECT) + 1:] if name.startswith(f"{PROJECT}_") else name: net
            for name, net in inspect(container)["NetworkSettings"]["Networks"].items()}


def check_network():
    front, api, db = cid("front"), cid("api"), cid("db")
    db_ip = [n["IPAddress"] for n in inspect(db)["NetworkSettings"]["Networks"].values()][0]
    stack_nets = {ipaddress.ip_network(n) for n in (EDGE_SUBNET, DATA_SUBNET)}

    def control():
        assert netns_probe(api, "db", 3306), "the api cannot reach db:3306: the probe itself is broken"

    def unreachable():
        assert not netns_probe(front, "db", 3306), "front reaches db:3306 by name"
        assert not netns_probe(front, db_ip, 3306), f"front reaches {db_ip}:3306"

    def internal():
        flags = {name: json.loads(docker("network", "inspect", f"{PROJECT}_{name}").stdout)[0]["Internal"]
                 for name in ("public", "edge", "data")}
        assert flags == {"public": False, "edge": True, "data": True}, f"Internal flags {flags}"
        assert set(networks_of(front)) == {"public", "edge"}, f"front on {set(networks_of(front))}"
        assert set(networks_of(api)) == {"edge", "data"}, f"api on {set(networks_of(api))}"
        assert set(networks_of(db)) == {"data"}, f"db on {set(networks_of(db))}"

    def isolation_rules():
        proc = subprocess.run(["iptables", "-S", "DOCKER-ISOLATION-STAGE-1"], capture_output=True, text=True)
        assert proc.returncode == 0, f"iptables -S: {proc.stderr.strip()}"
        return proc.stdout

    def no_route_out():
        # Every route of api and db leads into a stack network. Docker before 25 adds a default route
        # even on an internal network, to the bridge: there Docker's isolation rules drop whatever
        # the bridge would forward out of its subnet (read from the host's iptables, not probed).
        bridges = {}
        for name in ("edge", "data"):
            net = json.loads(docker("network", "inspect", f"{PROJECT}_{name}").stdout)[0]
            subnet = ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"])
            bridges[subnet] = net["Options"].get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        for name, c in (("api", api), ("db", db)):
            table = routes(c)
            log(f"{name} routes: {[(str(n), gw) for n, gw in table]}")
            assert table, f"{name}: no route at all (cannot read its table?)"
            for net, gw in table:
                if net.prefixlen != 0:
                    assert net in stack_nets, f"{name}: a route to {net}, outside the stack's networks"
                    continue
                via = ipaddress.ip_address(gw)
                subnet = next((n for n in bridges if via in n), None)
                assert subnet, f"{name}: default route via {gw}, outside the internal networks"
                rule = f"-A DOCKER-ISOLATION-STAGE-1 ! -d {subnet} -i {bridges[subnet]} -j DROP"
                assert rule in isolation_rules(), f"{name}: default route via {gw}, and no isolation rule {rule!r}"
        # control: the front's way out is the public network
        default = [gw for n, gw in routes(front) if n.prefixlen == 0]
        assert default and ipaddress.ip_address(default[0]) in ipaddress.ip_network(PUBLIC_SUBNET), \
            f"the front's default route {default}: not through the public network"

    def ports():
        for svc, c in (("api", api), ("db", db)):
            info = inspect(c)
            assert not info["HostConfig"].get("PortBindings"), f"{svc} publishes {info['HostConfig']['PortBindings']}"
            bound = {k: v for k, v in (info["NetworkSettings"]["Ports"] or {}).items() if v}
            assert not bound, f"{svc} has host ports {bound}"
        bound = {k: v for k, v in (inspect(front)["NetworkSettings"]["Ports"] or {}).items() if v}
        assert sorted(bound) == ["8080/tcp", "8443/tcp"], f"front publishes {bound}"
        assert bound["8080/tcp"][0]["HostPort"] == str(PORT), bound
        assert bound["8443/tcp"][0]["HostPort"] == str(HTTPS_PORT), bound

    check("network: the probe reaches db:3306 from the api (control)", control)
    check("network: db:3306 unreachable from the front container (by name and by address)", unreachable)
    check("network: public (front only) has a way out; edge and data are internal; api on edge+data, db on data",
          internal)
    check("network: api and db have no route out of the stack (routes only into its networks; a default route, "
          "if Docker adds one, ends at its isolation rules); the front's way out is the public network", no_route_out)
    check("network: api and db publish no host port; front only its HTTP and HTTPS ports", ports)


# --- front -> api: the unix socket (the default) and TCP (replicas) ----------------------------------


def check_unix_transport():
    """API_TRANSPORT=unix (the default): the front passes requests to the api's socket on the volume
    api-socket, which only front and api mount; the api listens on no TCP port; the socket admits
    the api's group only; a second api container waits on the front's backup socket and serves
    nothing while the first one answers."""
    front, api = cid("front"), cid("api")
    sock = "/run/items-api/fcgi.sock"

    def upstream():
        conf = docker("exec", front, "cat", "/run/nginx/conf/items-upstream.conf").stdout
        assert f"server unix:{sock} max_fails=0;" in conf, conf
        logs = docker("logs", api).stderr
        assert f"listening on unix:{sock}" in logs, "items-pool did not say it listens on the socket"
        socks = tcp_listeners(inspect(api)["State"]["Pid"])
        assert not [s for s in socks if s[1] == 9000], f"the api listens on TCP 9000 too: {socks}"
        assert try_status() == 200

    def permissions():
        out = docker("exec", front, "/usr/bin/busybox", "stat", "-c", "%F %a %u %g", sock, os.path.dirname(sock))
        got = out.stdout.splitlines()
        assert got == ["socket 660 10002 10000", "directory 750 10002 10000"], got
        mounts = {}
        for c in docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.split():
            info = inspect(c)
            for m in info["Mounts"]:
                if m.get("Name") == f"{PROJECT}_api-socket":
                    mounts[info["Config"]["Labels"]["com.docker.compose.service"]] = m["RW"]
        assert mounts == {"api": True, "front": False}, f"api-socket mounted by {mounts} (service: read-write)"

    def second_api_waits():
        compose_up("--no-recreate", "--scale", "api=2", "api")
        try:
            second = wait_for(lambda: [c for c in containers_of("api") if c != api], 30)
            assert second, f"no second api container: {containers_of('api')}"
            said = wait_for(lambda: f"listening on unix:{os.path.dirname(sock)}/fcgi-next.sock"
                            in docker("logs", second[0], check_rc=False).stderr, 30)
            assert said, f"the second api is not on the backup socket: {docker('logs', second[0]).stderr[-400:]}"
            assert wait_for(lambda: health(second[0]) == "healthy", 60), f"second api: {health(second[0])}"
            since = str(int(time.time()) - 1)
            statuses = [request("GET", f"/items/88{k:03d}").status for k in range(20)]
            assert statuses == [404] * 20, f"with a second api container: {statuses}"
            served = {c: sum(1 for x in access_lines(c, since, "stderr") if str(x.get("path", "")).startswith("/items/88"))
                      for c in (api, second[0])}
            assert served == {api: 20, second[0]: 0}, f"requests per api container: {served}"
        finally:
            compose_up("--no-recreate", "--scale", "api=1", "api")
        assert wait_for(lambda: containers_of("api") == [api], 60), containers_of("api")
        assert try_status() == 200

    check("transport unix (default): the front's upstream is the api's socket, the api listens on no TCP port", upstream)
    check("transport unix: the socket 0660 and its directory 0750, api's uid and group; volume mounted by the api "
          "(read-write) and the front (read-only) only", permissions)
    check("transport unix: a second api container (--scale api=2) waits on the backup socket fcgi-next.sock, "
          "healthy; the first one serves every request (20 of 20); back to one", second_api_waits)


def use_transport(transport):
    """Recreates api and front with API_TRANSPORT=transport, as an operator would (.env, `up -d`)."""
    global TRANSPORT
    TRANSPORT = transport
    compose_up("api", "front")
    ok = wait_for(lambda: all(health(c) == "healthy" for c in containers_of("api") + containers_of("front"))
                  and try_status() == 200, 120)
    assert ok, f"api/front not healthy with API_TRANSPORT={transport} (/status {try_status()})"


def check_tcp_transport():
    """API_TRANSPORT=tcp: the api listens on its edge address, the front finds the replicas through
    Docker's DNS: FastCGI trust, then --scale; the stack goes back to the unix socket after."""
    def switched():
        use_transport("tcp")
        conf = docker("exec", cid("front"), "cat", "/run/nginx/conf/nginx.conf").stdout
        assert 'default "api:9000";' in conf, "the front does not pass requests to api:9000"
        assert netns_probe(cid("front"), "api", 9000), "the front cannot connect to api:9000: the probe itself is broken"

    def db_to_api():
        api, db = cid("api"), cid("db")
        api_ips = [n["IPAddress"] for n in inspect(api)["NetworkSettings"]["Networks"].values()]
        assert not netns_probe(db, "api", 9000), "db reaches api:9000 by name"
        for ip in api_ips:
            assert not netns_probe(db, ip, 9000), f"db reaches {ip}:9000"

    def back():
        use_transport("unix")
        conf = docker("exec", cid("front"), "cat", "/run/nginx/conf/items-upstream.conf").stdout
        assert "server unix:/run/items-api/fcgi.sock" in conf, conf

    if not check("transport tcp: api and front recreated with API_TRANSPORT=tcp, healthy; the front connects to "
                 "api:9000 (control)", switched):
        return
    check("network: api:9000 unreachable from the db container (by name and every api address)", db_to_api)
    check_fcgi_trust()
    check_scale()
    check("transport: back to unix, api and front recreated, healthy, the socket upstream again", back)


# --- trust at the FastCGI socket ---------------------------------------------------------------------


def edge_network():
    return f"{PROJECT}_edge"


def fcgi_probe(network, target, path="/status"):
    """Sends a FastCGI GET path to target:9000 with cgi-fcgi from a throwaway container of the api
    image (it has cgi-fcgi and dash), no capabilities, attached to `network` ("container:ID" shares
    that container's network namespace). Returns (stdout, stderr, exit code, seconds)."""
    image = inspect(cid("api"))["Config"]["Image"]
    name = f"{PROJECT}-fcgi-probe"
    script = (f"REQUEST_METHOD=GET DOCUMENT_URI={path} REQUEST_URI={path} QUERY_STRING= "
              f"REQUEST_ID=e2e-probe exec cgi-fcgi -bind -connect {target}:9000")
    docker("rm", "-f", name, check_rc=False)
    t0 = time.monotonic()
    try:
        proc = docker(
            "run", "--rm", "--name", name, "--network", network, "--no-healthcheck", "--read-only",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "10002:10000",
            "--entrypoint", "/bin/sh", image, "-c", script,
            timeout=60, check_rc=False,
        )
    finally:
        docker("rm", "-f", name, check_rc=False)  # only if the run timed out: --rm removes it otherwise
    return proc.stdout, proc.stderr, proc.returncode, time.monotonic() - t0


def api_edge_ip(api):
    return inspect(api)["NetworkSettings"]["Networks"][edge_network()]["IPAddress"]


def check_fcgi_trust():
    api, front = cid("api"), cid("front")
    api_ip = api_edge_ip(api)  # Docker's choice

    def addresses():
        info = inspect(api)
        nets = info["NetworkSettings"]["Networks"]
        assert ipaddress.ip_address(api_ip) in ipaddress.ip_network(EDGE_SUBNET), api_ip
        fixed = (nets[edge_network()].get("IPAMConfig") or {}).get("IPv4Address")
        assert not fixed, f"the api has a fixed edge address {fixed}: --scale cannot work"
        got = inspect(front)["NetworkSettings"]["Networks"][edge_network()]["IPAddress"]
        assert got == FRONT_EDGE_IP, f"front's edge address {got}, want {FRONT_EDGE_IP}"
        env = dict(v.split("=", 1) for v in info["Config"]["Env"] or [])
        assert env.get("FCGI_LISTEN_SUBNET") == EDGE_SUBNET, env.get("FCGI_LISTEN_SUBNET")
        assert env.get("FCGI_WEB_SERVER_ADDRS") == FRONT_EDGE_IP, env.get("FCGI_WEB_SERVER_ADDRS")
        logs = docker("logs", api).stderr
        assert f"listening on {api_ip}:9000" in logs, "items-pool did not say where it listens"

    def edge_only():
        info = inspect(api)
        data_ip = info["NetworkSettings"]["Networks"][f"{PROJECT}_data"]["IPAddress"]
        socks = tcp_listeners(info["State"]["Pid"])
        log(f"api listening sockets: {sorted(socks)} (data address {data_ip})")
        on_9000 = [s for s in socks if s[1] == 9000]
        assert on_9000 == [(api_ip, 9000)], f"port 9000 bound to {on_9000}, want only {api_ip}"
        wildcard = [s for s in socks if s[0] in ("0.0.0.0", "::")]
        assert not wildcard, f"listening on every address: {wildcard}"
        on_data = [s for s in socks if s[0] in (data_ip, f"::ffff:{data_ip}")]
        assert not on_data, f"listening on the data network: {on_data}"
        # and from the data network's side: the db's namespace reaches nothing on the api's data address
        assert not netns_probe(cid("db"), data_ip, 9000), f"{data_ip}:9000 answers from the db container"

    def foreign_peer_refused():
        out, err, rc, took = fcgi_probe(edge_network(), api_ip)
        log(f"FastCGI GET /status from another container on {edge_network()} to {api_ip}:9000: exit {rc} "
            f"after {took:.1f} s, {len(out)} bytes out, stderr {err.strip()[-120:]!r}")
        assert "Status:" not in out and not out.strip(), f"a FastCGI answer came back: {out[:200]!r}"
        assert took < 10, f"took {took:.1f} s: the connection was not closed at once"
        # The port is reachable from there (TCP connects): it is the pool that closes the connection,
        # without a byte, not the network that blocks it. A throwaway db-image container (it has bash).
        image = inspect(cid("db"))["Config"]["Image"]
        script = (f"exec 3<>/dev/tcp/{api_ip}/9000 || exit 2; "
                  "IFS= read -r -t 5 -n 1 c <&3; rc=$?; [ $rc -eq 1 ] && exit 0; echo \"read: $rc\"; exit 3")
        proc = docker("run", "--rm", "--network", edge_network(), "--cap-drop", "ALL", "--user", "10003",
                      "--entrypoint", "timeout", image, "8", "bash", "-c", script, timeout=30, check_rc=False)
        assert proc.returncode == 0, (f"TCP probe exit {proc.returncode} (2: no connection, 3: not closed at once) "
                                      f"{(proc.stdout + proc.stderr).strip()[-200:]!r}")
        r = request("GET", "/status")
        assert r.status == 200, f"the same request through the front: HTTP {r.status}"

    def own_address_admitted():
        # control: the same probe in the api's own namespace connects from api_ip, which is in
        # the list (that is the healthcheck's path), so the probe itself is able to get an answer
        out, err, rc, _ = fcgi_probe(f"container:{api}", api_ip)
        assert out.startswith("Status: 200"), f"exit {rc}, out {out[:200]!r}, err {err[-300:]!r}"

    check(f"fastcgi trust: api on {api_ip} (Docker's choice in {EDGE_SUBNET}), front on {FRONT_EDGE_IP}, "
          "the pool admits exactly those two", addresses)
    check(f"fastcgi trust: the pool listens on its edge address {api_ip}:9000 only (not 0.0.0.0, nothing on "
          "the data network)", edge_only)
    check("fastcgi trust: the probe gets 200 from the api's own address (control)", own_address_admitted)
    check("fastcgi trust: another container on the edge network connects but gets no FastCGI answer; through the front 200",
          foreign_peer_refused)


# --- operating: settings at start, replicas, quiet healthchecks, limits --------------------------------


def compose_up(*args, extra_env=None):
    """`compose up -d --no-build --no-deps ARGS` in the checkout, for this test's project: what an
    operator runs after editing .env (compose reads the environment before .env)."""
    return run(checks.plain_compose() + ["up", "-d", "--no-build", "--no-deps", *args], timeout=300, extra_env=extra_env)


def containers_of(service):
    return docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
                  "--filter", f"label=com.docker.compose.service={service}").stdout.split()


def access_lines(container, since=None, stream="stdout"):
    """The JSON lines a container logged (nginx's access log is its stdout, the api's on stderr)."""
    args = ["logs"] + (["--since", since] if since else []) + [container]
    proc = docker(*args, timeout=60)
    text = proc.stdout if stream == "stdout" else proc.stderr
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


def recreate_front(extra_env=None):
    before = cid("front")
    compose_up("front", extra_env=extra_env)
    ok = wait_for(lambda: containers_of("front") and containers_of("front")[0] != before
                  and health(containers_of("front")[0]) == "healthy" and try_status() == 200, 60)
    assert ok, f"the front is not back healthy within 60 s (/status {try_status()})"
    return cid("front")


def check_front_settings():
    """Settings apply at start, not at build: the same front image, recreated with WRITE_BURST=2 and
    REAL_IP_FROM (the public network, where published connections come from), limits writes per
    X-Forwarded-For client and logs that client; recreated with the defaults again, it does neither."""
    image = inspect(cid("front"))["Image"]
    marker = f"realip-{os.getpid()}"

    def burst(xff, n=15):
        return [request("POST", "/items", {"name": "x"}, {"X-Forwarded-For": xff}).status for _ in range(n)]

    def logged_client(tag):
        request("GET", f"/status?{marker}={tag}", headers={"X-Forwarded-For": "203.0.113.50"})
        lines = wait_for(lambda: [x for x in access_lines(cid("front")) if f"{marker}={tag}" in x.get("uri", "")], 10)
        assert lines, f"no access line for {marker}={tag}"
        return lines[-1]["remote_addr"]

    def applied():
        front = recreate_front({"WRITE_BURST": "2", "REAL_IP_FROM": PUBLIC_SUBNET})
        assert inspect(front)["Image"] == image, "the front image changed: settings should not need a build"
        conf = docker("exec", front, "cat", "/run/nginx/conf/nginx.conf").stdout
        assert "burst=2 nodelay" in conf, "WRITE_BURST=2 is not in the rendered nginx.conf"
        first = burst("203.0.113.1")
        log(f"WRITE_BURST=2: 15 rapid writes from X-Forwarded-For 203.0.113.1: {first}")
        assert first[:3] == [401] * 3 and 429 in first, f"statuses {first}"
        other = burst("203.0.113.2", 1)
        assert other == [401], f"another client behind the same proxy was limited too: {other}"
        client = logged_client("set")
        assert client == "203.0.113.50", f"logged remote_addr {client}, want the X-Forwarded-For client"

    def defaults():
        front = recreate_front()
        assert inspect(front)["Image"] == image, "the front image changed"
        statuses = burst("203.0.113.3")
        assert 429 not in statuses, f"default burst 20: statuses {statuses}"
        client = logged_client("unset")
        assert ipaddress.ip_address(client) in ipaddress.ip_network(PUBLIC_SUBNET), \
            f"remote_addr {client}: X-Forwarded-For was trusted without REAL_IP_FROM"

    check("settings at start: WRITE_BURST and REAL_IP_FROM from the environment apply when the same front "
          "image is recreated (writes limited per X-Forwarded-For client, client logged), no build", applied)
    check("settings at start: recreated with the defaults, burst 20 again and X-Forwarded-For not trusted", defaults)


def check_scale():
    """`docker compose up --scale api=3`: the api has no fixed address, each replica listens on its
    own edge address, and the front (re-resolving api through Docker's DNS) sends requests to all."""
    def scaled():
        compose_up("--no-recreate", "--scale", "api=3", "api")
        ok = wait_for(lambda: len(containers_of("api")) == 3 and all(health(c) == "healthy" for c in containers_of("api")),
                      90)
        assert ok, f"api containers {[(c[:12], health(c)) for c in containers_of('api')]}"
        replicas = containers_of("api")
        since = str(int(time.time()) - 1)
        seen = {}
        for batch in range(6):
            for k in range(30):
                r = request("GET", f"/items/77{batch:02d}{k:03d}")
                assert r.status == 404, f"GET /items/77... through the front: {r.status}"
            seen = {c: sum(1 for x in access_lines(c, since, "stderr") if str(x.get("path", "")).startswith("/items/77"))
                    for c in replicas}
            if all(seen.values()):
                break
            time.sleep(1)
        log(f"requests per api replica: {[(c[:12], n) for c, n in seen.items()]}")
        assert all(seen.values()), f"a replica got no request: {seen}"

    def back_to_one():
        compose_up("--no-recreate", "--scale", "api=1", "api")
        assert wait_for(lambda: len(containers_of("api")) == 1, 60), containers_of("api")
        time.sleep(2)  # nginx's resolver validity (1 s), past
        statuses = [try_status() for _ in range(20)]
        assert statuses == [200] * 20, f"after scaling back to 1: {statuses}"

    check("scale: `compose up --scale api=3` starts 3 healthy replicas and the front sends requests to each", scaled)
    check("scale: back to 1 replica, the front follows (20 of 20 GET /status 200)", back_to_one)


def check_quiet_healthchecks():
    """The healthchecks run every 3 s: their answers stay out of the access logs (a failing one is
    still logged by the api)."""
    def quiet():
        for svc in ("front", "api"):
            c = cid(svc)
            runs = inspect(c)["State"]["Health"]["Log"]
            assert runs and all(r["ExitCode"] == 0 for r in runs[-3:]), f"{svc}: healthcheck runs {runs[-3:]}"
        front_noise = [x for x in access_lines(cid("front")) if x.get("remote_addr") == "127.0.0.1"]
        assert not front_noise, f"the front logged its healthcheck: {front_noise[:2]}"
        api_noise = [x for x in access_lines(cid("api"), stream="stderr") if x.get("request_id") == "healthcheck"]
        assert not api_noise, f"the api logged its healthcheck: {api_noise[:2]}"

    check("healthchecks: run and pass, but no access-log line from them in front or api", quiet)


def check_limits():
    """The limits agree: nginx runs the worker processes it is told (not one per host CPU) with the
    descriptors 1024 proxied connections need, every tier has a CPU limit, and the db's pids limit
    leaves room for a thread per allowed connection."""
    def nginx():
        front = cid("front")
        env = dict(v.split("=", 1) for v in inspect(front)["Config"]["Env"] or [])
        want = int(env["NGINX_WORKER_PROCESSES"])
        rows = docker("top", front, "-eo", "pid,args").stdout.splitlines()[1:]
        workers = [int(r.split()[0]) for r in rows if "nginx: worker process" in r]
        assert len(workers) == want, f"{len(workers)} nginx workers, NGINX_WORKER_PROCESSES={want}"
        with open(f"/proc/{workers[0]}/limits", encoding="utf-8") as f:
            nofile = [ln.split()[3:5] for ln in f if ln.startswith("Max open files")][0]
        assert nofile == ["4096", "4096"], f"nginx worker open-file limit {nofile}"

    def cpus():
        for svc in SERVICES:
            nano = inspect(cid(svc))["HostConfig"].get("NanoCpus") or 0
            assert nano > 0, f"{svc} has no CPU limit"

    def db_pids():
        db = cid("db")
        pids = inspect(db)["HostConfig"]["PidsLimit"]
        conns = int(docker("exec", db, "mariadb", "--batch", "--skip-column-names",
                           "-e", "SELECT @@max_connections").stdout.strip())
        threads = len(host_pids(db))
        log(f"db: max_connections {conns}, pids_limit {pids}, processes now {threads}")
        assert pids >= conns + 64, f"pids_limit {pids} leaves no room for {conns} connection threads"

    check("limits: nginx runs NGINX_WORKER_PROCESSES workers with 4096 open files each", nginx)
    check("limits: front, api and db each have a CPU limit", cpus)
    check("limits: the db's pids_limit exceeds max_connections with room for the server's own threads", db_pids)


def check_rotation():
    """scripts/rotate-secret.sh under a continuous GET load (100/s): each secret changes where it is
    checked and in its file, the api rolls onto it, and not one request fails."""
    db = cid("db")

    def login(account, password, socket_uid=None):
        """Whether MariaDB takes the password: the app account over TCP (the api's path); root on the
        socket as a uid that is not the socket's mysql user (so only the password can let it in)."""
        where = ["--protocol=tcp", "--host=127.0.0.1"] if socket_uid is None else ["--protocol=socket"]
        user = ["-u", socket_uid] if socket_uid else []
        proc = subprocess.run(["docker", "exec", "-i", *user, db, "mariadb", "--defaults-extra-file=/dev/stdin",
                               *where, f"--user={account}", "-e", "SELECT 1"],
                              input=f'[client]\npassword="{password}"\n', capture_output=True, text=True, timeout=30)
        return proc.returncode == 0

    def read(name):
        with open(os.path.join(SECRETS_DIR, name), encoding="utf-8") as f:
            return f.read().strip()

    def rotate_under_load(name):
        with checks.Load(PORT, "/items", rate=100.0, threads=4, max_seconds=150) as load:
            wait_for(lambda: load.total > 100, 10)
            t0 = time.monotonic()
            proc = run([os.path.join(REPO, "scripts", "rotate-secret.sh"), name], timeout=300)
            took = time.monotonic() - t0
            time.sleep(2)  # past nginx's resolver validity: requests reach only the new api
        log(f"rotate-secret.sh {name} in {took:.1f} s; under load: {load.summary()}")
        for line in proc.stderr.splitlines()[-3:]:
            log(line)
        return load

    def rotated(name, under_load=True):
        """Rotates NAME: (old secret, new secret, the Load or None); the file must have changed."""
        old = SECRETS[name]
        load = None
        if under_load:
            load = rotate_under_load(name)
        else:
            run([os.path.join(REPO, "scripts", "rotate-secret.sh"), name], timeout=120)
        new = read(name)
        assert new != old, f"{name}: the file did not change"
        SECRETS[name] = new
        return old, new, load

    def sockets():
        """The api's sockets as the front sees them (API_TRANSPORT=unix): after a rotation the new
        api's backup socket fcgi-next.sock has been renamed over fcgi.sock."""
        out = docker("exec", cid("front"), "/usr/bin/busybox", "ls", "/run/items-api").stdout
        return sorted(out.split())

    def db_password():
        old, new, load = rotated("db_password")
        assert sockets() == ["fcgi.sock"], f"the api's sockets after the rotation: {sockets()}"
        assert login("items", new), "MariaDB refuses the new password"
        assert not login("items", old), "MariaDB still takes the old password"
        assert load.total > 300, f"only {load.total} requests"
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"
        r = request("GET", "/status")
        assert r.status == 200 and json.loads(r.body)["database_connection"] == "OK", r.body[:200]

    def api_token():
        old, new, load = rotated("api_token")
        assert sockets() == ["fcgi.sock"], f"the api's sockets after the rotation: {sockets()}"
        post = lambda token: request("POST", "/items", {"name": "rotated"}, {"Authorization": f"Bearer {token}"})  # noqa: E731
        created = post(new)
        assert created.status == 201, f"the new token: {created.status}"
        request("DELETE", f"/items/{json.loads(created.body)['id']}", headers=auth())
        assert post(old).status == 401, "the old token still works"
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {dict(load.outcomes)}"

    def root_password():
        old, new, _ = rotated("db_root_password", under_load=False)
        assert login("root", new, "10002:10000"), "root refuses the new password"
        assert not login("root", old, "10002:10000"), "root still takes the old password"

    check("rotation: db_password changed in MariaDB (old refused) and in its file, api rolled (unix: the new "
          "one on the backup socket, renamed over fcgi.sock), zero failed requests under load", db_password)
    check("rotation: api_token changed, api rolled, new token 201, old 401, zero failed requests under load",
          api_token)
    check("rotation: db_root_password changed in MariaDB (root on the socket) and in its file", root_password)


# --- big pages through the deployment ----------------------------------------------------------------


def mariadb(sql, timeout=120):
    """Runs SQL in the application database as the db container's local admin (unix_socket)."""
    out = docker("exec", cid("db"), "mariadb", "--batch", "--skip-column-names", "items", "-e", sql,
                 timeout=timeout).stdout
    return [line.split("\t") for line in out.splitlines()]


def cgroup_memory(container):
    """(current, peak or None, limit) in bytes from the container's memory cgroup (v2 or v1)."""
    pid = inspect(container)["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        entries = [line.rstrip("\n").split(":", 2) for line in f]
    for hier, controllers, path in entries:
        if hier == "0" and controllers == "":
            base = "/sys/fs/cgroup" + path
            names = ("memory.current", "memory.peak", "memory.max")
            break
        if "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory" + path
            names = ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes")
            break
    else:
        raise AssertionError(f"no memory cgroup for pid {pid}")

    def read(name):
        try:
            with open(os.path.join(base, name), encoding="ascii") as f:
                text = f.read().strip()
        except (FileNotFoundError, PermissionError):
            return None
        return None if text == "max" else int(text)

    return read(names[0]), read(names[1]), read(names[2])


class MemorySampler:
    """Highest memory.current of each container, sampled every 50 ms while the block runs (bounded
    by the block; a failing read just stops the sampling of that container)."""

    def __init__(self, containers):
        self.containers = containers
        self.peak = {c: 0 for c in containers}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        paths = {}
        for c in self.containers:
            try:
                cur, _, _ = cgroup_memory(c)
                self.peak[c] = cur or 0
                paths[c] = c
            except Exception:  # noqa: BLE001 - no sampling for this container
                pass
        while not self.stop_event.wait(0.05):
            for c in list(paths):
                try:
                    cur, _, _ = cgroup_memory(c)
                except Exception:  # noqa: BLE001
                    del paths[c]
                    continue
                self.peak[c] = max(self.peak[c], cur or 0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)
        return False


def mib(n):
    return f"{n / 1024 / 1024:.1f} MiB" if n is not None else "?"


def check_big_pages():
    api, front, db = cid("api"), cid("front"), cid("db")
    state = {}

    def insert():
        t0 = time.monotonic()
        mariadb(f"DELETE FROM items WHERE name LIKE '{BIG_PREFIX}%'")
        # A recursive CTE numbers the rows (no dependency on the SEQUENCE engine). CHAR(1) is escaped
        # as \\u0001 in JSON: 6 bytes out for each byte stored, ~390 KB per item.
        mariadb(
            "SET SESSION max_recursive_iterations = 100000; "
            "INSERT INTO items (name, description) "
            f"WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BIG_ITEMS}) "
            f"SELECT CONCAT('{BIG_PREFIX}', i), REPEAT(CHAR(1 USING utf8mb4), 65535) FROM n",
            timeout=300)
        rows = mariadb(f"SELECT COUNT(*), MIN(LENGTH(description)) FROM items WHERE name LIKE '{BIG_PREFIX}%'")
        assert rows and int(rows[0][0]) == BIG_ITEMS and int(rows[0][1]) == 65535, rows
        state["ids"] = [int(r[0]) for r in mariadb("SELECT id FROM items ORDER BY id LIMIT 1000")]
        state["big"] = {int(r[0]) for r in mariadb(f"SELECT id FROM items WHERE name LIKE '{BIG_PREFIX}%'")}
        log(f"inserted {BIG_ITEMS} items of 65535 control characters with SQL in {time.monotonic() - t0:.1f} s; "
            f"the first page of 1000 holds {len(state['ids'])} items, {len(state['big'] & set(state['ids']))} of them big")

    def concurrent():
        since = str(int(time.time()) - 1)
        results = [None] * BIG_CLIENTS

        def fetch(k):
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
                try:
                    conn.request("GET", "/items?limit=1000")
                    resp = conn.getresponse()
                    body = resp.read()
                    results[k] = (resp.status, {h.lower(): v for h, v in resp.getheaders()}, body,
                                  time.monotonic() - t0, None)
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                results[k] = (None, {}, b"", time.monotonic() - t0, f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=fetch, args=(k,), daemon=True) for k in range(BIG_CLIENTS)]
        with MemorySampler([api, front, db]) as mem:
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            took = time.monotonic() - t0
        state["mem"] = mem.peak
        assert all(r is not None for r in results), "a request did not finish within 180 s"
        sizes = [len(r[2]) for r in results]
        log(f"{BIG_CLIENTS} concurrent GET /items?limit=1000 in {took:.1f} s: bodies {sizes} bytes "
            f"({sum(sizes) / 1024 / 1024:.0f} MiB in all, {sum(sizes) / 1024 / 1024 / took:.0f} MiB/s), "
            f"each {', '.join(f'{r[3]:.1f} s' for r in results)}; "
            f"Transfer-Encoding {[r[1].get('transfer-encoding') for r in results]}")
        for k, (status, headers, body, _, error) in enumerate(results):
            assert error is None, f"request {k}: {error}"
            assert status == 200, f"request {k}: HTTP {status} {body[:200]!r}"
            if headers.get("content-length") is not None:
                assert int(headers["content-length"]) == len(body), f"request {k}: Content-Length {headers['content-length']}, body {len(body)}"
            try:
                items = json.loads(body)
            except ValueError as exc:
                raise AssertionError(f"request {k}: the body ({len(body)} bytes) is not complete JSON: {exc}; "
                                     f"it ends {body[-80:]!r}") from None
            got = [i["id"] for i in items]
            assert got == state["ids"], f"request {k}: {len(got)} items, ids differ from the database's {len(state['ids'])}"
            for i in items:
                if i["id"] in state["big"]:
                    d = i["description"]
                    assert len(d) == 65535 and d.count("\x01") == 65535, f"request {k}: item {i['id']} description damaged"
            del items
        results.clear()
        logs = docker("logs", "--since", since, front)
        bad = [ln for ln in (logs.stdout + logs.stderr).splitlines()
               if any(s in ln for s in ("pwritev", "prematurely closed", "temporary file", "[warn]", "[error]",
                                         "[crit]", "[alert]", "[emerg]"))]
        assert not bad, f"the front's error log: {bad[:5]}"
        logs = docker("logs", "--since", since, api)
        cut = [ln for ln in (logs.stdout + logs.stderr).splitlines() if "page cut" in ln]
        assert not cut, f"the api cut pages: {cut[:5]}"

    def memory():
        assert "mem" in state, "no sample: the concurrent reads did not run"
        cur, peak, limit = cgroup_memory(api)
        sampled = state["mem"][api]
        log(f"memory during the big pages (highest memory.current sampled every 50 ms): api {mib(sampled)}, "
            f"front {mib(state['mem'][front])}, db {mib(state['mem'][db])}; api cgroup peak since its start "
            f"{mib(peak)}, limit {mib(limit)}")
        assert limit, "the api has no memory limit"
        top = max(sampled, peak or 0)
        assert top < limit / 4, f"the api reached {mib(top)} of its {mib(limit)} limit"

    def cleanup():
        mariadb(f"DELETE FROM items WHERE name LIKE '{BIG_PREFIX}%'")
        left = mariadb(f"SELECT COUNT(*) FROM items WHERE name LIKE '{BIG_PREFIX}%'")
        assert left == [["0"]], left
        assert request("GET", "/status").status == 200, "/status not 200 after the big pages"

    try:
        if check(f"big pages: {BIG_ITEMS} items of 64 KiB of control characters inserted with SQL", insert):
            check(f"big pages: {BIG_CLIENTS} concurrent GET /items?limit=1000 through port {PORT}: all 200, "
                  "every body complete JSON with the database's ids, no spooling/cut in the logs", concurrent)
            check("big pages: the api's memory stays far below its limit (under a quarter)", memory)
    finally:
        check("big pages: the big items are deleted again", cleanup)


def check_secrets():
    values = [v for v in SECRETS.values() if v]
    containers = [cid(s) for s in SERVICES]

    def not_in_inspect():
        for c in containers:
            text = docker("inspect", c).stdout
            image = inspect(c)["Image"]
            text += docker("image", "inspect", image).stdout
            text += docker("history", "--no-trunc", image).stdout
            for v in values:
                assert v not in text, f"a secret appears in docker inspect/history of {c[:12]}"
            env = inspect(c)["Config"]["Env"] or []
            for var in env:
                name = var.split("=", 1)[0]
                assert name not in ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "API_TOKEN"), f"{name} in env"

    def not_in_processes():
        seen = 0
        for c in containers:
            for pid in host_pids(c):
                cmd = proc_cmdline(pid)
                seen += 1
                for v in values:
                    assert v not in cmd, f"a secret is on the command line of pid {pid}"
                if os.geteuid() == 0:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        environ = f.read().decode("utf-8", "replace")
                    for v in values:
                        assert v not in environ, f"a secret is in the environment of pid {pid}"
        assert seen >= 3, "no process inspected"

    def mounted():
        for svc, names in (("db", ["db_root_password", "db_password"]), ("api", ["db_password", "api_token"])):
            mounts = {m["Destination"] for m in inspect(cid(svc))["Mounts"]}
            for n in names:
                assert f"/run/secrets/{n}" in mounts, f"{svc} lacks /run/secrets/{n}"
        mounts = {m["Destination"] for m in inspect(cid("front"))["Mounts"]}
        front_secrets = sorted(m for m in mounts if m.startswith("/run/secrets"))
        assert front_secrets == ["/run/secrets/tls_cert", "/run/secrets/tls_key"], f"front gets {front_secrets}"

    check("secrets: in no docker inspect / image history / container environment", not_in_inspect)
    check("secrets: in no process's command line or environment", not_in_processes)
    check("secrets: mounted under /run/secrets only where needed", mounted)


def check_worker_replaced():
    api = cid("api")

    def replaced():
        before = worker_pids(api)
        assert before, "no items-fcgi worker found"
        victim = before[0]
        ns_pid = proc_status(victim)["NSpid"].split()[-1]
        docker("exec", api, "sh", "-c", f"kill -9 {ns_pid}")
        ok = wait_for(lambda: victim not in worker_pids(api) and len(worker_pids(api)) == len(before), 10)
        assert ok, f"workers before {before}, after {worker_pids(api)}"
        assert wait_for(lambda: try_status() == 200, 5) , "the pool does not answer 200 after the kill"

    check("api: a killed worker (kill -9) is replaced, the pool keeps answering", replaced)


def healthcheck(container):
    """Runs the container's own healthcheck command in it: (exit status, output)."""
    test = inspect(container)["Config"]["Healthcheck"]["Test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    proc = docker("exec", container, *argv, check_rc=False, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def health(container):
    return inspect(container)["State"].get("Health", {}).get("Status")


def check_schema_gate():
    """The api's health follows the schema version: a worker that finds the schema older than it
    needs answers 503 with its own message, and the healthcheck fails on it (a deploy that forgot the
    migrations stops, Swarm rolls back); the schema back, healthy again without a restart."""
    api = cid("api")
    saved = {}

    def outdated():
        version, name, checksum = mariadb(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version DESC LIMIT 1")[0]
        saved["row"] = (int(version), name, checksum)
        mariadb(f"DELETE FROM schema_migrations WHERE version = {int(version)}")
        # The workers check the schema when they connect: end their connections from the server.
        for (conn_id,) in mariadb("SELECT id FROM information_schema.PROCESSLIST WHERE user = 'items'"):
            mariadb(f"KILL CONNECTION {int(conn_id)}")
        body = {}

        def gated():
            r = request("GET", "/status")
            body.update(status=r.status, json=json.loads(r.body or b"{}"))
            return r.status == 503 and body["json"].get("message", "").startswith("database schema outdated")
        assert wait_for(gated, 10), f"/status after the schema went back: {body}"
        assert request("GET", "/items").status == 503, "/items is not 503 on an outdated schema"
        code, out = healthcheck(api)
        assert code != 0 and "database schema outdated" in out, f"the api healthcheck passed: exit {code}, {out!r}"
        assert wait_for(lambda: health(api) == "unhealthy", 30), f"docker still says the api is {health(api)}"
        log(f"outdated schema: /status {body['status']} {body['json'].get('message')!r}; api healthcheck exit {code}")

    def back():
        version, name, checksum = saved["row"]
        mariadb(f"INSERT INTO schema_migrations (version, name, checksum) VALUES ({version}, '{name}', '{checksum}')")
        assert wait_for(lambda: try_status() == 200, 10), f"/status {try_status()} after the schema came back"
        code, out = healthcheck(api)
        assert code == 0, f"the api healthcheck fails: exit {code}, {out!r}"
        assert wait_for(lambda: health(api) == "healthy", 30), f"docker says the api is {health(api)}"

    check("schema gate: the workers answer 503 'database schema outdated' and the api healthcheck fails on it",
          outdated)
    check("schema gate: the schema back, 200 and healthy again without a restart", back)


def check_db_restart():
    api, db = cid("api"), cid("db")
    before = inspect(api)
    seen = {}

    def outage():
        docker("stop", "-t", "30", db, timeout=60)
        seen["down"] = wait_for(lambda: try_status() == 503 and request("GET", "/items").status == 503, 10)
        assert seen["down"], f"/status answers {try_status()} with the db stopped (want 503)"
        code, out = healthcheck(api)
        assert code == 0, f"a database outage made the api unhealthy: exit {code}, {out!r}"

    def recovery():
        docker("start", db)
        t0 = time.monotonic()
        ok = wait_for(lambda: try_status() == 200, 60)
        assert ok, f"/status still {try_status()} 60 s after the db restarted"
        assert request("GET", "/items").status == 200, "/items not 200 after the restart"
        log(f"api served again {time.monotonic() - t0:.1f} s after `docker start db`")
        after = inspect(api)
        assert after["State"]["StartedAt"] == before["State"]["StartedAt"], "the api container was restarted"
        assert after["RestartCount"] == before["RestartCount"], "the api container was restarted"

    check("db restart: the api answers 503 while the db is down, and stays healthy", outage)
    check("db restart: 200 again after, without restarting the api", recovery)


def check_db_crash_recovery():
    """The db killed (SIGKILL: a lost node, a power cut) while writes are being acknowledged. With
    the binary log on, an acknowledged write may be only prepared in InnoDB, its commit recorded in
    the log: crash recovery commits it from there, which the entrypoint's temporary server must let
    it do (it refused to start, for good, when it ran without the log)."""
    def crash():
        db = cid("db")
        acked = []
        stop = threading.Event()

        def writer(k):
            for n in range(2000):
                if stop.is_set():
                    return
                try:
                    r = request("POST", "/items", {"name": f"crash {k}-{n}", "description": "killed db"}, auth())
                except OSError:
                    continue
                if r.status == 201:
                    acked.append(r.json()["id"])
                elif r.status == 429:
                    time.sleep(0.05)

        writers = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(2)]
        for t in writers:
            t.start()
        wait_for(lambda: len(acked) >= 30, 30)
        docker("kill", "-s", "KILL", db)
        time.sleep(1)
        stop.set()
        for t in writers:
            t.join(10)
        assert len(acked) >= 30, f"only {len(acked)} writes acknowledged before the kill"
        t0 = time.monotonic()
        # The restart policy (unless-stopped) may have started it again already.
        if not inspect(db)["State"]["Running"]:
            docker("start", db)
        ok = wait_for(lambda: try_status() == 200, 90)
        took = time.monotonic() - t0
        logs = docker("logs", "--tail", "200", db, check_rc=False)
        text = logs.stdout + logs.stderr
        assert ok, f"the db did not serve again within 90 s of its restart: {text[-1500:]}"
        missing = [i for i in acked if request("GET", f"/items/{i}").status != 200]
        prepared = re.findall(r"(\d+) transactions? in prepared state after recovery", text)
        checks.figure(f"db killed after {len(acked)} acknowledged writes (2 writers): serving again {took:.1f} s "
                      f"after the restart; transactions only prepared in InnoDB at the kill: {(prepared or ['0'])[-1]}")
        assert not missing, f"acknowledged writes lost in the crash: {missing}"

    check("db crash: killed (SIGKILL) during writes, it starts again and every acknowledged write is there",
          crash)


def check_graceful_stop_and_persistence():
    state = {}

    def create():
        r = request("POST", "/items", {"name": "survives down/up", "description": "persistance"}, auth())
        assert r.status == 201, f"HTTP {r.status}"
        state["id"] = r.json()["id"]

    def graceful():
        ids = {svc: cid(svc) for svc in SERVICES}
        t0 = time.monotonic()
        for svc in ("front", "api", "db"):
            docker("stop", "-t", "30", ids[svc], timeout=60)
        took = time.monotonic() - t0
        codes = {svc: inspect(c)["State"]["ExitCode"] for svc, c in ids.items()}
        assert all(code == 0 for code in codes.values()), f"exit codes {codes} (137 = killed after the grace period)"
        log(f"front, api, db stopped on their stop signal in {took:.1f} s, exit codes {codes}")

    def down_up():
        deploy("--down", timeout=180)
        t0 = time.monotonic()
        deploy("--no-build", "--timeout", "300")
        log(f"redeployed (no build) in {time.monotonic() - t0:.1f} s")
        r = request("GET", f"/items/{state['id']}")
        assert r.status == 200 and r.json()["name"] == "survives down/up", f"HTTP {r.status} {r.body[:200]!r}"

    check("persistence: create an item", create)
    check("stop: every tier exits 0 on its stop signal within the grace period", graceful)
    if "id" in state:
        check("persistence: the item survives down (without -v) and up", down_up)


def ids():
    return sorted(i["id"] for i in request("GET", "/items?limit=1000").json())


def check_backup_restore():
    tmp = tempfile.mkdtemp(prefix="items-e2e-backup.")
    dump = os.path.join(tmp, "dump.sql.gz")
    state = {}

    def backup():
        state["ids"] = ids()
        run([os.path.join(REPO, "scripts", "backup.sh"), dump], timeout=120)
        assert os.path.getsize(dump) > 0, "empty dump"
        assert (os.stat(dump).st_mode & 0o077) == 0, "the dump is readable by others"

    def restore():
        r = request("POST", "/items", {"name": "after the backup"}, auth())
        assert r.status == 201, f"HTTP {r.status}"
        first = state["ids"][0]
        assert request("DELETE", f"/items/{first}", headers=auth()).status == 204, "delete failed"
        assert ids() != state["ids"], "the data did not change"
        run([os.path.join(REPO, "scripts", "restore.sh"), "--yes", dump], timeout=300,
            extra_env={"BACKUP_DIR": tmp})  # its pre-restore backup: not into /var/backups
        assert wait_for(lambda: try_status() == 200, 30), "the stack does not serve after the restore"
        assert ids() == state["ids"], f"after restore {ids()} != at backup {state['ids']}"
        r = request("GET", f"/items/{first}")
        assert r.status == 200, "a deleted item did not come back"

    try:
        check("backup: scripts/backup.sh writes a complete 0600 dump", backup)
        if "ids" in state:
            check("restore: scripts/restore.sh brings back exactly the backed-up items", restore)
        # A restore that cannot hurt: backup first, a side database, one RENAME, the api left
        # stopped on a failure after its stop (ctest/compose/restore_checks.py).
        restore_checks.run_all({"repo": REPO, "env": {**env(), "BACKUP_DIR": tmp}, "port": PORT,
                                "api_token": SECRETS["api_token"]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_backup_schedule():
    """Backups land outside the checkout by default, --keep N keeps the N newest, and the shipped
    systemd units (a daily timer) are valid for systemd."""
    tmp = tempfile.mkdtemp(prefix="items-e2e-keep.")
    made = []

    def default_outside_checkout():
        proc = run([os.path.join(REPO, "scripts", "backup.sh")], timeout=120)
        path = re.search(r"^\[backup\] (\S+) \(", proc.stderr, re.M).group(1)
        made.append(path)
        assert not os.path.realpath(path).startswith(os.path.realpath(REPO) + os.sep), f"{path} is in the checkout"
        assert os.path.dirname(path) == "/var/backups/items", path
        assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0, "the backup directory is open to others"

    def retention():
        names = []
        for _ in range(3):
            second = time.strftime("%S")
            assert wait_for(lambda: time.strftime("%S") != second, 2), "the clock did not move"
            proc = run([os.path.join(REPO, "scripts", "backup.sh"), "--keep", "2"], timeout=120,
                       extra_env={"BACKUP_DIR": tmp})
            names.append(os.path.basename(re.search(r"^\[backup\] (\S+) \(", proc.stderr, re.M).group(1)))
        left = sorted(n for n in os.listdir(tmp) if n.endswith(".sql.gz"))
        assert left == sorted(names)[1:], f"kept {left} of {names}"

    def units():
        assert shutil.which("systemd-analyze"), "systemd-analyze is missing (Debian package systemd)"
        units_dir = os.path.join(tmp, "units")
        os.makedirs(units_dir)
        for name in ("items-backup.service", "items-backup.timer"):
            with open(os.path.join(REPO, "scripts", "systemd", name), encoding="utf-8") as f:
                text = f.read().replace("/opt/items", REPO)
            with open(os.path.join(units_dir, name), "w", encoding="utf-8") as f:
                f.write(text)
        proc = subprocess.run(["systemd-analyze", "verify", "items-backup.service", "items-backup.timer"],
                              cwd=units_dir, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and not proc.stderr.strip(), f"{proc.returncode}: {proc.stderr}"

    try:
        check("backup: by default into /var/backups/items (0700), outside the checkout", default_outside_checkout)
        check("backup: --keep 2 after three dumps leaves the two newest", retention)
        check("backup: the shipped systemd service and daily timer pass systemd-analyze verify", units)
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                os.remove(path)
        shutil.rmtree(tmp, ignore_errors=True)


def check_point_in_time_recovery():
    """The db keeps a binary log (7 days) and a dump records its position in it: a dump restored,
    then the log replayed from that position up to just before the restore, brings back a write
    made after the dump (docs/deployment.md, "Point-in-time recovery")."""
    tmp = tempfile.mkdtemp(prefix="items-e2e-pitr.")
    dump = os.path.join(tmp, "dump.sql.gz")
    state = {}

    def binlog_on():
        log_bin = mariadb("SELECT @@log_bin")[0][0]
        expire = mariadb("SELECT @@binlog_expire_logs_seconds")[0][0]
        assert log_bin == "1", f"log_bin = {log_bin}"
        assert int(expire) == 7 * 86400, f"binlog_expire_logs_seconds = {expire}"

    def replayed():
        run([os.path.join(REPO, "scripts", "backup.sh"), dump], timeout=120)
        text = subprocess.run(["gzip", "-dc", dump], capture_output=True, check=True).stdout.decode()
        m = re.search(r"^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);", text, re.M)
        assert m, "the dump records no binary log position"
        r = request("POST", "/items", {"name": "written after the dump"}, auth())
        assert r.status == 201, f"HTTP {r.status}"
        item = r.json()
        # The end of what to replay: just before the restore writes to the log itself.
        (stop_file, stop_pos, *_), = mariadb("SHOW MASTER STATUS")
        run([os.path.join(REPO, "scripts", "restore.sh"), "--yes", dump], timeout=300,
            extra_env={"BACKUP_DIR": tmp})  # its pre-restore backup: not into /var/backups
        assert wait_for(lambda: try_status() == 200, 30), "the stack does not serve after the restore"
        assert request("GET", f"/items/{item['id']}").status == 404, "the restore kept the later write"
        logs = [row[0] for row in mariadb("SHOW BINARY LOGS")]
        files = logs[logs.index(m.group(1)):logs.index(stop_file) + 1]
        docker("exec", cid("db"), "sh", "-c",
               f"cd /var/lib/mysql && mariadb-binlog --start-position={m.group(2)} --stop-position={stop_pos} "
               f"{' '.join(files)} | mariadb", timeout=120)
        r = request("GET", f"/items/{item['id']}")
        assert r.status == 200 and r.json() == item, f"after the replay: HTTP {r.status} {r.body[:200]!r}"
        log(f"point-in-time recovery: the dump at {m.group(1)}:{m.group(2)}, the log replayed to "
            f"{stop_file}:{stop_pos}; item {item['id']} written after the dump is back, identical")

    try:
        check("binlog: the db keeps a binary log, expiring after 7 days", binlog_on)
        check("point-in-time: a dump restored, then the binary log replayed from its recorded position, "
              "brings back a write made after the dump", replayed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def leftovers():
    found = {}
    for kind in ("container", "network", "volume"):
        args = [kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        if kind == "container":
            args = ["ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        out = docker(*args).stdout.split()
        if out:
            found[kind] = out
    return found


def check_secrets_mismatch():
    """A data volume keeps the passwords of its first start: secrets generated again (a new checkout,
    a deleted ./secrets) must stop deploy.sh before the api starts looping on "Access denied", with a
    message naming the fix; the original secrets back, the deploy goes through."""
    path = os.path.join(SECRETS_DIR, "db_password")
    with open(path, encoding="utf-8") as f:
        original = f.read()

    def refused():
        api_before = cid("api")
        with open(path, "w", encoding="utf-8") as f:  # keeps the file's owner and mode
            f.write(os.urandom(16).hex())
        try:
            proc = run([os.path.join(REPO, "scripts", "deploy.sh"), "--no-build"], timeout=DEPLOY_TIMEOUT,
                       check_rc=False)
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        assert proc.returncode != 0, "deploy.sh went on with secrets the database refuses"
        assert "was initialised with other secrets" in proc.stderr and "--down --purge" in proc.stderr, \
            proc.stderr[-600:]
        assert cid("api") == api_before, "the api was replaced despite the refused secrets"
        assert try_status() == 200, f"/status {try_status()} after the refused deploy"

    def accepted():
        deploy("--no-build")
        assert try_status() == 200, f"/status {try_status()}"

    check("secrets: secrets the data volume was not made with stop deploy.sh before the api starts, "
          "naming the fix", refused)
    check("secrets: with the original secrets back, deploy.sh goes through", accepted)


def check_plain_compose():
    """`scripts/secrets.sh && docker compose up -d` in a checkout starts the stack, and plain
    `docker compose ps` there finds it: the project name and the settings come from .env (made
    from .env.example), as for scripts/deploy.sh. In a clone of its own, project items-plain, on a
    loopback port and subnets of its own."""
    work = tempfile.mkdtemp(prefix="items-plain.")
    clone = os.path.join(work, "checkout")
    compose = checks.plain_compose()
    project = "items-plain"

    def call(args, timeout=300, check_rc=True):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "SECRETS_DIR", "HTTP_", "HTTPS_"))}
        proc = subprocess.run(args, cwd=clone, env=e, capture_output=True, text=True, timeout=timeout)
        if check_rc and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
        return proc

    def started():
        subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True, timeout=120)
        port = checks.free_port(range(18600, 18620))
        https_port = checks.free_port(range(18620, 18640))
        assert port and https_port, "18600-18639 are all taken"
        with open(os.path.join(REPO, ".env.example"), encoding="utf-8") as f:
            env_file = f.read()
        assert "\nCOMPOSE_PROJECT_NAME=items\n" in env_file, ".env.example names no compose project"
        overrides = {"COMPOSE_PROJECT_NAME": project, "HTTP_PORT": str(port), "HTTPS_PORT": str(https_port),
                     "HTTP_BIND": "127.0.0.1",
                     "EDGE_SUBNET": "172.31.246.0/24", "FRONT_EDGE_IP": "172.31.246.20",
                     "DATA_SUBNET": "172.31.247.0/24", "PUBLIC_SUBNET": "172.31.245.0/24"}
        overrides.update(checks.monitoring_networks(overrides))
        lines = [ln for ln in env_file.splitlines() if ln.split("=", 1)[0] not in overrides]
        with open(os.path.join(clone, ".env"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines + [f"{k}={v}" for k, v in overrides.items()]) + "\n")
        call(["scripts/secrets.sh"])
        call(compose + ["up", "-d"], timeout=600)
        ok = wait_for(lambda: checks.try_status(port) == 200, 120)
        assert ok, f"/status through 127.0.0.1:{port} is {checks.try_status(port)} 120 s after up -d"
        ps = call(compose + ["ps", "-q"]).stdout.split()
        assert len(ps) == 3, f"plain `{' '.join(compose)} ps` lists {ps}"
        labels = {docker("inspect", "-f", '{{index .Config.Labels "com.docker.compose.project"}}', c).stdout.strip()
                  for c in ps}
        assert labels == {project}, labels
        log(f"plain `{' '.join(compose)} up -d` in a clone: project {project} serving on 127.0.0.1:{port}")

    try:
        check("plain compose: `scripts/secrets.sh && docker compose up -d` in a checkout starts the stack, "
              "and `docker compose ps` there finds it (project from .env)", started)
    finally:
        if os.path.isdir(clone):
            call(compose + ["down", "-v", "--remove-orphans"], timeout=180, check_rc=False)
        shutil.rmtree(work, ignore_errors=True)


def check_dirty_push_refused():
    """With REGISTRY set, a checkout with uncommitted changes is refused before anything is built or
    pushed: a commit tag must name that commit's bytes. In a clone of its own, made dirty."""
    work = tempfile.mkdtemp(prefix="items-dirty.")
    clone = os.path.join(work, "checkout")

    def refused():
        subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True, timeout=120)
        with open(os.path.join(clone, "nginx", "html", "index.html"), "a", encoding="utf-8") as f:
            f.write("<!-- not committed -->\n")
        proc = subprocess.run([os.path.join(clone, "scripts", "deploy.sh")], cwd=clone, capture_output=True,
                              text=True, timeout=300,
                              env={**env(), "REGISTRY": "registry.invalid/items", "COMPOSE_PROJECT_NAME": "items-dirty"})
        assert proc.returncode != 0, "deploy.sh went on with REGISTRY set and a dirty checkout"
        assert "uncommitted changes" in proc.stderr, proc.stderr[-500:]
        # (other suites may build images meanwhile: the log, not the image list, says what it did)
        assert "building the images" not in proc.stderr and "pushing" not in proc.stderr, proc.stderr[-500:]

    try:
        check("push: with REGISTRY set, a dirty checkout is refused before building (no commit tag on other bytes)",
              refused)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_purge():
    def purge():
        deploy("--down", "--purge", timeout=180)
        left = leftovers()
        assert not left, f"left behind: {left}"

    check("down --purge: no container, network or volume of the project remains", purge)


# --- main --------------------------------------------------------------------------------------------


def port_free(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def main():
    global SECRETS_DIR, SECRETS
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    keep = "--keep" in sys.argv[1:]

    SECRETS_DIR = tempfile.mkdtemp(prefix="items-e2e-secrets.")
    SECRETS = {}
    started = time.monotonic()
    try:
        if leftovers():
            log(f"removing leftovers of an earlier run of project {PROJECT}")
            deploy("--down", "--purge", timeout=180)
        if not report(f"ports {PORT} and {HTTPS_PORT} are free for the test",
                      port_free(PORT) and port_free(HTTPS_PORT),
                      f"something listens on 127.0.0.1:{PORT} or :{HTTPS_PORT}: stop it or set E2E_HTTP_PORT, "
                      "E2E_HTTPS_PORT"):
            return finish()

        def deployed():
            t0 = time.monotonic()
            proc = deploy("--timeout", "300")
            log(f"deploy.sh (build included) took {time.monotonic() - t0:.1f} s")
            for line in proc.stderr.splitlines():
                if line.startswith("[deploy] the stack is up"):
                    log(line)

        if not check("deploy: scripts/deploy.sh builds and starts the stack, all healthy, smoke test ok", deployed):
            return finish()
        for name in ("db_root_password", "db_password", "api_token"):
            with open(os.path.join(SECRETS_DIR, name), encoding="utf-8") as f:
                SECRETS[name] = f.read().strip()

        check_contract()
        check_hardening()
        check_db_contract()
        check_network()
        check_unix_transport()
        check_secrets()
        check_quiet_healthchecks()
        check_limits()
        check_front_settings()
        check_tcp_transport()
        check_rotation()
        # HTTPS: protocols, ALPN, the chain, HTTPS_ONLY=1, renewal under load, testssl.sh (tls_checks.py)
        artifacts = os.environ.get("E2E_ARTIFACTS", os.path.join(REPO, "build-test", "logs", "tls"))
        os.makedirs(artifacts, exist_ok=True)
        tls_checks.run_all({"repo": REPO, "env": env(), "port": PORT, "https_port": HTTPS_PORT,
                            "secrets_dir": SECRETS_DIR, "api_token": SECRETS["api_token"], "artifacts": artifacts})
        check_big_pages()
        check_worker_replaced()
        check_schema_gate()
        check_db_restart()
        check_db_crash_recovery()
        check_backup_restore()
        check_point_in_time_recovery()
        check_backup_schedule()
        check_graceful_stop_and_persistence()
        check_secrets_mismatch()
        check_plain_compose()
        check_dirty_push_refused()
        # commit tags, --rollback, the automatic rollback of a failed deploy (rollback_checks.py):
        # last, since they deploy other images into the stack (A is deployed again at their end)
        rollback_checks.run_all({"repo": REPO, "env": env(), "port": PORT})
        if not keep:
            check_purge()
    finally:
        if not keep and leftovers():
            try:
                deploy("--down", "--purge", timeout=180)
            except Exception as exc:  # noqa: BLE001
                log(f"cleanup failed: {exc}")
        shutil.rmtree(SECRETS_DIR, ignore_errors=True)
        log(f"compose end-to-end test took {time.monotonic() - started:.0f} s")
    return finish()


def finish():
    return checks.finish()


SECRETS_DIR = ""
# API_TRANSPORT of every compose run ("": the default of compose.yaml, unix).
TRANSPORT = ""
SECRETS = {}

if __name__ == "__main__":
    sys.exit(main())
