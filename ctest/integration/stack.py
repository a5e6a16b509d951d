"""Harness for the integration tests: one real stack (mariadbd, the FastCGI
worker pool, nginx) on free loopback ports, started and stopped through
scripts/run-local.sh exactly as a user would.

    stack = Stack(workers=2, token="secret")
    status, headers, body = stack.request("GET", "/items")
    stack.stop()

Environment knobs (read from the test's own environment):
    ITEMS_FCGI   worker binary to run instead of build/fcgi-app/items-fcgi
                 (passed through to run-local.sh; e.g. an ASan+UBSan build)
    KEEP_TMP=1   keep each stack's RUN_DIR (logs, datadir) after the run
"""

import atexit
import contextlib
import fcntl
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RUN_LOCAL = os.path.join(REPO_ROOT, "scripts", "run-local.sh")

START_TIMEOUT = 90.0    # seconds for `run-local.sh --detach`
STOP_TIMEOUT = 60.0     # seconds for `run-local.sh --stop`
DB_TIMEOUT = 60.0       # seconds for `run-local.sh --db stop|start`
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP exchange
# A worker run alone (no run-local.sh stack): the sanitizers' build under
# scripts/test.sh, else the developer's.
WORKER_BINARY = os.environ.get("ITEMS_FCGI") or os.path.join(
    REPO_ROOT, "build", "fcgi-app", "items-fcgi")
LOG_TAIL_LINES = 40

# Variables of the caller's environment that must not leak into a stack.
_SCRUBBED_ENV = (
    "API_TOKEN", "API_TOKEN_FILE", "NO_TOKEN", "RUN_DIR", "HTTP_PORT",
    "METRICS_PORT", "DB_PORT", "WORKER_DB_PORT", "FCGI_PORT", "FCGI_WORKERS", "DB_HOST",
    "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_PASSWORD_FILE",
    "METRICS_FILE", "FCGI_LISTEN",
)


class StackError(RuntimeError):
    """The stack could not be started or driven; the message has the logs."""


class SanitizerReport(StackError):
    """A worker (or nginx) wrote an ASan/LSan/UBSan report: raised by
    Stack.stop(), once every process has exited; the message has the
    reports."""


class Response:
    """One HTTP exchange. Unpacks as (status, headers, body); headers are
    lower-cased (repeated headers joined with ", "), body is bytes."""

    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        body = self.body[:300]
        return "<Response %d %r %r%s>" % (
            self.status, self.headers, body,
            "..." if len(self.body) > 300 else "")


def run_concurrently(count, func, timeout=60.0):
    """Run func(i) for i in range(count) in `count` threads released
    together; return the results in order (an exception is a result)."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def worker(i):
        try:
            barrier.wait(timeout=timeout)
            results[i] = func(i)
        except Exception as e:  # reported by the caller's assertions
            results[i] = e
    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError("threads still running after %.0f s" % timeout)
    return results


def sql_quote(text):
    """A MariaDB string literal for `text`."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def proc_state(pid):
    """Return the one-letter state of `pid` ('R', 'S', 'Z', ...) or None if
    there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces.
    return stat[stat.rindex(")") + 2]


def alive(pid):
    """True if `pid` exists and is not a zombie."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def wait_until(predicate, timeout, interval=0.05):
    """Poll `predicate` until it returns a true value or `timeout` seconds
    pass; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def require_worker_binary():
    """WORKER_BINARY, or a RuntimeError that says how to get one."""
    if not os.access(WORKER_BINARY, os.X_OK):
        raise RuntimeError("no worker binary at %s: build it (meson compile "
                           "-C build) or set ITEMS_FCGI" % WORKER_BINARY)
    return WORKER_BINARY


def lone_worker_env(settings):
    """The environment of a worker run alone: the sanitizers' options from
    this one, and the given settings. Fails unless WORKER_BINARY exists."""
    require_worker_binary()
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
    env.update(settings)
    return env


def spawn_lone_worker(argv, env, log_path):
    """argv (the worker, or a wrapper of it) on a fresh listening socket on
    127.0.0.1, handed to it as its stdin as spawn-fcgi does; its output goes
    to log_path. Returns (process, the socket's address)."""
    with socket.socket() as listener, open(log_path, "wb") as log:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        proc = subprocess.Popen(argv, stdin=listener, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        return proc, listener.getsockname()


class Stack:
    """A whole stack under its own RUN_DIR on free loopback ports.

    `token`: the API token (generated by run-local.sh when None; read back
    from RUN_DIR/api-token). `no_token=True` starts with writes disabled.
    `env`: extra environment for run-local.sh (e.g. {"TZ": ...}).
    `repo_root`: the checkout whose scripts/run-local.sh starts the stack
    (default: this one). Ports not given in `env` are "auto": run-local.sh
    binds free ones (choosing again when one is taken before its daemon
    binds it) and saves them in RUN_DIR/env, where start() reads them.
    `start=False`: the caller calls start(), e.g. once a proxy knows where
    to find the stack's database (saved_ports())."""

    PORT_NAMES = ("HTTP_PORT", "METRICS_PORT", "DB_PORT", "FCGI_PORT")

    def __init__(self, workers=2, token=None, no_token=False, env=None,
                 repo_root=None, start=True):
        self.repo_root = repo_root or REPO_ROOT
        self.run_local = os.path.join(self.repo_root, "scripts",
                                      "run-local.sh")
        self.workers = workers
        self.no_token = no_token
        self.token = None if no_token else token
        self.tmp = tempfile.mkdtemp(prefix="items-it-")
        # As root the daemons run as other users: they must reach RUN_DIR.
        os.chmod(self.tmp, 0o755)
        self.run_dir = os.path.join(self.tmp, "run")
        self.http_port = self.metrics_port = None
        self.db_port = self.fcgi_port = None
        self.env = self._environment(env or {})
        self.stopped = False
        self.start_output = ""
        atexit.register(self.stop)
        if not start:
            return
        try:
            self.start()
        except BaseException:
            try:
                self.stop()
            except SanitizerReport as e:  # reported, not instead of the cause
                sys.stderr.write("%s\n" % e)
            raise

    # -- life cycle --------------------------------------------------------

    def _environment(self, extra):
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update({
            "RUN_DIR": self.run_dir,
            "FCGI_WORKERS": str(self.workers),
        })
        env.update((name, "auto") for name in self.PORT_NAMES)
        if self.no_token:
            env["NO_TOKEN"] = "1"
        elif self.token is not None:
            env["API_TOKEN"] = self.token
        env.update(extra)
        return env

    def _script(self, args, timeout):
        return subprocess.run(
            [self.run_local] + list(args), env=self.env, cwd=self.repo_root,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=timeout, check=False)

    @contextlib.contextmanager
    def _build_lock(self):
        """Without ITEMS_FCGI, run-local.sh builds the worker in the shared
        build/ directory; serialise those starts so that parallel test files
        do not run two meson/ninja builds in one build directory."""
        if self.env.get("ITEMS_FCGI"):
            yield
            return
        path = os.path.join(tempfile.gettempdir(),
                            "items-it-build-%d.lock" % os.getuid())
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def start(self):
        """Run `run-local.sh --detach`; raise StackError with the logs if the
        stack is not healthy within START_TIMEOUT."""
        if not os.access(self.run_local, os.X_OK):
            raise StackError("%s is missing or not executable"
                             % self.run_local)
        begin = time.monotonic()
        try:
            with self._build_lock():
                proc = self._script(["--detach"], START_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            out = (e.output or b"").decode("utf-8", "replace")
            raise StackError(
                "run-local.sh --detach did not return within %.0f s\n%s\n%s"
                % (START_TIMEOUT, out, self.logs())) from None
        self.start_output = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise StackError(
                "run-local.sh --detach exited %d after %.1f s\n%s\n%s"
                % (proc.returncode, time.monotonic() - begin,
                   self.start_output, self.logs()))
        ports = self.saved_ports()
        (self.http_port, self.metrics_port, self.db_port,
         self.fcgi_port) = (ports[name] for name in self.PORT_NAMES)
        # A restart and --db start reuse these ports, not new ones.
        self.env.update((name, str(ports[name])) for name in self.PORT_NAMES
                        if ports[name] is not None)
        sys.stderr.write("# stack %s on 127.0.0.1: http %s, metrics %s, db %s"
                         "%s\n" % (self.run_dir, self.http_port,
                                   self.metrics_port, self.db_port,
                                   "" if self.fcgi_port is None
                                   else ", fcgi %d" % self.fcgi_port))
        if self.token is None and not self.no_token:
            with open(os.path.join(self.run_dir, "api-token")) as f:
                self.token = f.read().strip()
        r = self.request("GET", "/status")
        if r.status != 200:
            raise StackError("run-local.sh --detach returned but GET /status "
                             "is %r\n%s" % (r, self.logs()))
        self.stopped = False

    def stop(self):
        """Stop everything (always safe to call again); once every process
        has exited, read the sanitizer reports in the logs (LeakSanitizer
        writes when a worker exits, so not before); then remove the RUN_DIR
        unless KEEP_TMP=1. Raises SanitizerReport if there was any."""
        if self.stopped:
            return
        self.stopped = True
        # Before --stop, which removes the pid files.
        pids = self._our_pids()
        try:
            proc = self._script(["--stop"], STOP_TIMEOUT)
            if proc.returncode != 0:
                sys.stderr.write("run-local.sh --stop exited %d:\n%s\n" % (
                    proc.returncode, proc.stdout.decode("utf-8", "replace")))
        except subprocess.TimeoutExpired:
            sys.stderr.write("run-local.sh --stop timed out\n")
        self._reap_leftovers(pids)
        reports = self.sanitizer_reports()
        if os.environ.get("KEEP_TMP") == "1":
            sys.stderr.write("KEEP_TMP=1: kept %s\n" % self.run_dir)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if reports:
            raise SanitizerReport(
                "%d sanitizer report(s) in the logs of the stack in %s%s:\n%s"
                % (len(reports), self.run_dir,
                   "" if os.environ.get("KEEP_TMP") == "1"
                   else " (removed; KEEP_TMP=1 keeps it)",
                   "\n\n".join(reports)))

    def saved_ports(self):
        """The ports run-local.sh chose for this stack, from RUN_DIR/env
        (written before the database starts): {"HTTP_PORT": 20123, ...}."""
        ports = {}
        with open(os.path.join(self.run_dir, "env")) as f:
            for line in f:
                name, _, value = line.strip().partition("=")
                if name.startswith("SAVED_") and name[6:] in self.PORT_NAMES:
                    # FCGI_PORT is unused (so still "auto") on a unix socket.
                    ports[name[6:]] = int(value) if value.isdigit() else None
        return ports

    def saved_db_port(self):
        return self.saved_ports()["DB_PORT"]

    def restart(self):
        """--stop then --detach on the same RUN_DIR and ports."""
        proc = self._script(["--stop"], STOP_TIMEOUT)
        if proc.returncode != 0:
            raise StackError("run-local.sh --stop exited %d\n%s" % (
                proc.returncode, proc.stdout.decode("utf-8", "replace")))
        self.start()

    def _our_process(self, pid):
        """True if `pid` was started for this stack (its command line or
        environment mentions our RUN_DIR): guards against PID reuse."""
        for name in ("cmdline", "environ"):
            try:
                with open("/proc/%d/%s" % (pid, name), "rb") as f:
                    if self.run_dir.encode() in f.read():
                        return True
            except OSError:
                pass
        return False

    def _our_pids(self):
        """The live processes of our pid files and their children (the
        workers, nginx's workers) that are ours."""
        pids = []
        for name in ("nginx", "pool", "mariadb"):
            pid = self._read_pid(name)
            if pid is not None and alive(pid) and self._our_process(pid):
                pids.append(pid)
                pids.extend(p for p in self._children(pid)
                            if self._our_process(p))
        return pids

    def _reap_leftovers(self, pids):
        """Safety net after --stop: TERM (then KILL) any of `pids` (from
        _our_pids() before --stop) still alive, by PID. Reports it, since
        --stop should have. Returns once none of them is alive."""
        pids = [p for p in pids if alive(p) and self._our_process(p)]
        if not pids:
            return
        sys.stderr.write("run-local.sh --stop left processes %s running in "
                         "%s; terminating them\n" % (pids, self.run_dir))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            if wait_until(lambda: not any(alive(p) for p in pids), 10):
                return

    # -- HTTP --------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, port=None,
                timeout=REQUEST_TIMEOUT, chunked=False):
        """One request on a fresh connection to 127.0.0.1 (HTTP_PORT unless
        `port`). `body` may be bytes, str or a JSON-serialisable object.
        A Content-Length is sent whenever there is a body (or, with
        `chunked`, Transfer-Encoding: chunked); no Content-Type is added.
        Returns a Response."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = dict(headers or {})
        if chunked:
            hdrs["Transfer-Encoding"] = "chunked"
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]),
                                                body[i:i + 8192])
                            for i in range(0, len(body or b""), 8192))
            body += b"0\r\n\r\n"
        elif body is not None and not any(k.lower() == "content-length"
                                          for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(
            "127.0.0.1", port or self.http_port, timeout=timeout)
        begin = time.monotonic()
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body:
                # nginx may answer (413) and close before reading it all.
                with contextlib.suppress(BrokenPipeError,
                                         ConnectionResetError):
                    conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            headers_out = {}
            for k, v in resp.getheaders():
                k = k.lower()
                headers_out[k] = (headers_out[k] + ", " + v
                                  if k in headers_out else v)
            return Response(resp.status, headers_out, data,
                            time.monotonic() - begin)
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, port=None,
             timeout=REQUEST_TIMEOUT):
        """Like request() but returns (status, headers, parsed JSON or None
        when the body is empty or not JSON)."""
        r = self.request(method, path, body, headers, port, timeout)
        try:
            data = r.json() if r.body else None
        except ValueError:
            data = None
        return r.status, r.headers, data

    def auth(self, extra=None):
        """Headers for a valid write: bearer token and JSON content type."""
        h = {"Authorization": "Bearer %s" % self.token,
             "Content-Type": "application/json"}
        h.update(extra or {})
        return h

    def create(self, name, description=None):
        """POST an item (must succeed) and return it as parsed JSON."""
        body = {"name": name}
        if description is not None:
            body["description"] = description
        r = self.request("POST", "/items", body, self.auth())
        if r.status != 201:
            raise StackError("POST /items %r failed: %r" % (body, r))
        return r.json()

    def all_items(self):
        """Every item, by walking pages of 1000."""
        items, after = [], 0
        while True:
            r = self.request("GET", "/items?after=%d&limit=1000" % after)
            if r.status != 200:
                raise StackError("GET /items failed: %r" % r)
            page = r.json()
            items.extend(page)
            if len(page) < 1000:
                return items
            after = page[-1]["id"]

    # -- processes ---------------------------------------------------------

    def _read_pid(self, name):
        try:
            with open(os.path.join(self.run_dir, "pids", name + ".pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self, name):
        """PID from RUN_DIR/pids/<name>.pid (mariadb, pool, nginx)."""
        pid = self._read_pid(name)
        if pid is None:
            raise StackError("no pid file for %s in %s" % (name, self.run_dir))
        return pid

    def pool_pid(self):
        return self.pid("pool")

    @staticmethod
    def _children(pid):
        kids = []
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            tasks = None
        if tasks is not None:
            for tid in tasks:
                try:
                    with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                        kids.extend(int(p) for p in f.read().split())
                except OSError:
                    tasks = None
                    break
        if tasks is None:
            out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="],
                                 stdout=subprocess.PIPE, text=True,
                                 check=False).stdout
            kids = [int(p) for p in out.split()]
        return [p for p in kids if alive(p)]

    def worker_pids(self):
        """Live (non-zombie) children of the pool supervisor, sorted."""
        return sorted(self._children(self.pool_pid()))

    def wait_workers(self, count, timeout=10.0, exclude=()):
        """Poll until the pool has exactly `count` live workers, none of them
        in `exclude`; return the list (possibly wrong after the timeout)."""
        def ok():
            pids = self.worker_pids()
            good = len(pids) == count and not set(pids) & set(exclude)
            return pids if good else None
        return wait_until(ok, timeout) or self.worker_pids()

    def connect_workers(self, count, timeout=10.0):
        """Send reads until each of the `count` live workers has logged its
        database connection (established or restored): a worker's first
        connect is then not part of what a test measures. True on success."""
        def connected():
            pids = set()
            for line in self.log_lines("pool.log"):
                if line.startswith("{") and (
                        '"msg":"database connection established' in line or
                        '"msg":"database connection restored' in line):
                    pids.add(json.loads(line).get("pid"))
            if set(self.worker_pids()) <= pids:
                return True
            run_concurrently(2 * count, lambda i: self.request(
                "GET", "/items?limit=1"))
            return False
        return wait_until(connected, timeout, interval=0.1)

    # -- database ----------------------------------------------------------

    def db_stop(self):
        self._db("stop")

    def db_start(self):
        self._db("start")

    def _db(self, what):
        proc = self._script(["--db", what], DB_TIMEOUT)
        if proc.returncode != 0:
            raise StackError("run-local.sh --db %s exited %d\n%s\n%s" % (
                what, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                self.logs()))

    def mysql_socket(self):
        """RUN_DIR/mysql.sock (the documented place), else RUN_DIR/db/."""
        for path in (os.path.join(self.run_dir, "mysql.sock"),
                     os.path.join(self.run_dir, "db", "mysql.sock")):
            if os.path.exists(path):
                return path
        raise StackError("no mysql.sock under %s" % self.run_dir)

    def mysql_args(self):
        return ["mariadb", "--no-defaults", "--socket=" + self.mysql_socket(),
                "-uroot", "--batch", "--skip-column-names", "items"]

    def sql(self, query):
        """Run SQL as root through the unix socket; return stdout."""
        proc = subprocess.run(self.mysql_args() + ["-e", query],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise StackError("mariadb -e %r: %s" % (query, proc.stderr))
        return proc.stdout

    def sql_block(self, text):
        """Run one compound statement (a trigger, BEGIN NOT ATOMIC ... END):
        the mariadb client must not split it at its semicolons."""
        return self.sql("DELIMITER //\n" + text + " //\nDELIMITER ;")

    # -- logs --------------------------------------------------------------

    def log_path(self, name):
        return os.path.join(self.run_dir, "logs", name)

    def log_lines(self, name):
        try:
            with open(self.log_path(name), "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def sanitizer_reports(self):
        """Every sanitizer report in pool.log and nginx-error.log so far,
        each as "file:line:" and its lines up to its SUMMARY line (at most
        REPORT_MAX_LINES)."""
        reports = []
        for name in SANITIZER_LOGS:
            lines = self.log_lines(name)
            i = 0
            while i < len(lines):
                if not SANITIZER_RE.search(lines[i]):
                    i += 1
                    continue
                end = i
                while (end + 1 < len(lines) and end - i < REPORT_MAX_LINES
                       and not lines[end].startswith("SUMMARY: ")):
                    end += 1
                reports.append("%s:%d:\n%s" % (
                    self.log_path(name), i + 1, "\n".join(lines[i:end + 1])))
                i = end + 1
        return reports

    def log_sizes(self):
        """{file name: size} of every log, to pass to logs(since=...)."""
        sizes = {}
        log_dir = os.path.join(self.run_dir, "logs")
        with contextlib.suppress(OSError):
            for name in os.listdir(log_dir):
                with contextlib.suppress(OSError):
                    sizes[name] = os.path.getsize(os.path.join(log_dir, name))
        return sizes

    def logs(self, lines=LOG_TAIL_LINES, since=None):
        """The last `lines` lines of every file under RUN_DIR/logs; with
        `since` (from log_sizes()), only what was written after it."""
        out = []
        log_dir = os.path.join(self.run_dir, "logs")
        try:
            names = sorted(os.listdir(log_dir))
        except OSError:
            return "(no log directory %s)" % log_dir
        for name in names:
            path = os.path.join(log_dir, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    f.seek((since or {}).get(name, 0))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if since is not None and not text:
                continue
            tail = text.splitlines()[-lines:]
            out.append("==== %s (last %d lines%s) ====" % (
                path, len(tail), " of this test" if since is not None else ""))
            out.extend(tail)
        return "\n".join(out)


# -- test case base ---------------------------------------------------------

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ITEM_KEYS = {"id", "name", "description", "created_at"}
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|"
                          r"runtime error: |SUMMARY: \w+Sanitizer|"
                          r"Sanitizer has encountered a fatal error|"
                          r"Sanitizer:DEADLYSIGNAL")
SANITIZER_LOGS = ("pool.log", "nginx-error.log")
REPORT_MAX_LINES = 200
JSON_TYPE_RE = re.compile(r"(?i)\A[ \t]*application/json[ \t]*;[ \t]*"
                          r"charset=utf-8[ \t]*\Z")


class StackTestCase(unittest.TestCase):
    """A TestCase class owning one Stack (started in setUpClass, stopped by
    a class cleanup even when setUpClass fails). Logs are printed to stderr
    when a test fails. Subclasses set `stack_options`."""

    stack_options = {}
    stack = None

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(**cls.stack_options)
        cls.addClassCleanup(cls.stack.stop)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        sizes = self.stack.log_sizes() if self.stack else None
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.stack:
            sys.stderr.write("\n---- logs written during %s ----\n%s\n----\n"
                             % (self.id(), self.stack.logs(since=sizes)))
        return out

    # -- assertions --------------------------------------------------------

    # No test method here: unittest would run it in every subclass and in
    # this class too, wherever a test module names it. The sanitizer reports
    # of a stack are read by Stack.stop() (the class cleanup), once the
    # workers have exited: an exception there is an ERROR of the class.

    def assertNoSanitizerReports(self):
        """No sanitizer report in the logs so far (a leak report comes only
        when a worker exits: Stack.stop() reads them all at the end)."""
        self.assertEqual(self.stack.sanitizer_reports(), [])

    def assertJSONType(self, r):
        """Content-Type: application/json; charset=utf-8 (docs/api.md),
        case-insensitive, spaces allowed around the ';'."""
        ctype = r.headers.get("content-type", "")
        self.assertRegex(ctype, JSON_TYPE_RE, "Content-Type of %r" % r)

    def assertJSON(self, r, status):
        """Status, JSON content type and a parseable body; returns it."""
        self.assertEqual(r.status, status, r)
        self.assertJSONType(r)
        try:
            return r.json()
        except ValueError as e:
            self.fail("body is not JSON (%s): %r" % (e, r))

    def assertError(self, r, status, reason=None):
        """A JSON error {"error": "<reason>"}; `reason`, if given, is a regex
        the reason must match (case-insensitive). Returns the reason."""
        data = self.assertJSON(r, status)
        self.assertIsInstance(data, dict, r)
        self.assertEqual(set(data), {"error"}, r)
        self.assertIsInstance(data["error"], str, r)
        self.assertTrue(data["error"].strip(), r)
        if reason is not None:
            self.assertRegex(data["error"], re.compile(reason, re.I), r)
        return data["error"]

    def assertItem(self, item, name=None, description=None, check_text=False):
        """`item` is a well-formed item; with check_text, name and
        description are exactly the given ones."""
        self.assertIsInstance(item, dict)
        self.assertEqual(set(item), ITEM_KEYS, item)
        self.assertIs(type(item["id"]), int, item)
        self.assertGreaterEqual(item["id"], 1, item)
        self.assertIsInstance(item["name"], str, item)
        self.assertIsInstance(item["description"], (str, type(None)), item)
        self.assertRegex(item["created_at"], TIMESTAMP_RE, item)
        if check_text:
            self.assertEqual(item["name"], name)
            self.assertEqual(item["description"], description)


def main():
    unittest.main(verbosity=2)
