"""What the end-to-end suites (ctest/compose, ctest/swarm) share: reporting
each check as it runs and the closing line "N passed, M failed" that
scripts/test.sh counts, one HTTP request to the stack on loopback, and small
helpers that read a container's processes from the host.

    import checks
    checks.check("front answers", lambda: ...)
    sys.exit(checks.finish())
"""

import collections
import http.client
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time

_counts = {"passed": 0, "failed": 0}


def log(msg):
    print(f"# {msg}", flush=True)


def report(name, ok, detail=""):
    if ok:
        _counts["passed"] += 1
        print(f"ok - {name}", flush=True)
    else:
        _counts["failed"] += 1
        print(f"FAIL - {name}: {detail}", flush=True)
    return ok


def check(name, func):
    """Runs func(); a falsy result, an AssertionError or any exception is a failure."""
    try:
        result = func()
    except AssertionError as exc:
        return report(name, False, str(exc) or "assertion failed")
    except Exception as exc:  # noqa: BLE001 - every error is a failed check, reported
        return report(name, False, f"{type(exc).__name__}: {exc}")
    if result is False:
        return report(name, False, "returned false")
    return report(name, True)


def failed():
    return _counts["failed"]


def keep_requested(doc):
    """The end-to-end suites' command line: --help prints DOC and exits; True when --keep is given
    (leave what the suite made, to look at)."""
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(doc)
        sys.exit(0)
    return "--keep" in sys.argv[1:]


def mark_page(checkout, marker):
    """Edits the page of a checkout (nginx/html/index.html): an HTML comment holding marker before
    </body>, so that a deploy of that tree can be told from another by GET /."""
    path = os.path.join(checkout, "nginx", "html", "index.html")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", f"<!-- {marker} -->\n</body>", 1))


_figures = []


def figure(msg):
    """A measured figure: logged now, and repeated under "# figures:" before the closing line."""
    _figures.append(msg)
    log(msg)


def finish():
    """Prints the figures, then the closing line; the exit status: 0 only if something passed and
    nothing failed."""
    if _figures:
        print("# figures:", flush=True)
        for line in _figures:
            print(f"#   {line}", flush=True)
    print(f"{_counts['passed']} passed, {_counts['failed']} failed", flush=True)
    return 0 if _counts["failed"] == 0 and _counts["passed"] > 0 else 1


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # names in lower case
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())


def http_request(port, method, path, body=None, headers=None, timeout=5):
    """One request to 127.0.0.1:port on a connection of its own; body: JSON-serialisable or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def try_status(port, path="/status"):
    """The status of GET path on 127.0.0.1:port; None when no HTTP answer came (not up yet)."""
    try:
        return http_request(port, "GET", path, timeout=3).status
    except (OSError, http.client.HTTPException):
        return None


def free_port(candidates):
    """The first of candidates that nothing answers on and that can be bound on 127.0.0.1; 0 if none."""
    for port in candidates:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    return 0


# The scrape jobs issue 15 asks for (monitoring/prometheus.yml.in): each must have a target up.
MONITORING_JOBS = ("api", "front", "nginx", "mysqld", "volume", "alertmanager", "prometheus")


def monitoring_networks(networks):
    """MONITORING_SUBNET and MONITORING_OUT_SUBNET for a test stack whose EDGE_SUBNET is
    172.31.X.0/24 (X >= 200): 172.31.(X-100).0/24 and 172.31.(X-200).0/24. docker-compose creates a
    profile's networks even when the profile is off, so two stacks on the defaults would claim the
    same subnets; 172.28-30.0.0/16 are left to docker_gwbridge (scripts/lib/docker.sh)."""
    edge = networks.get("EDGE_SUBNET")
    if not edge:
        return {}
    octet = ipaddress.ip_network(edge).network_address.packed[2]
    assert octet >= 200, f"EDGE_SUBNET {edge}: the test stacks' edge subnets are 172.31.200-255.0/24"
    return {"MONITORING_SUBNET": f"172.31.{octet - 100}.0/24", "MONITORING_OUT_SUBNET": f"172.31.{octet - 200}.0/24"}


def deploy_env(project, port, bind, secrets_dir, networks, drop=(), https_port=443):
    """The environment of a scripts/deploy.sh run of a test's own compose project: this process's,
    less the names in drop, with the project, its ports (HTTP, HTTPS), secrets and networks.
    networks: a dict of the network settings (PUBLIC_SUBNET, EDGE_SUBNET, FRONT_EDGE_IP,
    DATA_SUBNET; API_EDGE_IP for a checkout from before the api's address was Docker's choice)."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(monitoring_networks(networks))
    env.update(networks)
    env.update(COMPOSE_PROJECT_NAME=project, HTTP_PORT=str(port), HTTPS_PORT=str(https_port), HTTP_BIND=bind,
               SECRETS_DIR=secrets_dir)
    return env


def wait_for(predicate, timeout, interval=0.25):
    """Polls predicate until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def proc_status(pid):
    """/proc/PID/status as a dict (Uid, CapEff, ...)."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def proc_statuses(pids):
    """(pid, proc_status(pid)) for each of pids still alive: a short-lived process (a healthcheck's)
    may exit between the listing and the read."""
    found = []
    for pid in pids:
        try:
            found.append((pid, proc_status(pid)))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tcp_listeners(pid):
    """(address, port) of every TCP socket in the LISTEN state in the network namespace of host
    process pid, read from /proc/PID/net/tcp and tcp6 (the api image has no tool to ask from inside)."""
    found = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{name}", encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A = TCP_LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # the kernel prints the address as 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def plain_compose():
    """The compose command a user types: `docker compose` (v2) if it answers, else `docker-compose`."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def stack_from_environment(repo, names, required):
    """The standalone mode of the compose check modules: (env, api_token) of a stack deployed with
    the environment variables NAMES (those set), or None after a message when one of REQUIRED is
    missing. The token: API_TOKEN, else SECRETS_DIR/api_token (SECRETS_DIR relative to REPO)."""
    env = {k: os.environ[k] for k in names if k in os.environ}
    missing = set(required) - env.keys()
    if missing:
        print(f"set {', '.join(sorted(missing))} (the deployed stack's environment)", file=sys.stderr)
        return None
    token = os.environ.get("API_TOKEN")
    if not token:
        secrets = env.get("SECRETS_DIR", "./secrets")
        if not os.path.isabs(secrets):
            secrets = os.path.join(repo, secrets)
        with open(os.path.join(secrets, "api_token"), encoding="utf-8") as f:
            token = f.read().strip()
    return env, token


class ThreadedLoad:
    """A bounded background load on loopback: the threads _targets() lists run for the `with` block
    (or until their own bounds); each request counted ok or failed (and how it failed) under a lock.
    Subclasses say what a thread does."""

    def __init__(self):
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = self.failed = 0
        self.outcomes = collections.Counter()
        self.threads = []
        self.started = self.elapsed = 0.0

    def _targets(self):
        """[(callable, args)], one a thread."""
        raise NotImplementedError

    def _pace(self, due, interval):
        """A thread's fixed rate: waits until its next request is due (unless stopped), and returns
        when that was; a thread that fell behind starts again from now instead of bursting."""
        due += interval
        pause = due - time.monotonic()
        if pause <= 0:
            return time.monotonic()
        self.stop_event.wait(pause)
        return due

    def __enter__(self):
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=f, args=args, daemon=True) for f, args in self._targets()]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(20)
        self.elapsed = time.monotonic() - self.started
        return False

    @property
    def total(self):
        return self.ok + self.failed


class Load(ThreadedLoad):
    """Continuous, bounded GET load on 127.0.0.1:port: `threads` keep-alive connections, `rate`
    requests per second in all, for the `with` block or at most max_seconds. GET is idempotent: nginx
    passes it to another replica when one fails (fastcgi_next_upstream error timeout).
    Counts: ok (200), failed (anything else, by outcome), slow (over 1 s), max_latency."""

    def __init__(self, port, path="/items", rate=100.0, threads=4, max_seconds=150, timeout=10):
        super().__init__()
        self.port, self.path, self.rate, self.clients = port, path, rate, threads
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.slow = 0
        self.max_latency = 0.0

    def _worker(self):
        interval = self.clients / self.rate
        deadline = time.monotonic() + self.max_seconds
        due = time.monotonic()
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            outcome = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                outcome = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            latency = time.monotonic() - t0
            with self.lock:
                self.max_latency = max(self.max_latency, latency)
                if latency > 1.0:
                    self.slow += 1
                if outcome == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.outcomes[outcome] += 1
            due = self._pace(due, interval)
        if conn is not None:
            conn.close()

    def _targets(self):
        return [(self._worker, ())] * self.clients

    def summary(self):
        failures = f" {dict(self.outcomes)}" if self.outcomes else ""
        return (f"{self.total} requests in {self.elapsed:.0f} s, {self.failed} failed{failures}, "
                f"{self.slow} slower than 1 s, slowest {self.max_latency * 1000:.0f} ms")
