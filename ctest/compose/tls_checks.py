#!/usr/bin/env python3
"""Checks of HTTPS at the front (issue 14) against a deployed compose stack, testssl.sh included.
Python 3 standard library only; the clients are openssl, curl and testssl.sh (Debian package
testssl.sh, command `testssl`: installed here as root on Debian when missing, never skipped).

    import tls_checks
    tls_checks.run_all({"repo": REPO, "env": {...}, "port": 80, "https_port": 443,
                        "secrets_dir": SECRETS, "api_token": TOKEN, "artifacts": DIR})

ctx["env"] is the deploy environment (COMPOSE_PROJECT_NAME, HTTP_PORT, HTTPS_PORT, SECRETS_DIR,
the subnets, ...), laid over this process's. Every request goes to 127.0.0.1. Each check fails on
a stack without HTTPS (nothing answers TLS on HTTPS_PORT):
1. protocols: TLS 1.0 and 1.1 (openssl s_client -tls1/-tls1_1 at SECLEVEL=0) and SSLv3 (a raw
   SSLv3 ClientHello: OpenSSL 3 cannot send one) get the server's fatal alert, no handshake; the
   same openssl client does TLS 1.0 and 1.1 with a local `openssl s_server` (so the refusal is the
   server's); TLS 1.2 and 1.3 are established;
2. HTTP/2 by ALPN (s_client -alpn h2,http/1.1; curl --http2 answers over HTTP/2);
3. the chain verifies against SECRETS_DIR/tls_ca.pem for localhost and 127.0.0.1 (s_client
   -verify_return_error -verify_hostname/-verify_ip, curl --cacert without -k), and fails against
   the system CAs and for another name (the verification is real);
4. HTTPS_ONLY=0 (the default): plain HTTP serves GET /items and a POST with the token, and no
   response, HTTPS or HTTP, carries Strict-Transport-Security;
5. HTTPS_ONLY=1 (the front alone recreated, `compose up -d --no-build --no-deps front`): plain HTTP
   GET -> 308 to https://host[:HTTPS_PORT]/same/path, a plain-HTTP POST with the token -> 403 JSON
   and nothing written, HTTPS responses carry Strict-Transport-Security max-age=HSTS_MAX_AGE,
   /.well-known/acme-challenge/ is served over plain HTTP (404 for a missing token, no redirect);
   then the front is recreated with the HTTPS_ONLY it had (0) and checked;
6. renewal: scripts/secrets.sh --renew-tls then scripts/deploy.sh --reload-tls under an HTTPS load
   of keep-alive and new connections (trusting only the CA): no failed request, the front not
   recreated, both certificates seen by the load, the new file's certificate served at the end;
7. testssl.sh (the full default run: protocols, cipher categories and each cipher, forward secrecy,
   server preferences, server defaults, headers, vulnerabilities, client simulations) against
   127.0.0.1:HTTPS_PORT: JSON and text into ctx["artifacts"]; fails on any finding of severity HIGH
   or CRITICAL (or a FATAL scan problem), except those listed below.

testssl.sh and the local CA. The run passes `--add-ca SECRETS_DIR/tls_ca.pem`, so the chain of
trust is evaluated against the generated CA: `cert_chain_of_trust` must then be OK (without it,
testssl 3.0.8 reports it CRITICAL "failed (chain incomplete)", true of any locally issued
certificate) and is never excluded. One finding id is excluded, only while the served
certificate was issued by that local CA (it verifies against tls_ca.pem):
- `cert_revocation` (HIGH, "Neither CRL nor OCSP URI provided"): the local CA runs no CRL or OCSP
  service (its key never leaves SECRETS_DIR; a compromised key is replaced by --renew-tls, not
  revoked). With an operator's own certificate (bring your own, from a public CA) the finding
  counts like any other.
testssl 3.0.8 (Debian 12's) has no rating (the overall grade came with testssl 3.1/3.2): the check
logs the grade lines when the JSON has them (overall_grade, final_score, grade_cap_*), and says so
otherwise; the severity tally and the key lines stand for it.
`--nodns none` (no DNS query), no --phone-out (no CRL/OCSP fetched from the network).

The stack is left as found: the front recreated with its original HTTPS_ONLY, the certificate the
renewed one (valid, from the same CA), the items written here deleted.

Run alone against a stack already deployed (the environment as for scripts/deploy.sh):
    COMPOSE_PROJECT_NAME=... HTTP_PORT=... HTTPS_PORT=... SECRETS_DIR=... [IMAGE_PREFIX=... subnets]
        python3 ctest/compose/tls_checks.py [--repo CHECKOUT] [--artifacts DIR]
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, log, wait_for  # noqa: E402

HEALTH_TIMEOUT = 90
TESTSSL_TIMEOUT = 420  # measured: 67-75 s for the full run on 2 cores
# Excluded testssl finding ids, while the served certificate comes from the local CA (docstring).
LOCAL_CA_EXCLUDED = {
    "cert_revocation": "the local CA runs no CRL/OCSP service; a compromised key is replaced "
                       "(secrets.sh --renew-tls), not revoked",
}


class Stack:
    """The deployed stack of ctx, and the few operations the checks need."""

    def __init__(self, ctx):
        self.repo = ctx["repo"]
        self.env = {**os.environ, **ctx["env"]}
        self.port = int(ctx["port"])
        self.https_port = int(ctx["https_port"])
        self.secrets = ctx["secrets_dir"]
        self.ca = os.path.join(self.secrets, "tls_ca.pem")
        self.token = ctx["api_token"]
        self.artifacts = ctx["artifacts"]
        self.project = self.env["COMPOSE_PROJECT_NAME"]
        self.hsts_max_age = self.env.get("HSTS_MAX_AGE") or "31536000"

    def run(self, args, timeout=120, extra_env=None, input_text=None):
        return subprocess.run(args, cwd=self.repo, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              input=input_text if input_text is not None else "",
                              check=False)

    def script(self, name, *args, timeout=300):
        return self.run([os.path.join(self.repo, "scripts", name), *args], timeout)

    def cid(self, service):
        out = self.run(["docker", "ps", "-q",
                        "--filter", f"label=com.docker.compose.project={self.project}",
                        "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
        return out[0] if out else ""

    def inspect(self, container):
        proc = self.run(["docker", "inspect", container])
        assert proc.returncode == 0, f"docker inspect {container}: {proc.stderr.strip()}"
        return json.loads(proc.stdout)[0]

    def front_env(self, front):
        return dict(e.split("=", 1) for e in self.inspect(front)["Config"]["Env"] if "=" in e)

    def recreate_front(self, https_only):
        """The front alone recreated from the same image with HTTPS_ONLY set; healthy and serving."""
        before = self.cid("front")
        assert before, "no front container runs"
        info = self.inspect(before)
        image_id = info["Image"]
        # The same image as deployed (a rollback may have moved IMAGE_TAG): IMAGE_PREFIX and IMAGE_TAG
        # from the running container's image reference, "PREFIX-front:TAG".
        ref = info["Config"]["Image"]
        m = re.fullmatch(r"(.+)-front:([^:/]+)", ref)
        extra = {"HTTPS_ONLY": https_only}
        if m:
            extra.update(IMAGE_PREFIX=m.group(1), IMAGE_TAG=m.group(2))
        proc = self.run(checks.plain_compose() + ["up", "-d", "--no-build", "--no-deps", "front"], 300, extra)
        assert proc.returncode == 0, f"compose up front (HTTPS_ONLY={https_only}): {proc.stderr[-800:]}"

        def ready():
            cid = self.cid("front")
            if not cid or cid == before:
                return None
            state = self.inspect(cid)["State"]
            if state.get("Health", {}).get("Status") != "healthy":
                return None
            return cid if checks.try_status(self.port) in (200, 308) else None

        front = wait_for(ready, HEALTH_TIMEOUT, 0.5)
        assert front, f"the front (HTTPS_ONLY={https_only}) is not healthy within {HEALTH_TIMEOUT} s"
        assert self.inspect(front)["Image"] == image_id, "the front's image changed: no build was asked for"
        assert self.front_env(front).get("HTTPS_ONLY") == https_only, "HTTPS_ONLY not applied"
        return front


# --- TLS clients ---------------------------------------------------------------------------------


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port, with server_name (SNI and the name verified) as given."""

    def __init__(self, port, context, server_name="localhost", timeout=10):
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self.server_name = server_name
        self.peer_fingerprint = None

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)
        self.peer_fingerprint = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()


def https_request(st, method, path, body=None, headers=None, server_name="localhost"):
    conn = LoopbackHTTPS(st.https_port, tls_context(st.ca), server_name)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return checks.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def s_client(port, *args, server_name="localhost", timeout=15):
    """openssl s_client to 127.0.0.1:port, stdin closed: (exit status, protocol or None, output)."""
    argv = ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}"]
    if server_name:
        argv += ["-servername", server_name]
    proc = subprocess.run(argv + list(args), capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout + proc.stderr
    m = re.search(r"^Protocol version: (\S+)$", out, re.M)
    established = "CONNECTION ESTABLISHED" in out and m
    return proc.returncode, (m.group(1) if established else None), out


def pem_fingerprint(path):
    with open(path, encoding="ascii") as f:
        pem = f.read()
    first = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    assert first, f"{path} holds no certificate"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first.group(0))).hexdigest()


def served_fingerprint(st):
    """The certificate 127.0.0.1:HTTPS_PORT serves a new connection (verified against the CA)."""
    conn = LoopbackHTTPS(st.https_port, tls_context(st.ca))
    try:
        conn.connect()
        return conn.peer_fingerprint
    finally:
        conn.close()


# A raw ClientHello: OpenSSL 3 cannot offer SSLv3 at all, so the SSLv3 probe is written by hand.
ALERTS = {10: "unexpected_message", 40: "handshake_failure", 47: "illegal_parameter", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error"}


def client_hello(version):
    suites = [0xc02b, 0xc02f, 0xc009, 0xc013, 0xc00a, 0xc014, 0x009c, 0x002f, 0x0035, 0x000a, 0x0005, 0x00ff]
    body = struct.pack(">H", version) + os.urandom(32) + b"\x00"
    body += struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites) + b"\x01\x00"
    if version >= 0x0303:  # supported groups, point formats, signature algorithms
        groups = b"".join(struct.pack(">H", g) for g in (0x001d, 0x0017, 0x0018))
        sigs = b"".join(struct.pack(">H", s) for s in (0x0403, 0x0503, 0x0804, 0x0401))
        exts = struct.pack(">HHH", 10, len(groups) + 2, len(groups)) + groups
        exts += struct.pack(">HH", 11, 2) + b"\x01\x00"
        exts += struct.pack(">HHH", 13, len(sigs) + 2, len(sigs)) + sigs
        body += struct.pack(">H", len(exts)) + exts
    handshake = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16" + struct.pack(">HH", version, len(handshake)) + handshake


def raw_hello(port, version):
    """('server_hello', None) | ('alert', description) | ('closed', None) | ('other', first bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(client_hello(version))
        data = b""
        deadline = time.monotonic() + 5
        try:
            while len(data) < 7 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            return "closed", None
    if len(data) >= 7 and data[0] == 0x15 and data[5] == 2:
        return "alert", ALERTS.get(data[6], str(data[6]))
    if len(data) >= 6 and data[0] == 0x16 and data[5] == 2:
        return "server_hello", None
    if not data:
        return "closed", None
    return "other", data[:16]


class ControlServer:
    """A local `openssl s_server` that accepts TLS 1.0 to 1.3 (SECLEVEL=0, a throwaway certificate):
    the same client commands that the front refuses must succeed with it."""

    def __init__(self, tmp, accepts):
        self.tmp, self.accepts, self.proc, self.port = tmp, accepts, None, 0

    def __enter__(self):
        key, cert = os.path.join(self.tmp, "control.key"), os.path.join(self.tmp, "control.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=tls-checks control"],
                       capture_output=True, check=True, timeout=30)
        self.port = checks.free_port(range(18790, 18800))
        assert self.port, "no free port in 18790-18799 for the control server"
        self.proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", cert,
                                      "-key", key, "-min_protocol", "TLSv1", "-cipher", "DEFAULT@SECLEVEL=0",
                                      "-www", "-naccept", str(self.accepts + 1)],  # + the probe below
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_for(lambda: self._listening(), 10, 0.1)
        assert ok, "the control openssl s_server does not listen"
        return self

    def _listening(self):
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(10)
        return False


# --- the HTTPS load of the renewal check -----------------------------------------------------------


class HttpsLoad(checks.ThreadedLoad):
    """Bounded GET load over HTTPS on 127.0.0.1 (HTTP/1.1): `keepalive` threads each reusing one
    connection, `fresh` threads each opening a new connection per request (every new handshake
    records the certificate served). rate: requests per second in all; at most max_seconds and
    max_requests. A request on a reused connection that the server closed before any byte of an
    answer (nginx's old worker closing its idle keep-alive connections after a reload) is sent
    again once on a new connection, as clients do for idempotent requests (RFC 9112, 9.3.1):
    counted in `retried`; a failure of that retry, an error on a new connection or a status other
    than 200 is a failed request."""

    RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                 ssl.SSLEOFError, ssl.SSLZeroReturnError)

    def __init__(self, st, path="/items?limit=5", rate=60.0, keepalive=2, fresh=2, max_seconds=120,
                 max_requests=8000):
        super().__init__()
        self.st, self.path, self.rate = st, path, rate
        self.keepalive, self.fresh = keepalive, fresh
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.context = tls_context(st.ca)
        self.retried = self.handshakes = 0
        self.fingerprints = {}

    def _count(self, outcome, conn=None):
        with self.lock:
            if conn is not None and conn.peer_fingerprint:
                self.fingerprints[conn.peer_fingerprint] = self.fingerprints.get(conn.peer_fingerprint, 0) + 1
            if outcome == 200:
                self.ok += 1
            else:
                self.failed += 1
                self.outcomes[str(outcome)] += 1

    def _connect(self):
        conn = LoopbackHTTPS(self.st.https_port, self.context)
        conn.connect()
        with self.lock:
            self.handshakes += 1
            self.fingerprints[conn.peer_fingerprint] = self.fingerprints.get(conn.peer_fingerprint, 0) + 1
        return conn

    def _once(self, conn):
        conn.request("GET", self.path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.will_close

    def _worker(self, reuse, interval):
        deadline = time.monotonic() + self.max_seconds
        due = time.monotonic()
        conn, used = None, 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.ok + self.failed >= self.max_requests:
                    break
            outcome = None
            try:
                if conn is None:
                    conn, used = self._connect(), 0
                try:
                    outcome, close = self._once(conn)
                except self.RETRYABLE:
                    if used == 0:
                        raise
                    conn.close()
                    with self.lock:
                        self.retried += 1
                    conn, used = self._connect(), 0
                    outcome, close = self._once(conn)
                used += 1
                if close or not reuse:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"[:120]
                if conn is not None:
                    conn.close()
                conn = None
            self._count(outcome)
            due = self._pace(due, interval)
        if conn is not None:
            conn.close()

    def _targets(self):
        interval = (self.keepalive + self.fresh) / self.rate
        return [(self._worker, (i < self.keepalive, interval)) for i in range(self.keepalive + self.fresh)]

    def summary(self):
        fails = f" {dict(self.outcomes)}" if self.outcomes else ""
        return (f"{self.total} HTTPS requests in {self.elapsed:.1f} s ({self.keepalive} keep-alive + {self.fresh} "
                f"new-connection clients), {self.handshakes} handshakes, {self.failed} failed{fails}, "
                f"{self.retried} resent once after the server closed an idle keep-alive connection")


# --- testssl.sh ------------------------------------------------------------------------------------


def testssl_command(st):
    """The testssl.sh command, installed (Debian package testssl.sh) as root on Debian when missing."""
    for name in ("testssl", "testssl.sh"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() == 0 and os.path.exists("/etc/debian_version"):
        proc = st.run(["bash", "-c", '. "$1/scripts/lib/common.sh" && ensure_packages testssl:testssl.sh',
                       "ensure", st.repo], timeout=600)
        assert proc.returncode == 0, f"installing testssl.sh failed: {proc.stderr[-800:]}"
        for name in ("testssl", "testssl.sh"):
            path = shutil.which(name)
            if path:
                return path
    raise AssertionError("testssl.sh is not installed and cannot be installed here (needs root on Debian): "
                         "apt-get install testssl.sh")


def testssl_findings(report):
    """Every finding of a --jsonfile-pretty report: (section, finding dict)."""
    found = [("scan", f) for key, value in report.items() if isinstance(value, list) for f in value
             if isinstance(f, dict) and "severity" in f]
    for result in report.get("scanResult", []):
        for section, value in result.items():
            if isinstance(value, list):
                found += [(section, f) for f in value if isinstance(f, dict) and "severity" in f]
    return found


def issued_by_local_ca(st):
    """True when the served certificate verifies against SECRETS_DIR/tls_ca.pem alone."""
    if not os.path.isfile(st.ca):
        return False
    rc, proto, _ = s_client(st.https_port, "-CAfile", st.ca, "-verify_return_error", "-verify_hostname", "localhost")
    return rc == 0 and proto is not None


# --- the checks ------------------------------------------------------------------------------------


def run_all(ctx):
    st = Stack(ctx)
    os.makedirs(st.artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tls-checks.")
    t0 = time.monotonic()
    state = {}

    def protocols():
        results = {}
        for name, flag in (("TLS 1.0", "-tls1"), ("TLS 1.1", "-tls1_1")):
            rc, proto, out = s_client(st.https_port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
            alert = re.search(r"alert ([a-z ]+):.*SSL alert number (\d+)", out)
            assert rc != 0 and proto is None, f"{name}: handshake established ({proto}):\n{out[-600:]}"
            assert alert, f"{name}: no TLS alert from the server (not a TLS server?):\n{out[-600:]}"
            results[name] = f"refused, alert {alert.group(1)} ({alert.group(2)})"
        kind, detail = raw_hello(st.https_port, 0x0300)
        assert kind == "alert", f"SSLv3 ClientHello: {kind} {detail!r}, want a fatal alert"
        results["SSLv3"] = f"refused, alert {detail}"
        kind, detail = raw_hello(st.https_port, 0x0303)
        assert kind == "server_hello", f"the same raw ClientHello as TLS 1.2: {kind} {detail!r}, want a ServerHello"
        for name, flag in (("TLS 1.2", "-tls1_2"), ("TLS 1.3", "-tls1_3")):
            rc, proto, out = s_client(st.https_port, flag, "-CAfile", st.ca)
            want = "TLSv" + name.split()[1]
            assert rc == 0 and proto == want, f"{name}: exit {rc}, protocol {proto}:\n{out[-600:]}"
            suite = re.search(r"Ciphersuite: (\S+)", out)
            results[name] = f"accepted ({suite.group(1) if suite else '?'})"
        # The refusals are the server's: the same client commands with a server that allows TLS 1.0+.
        with ControlServer(tmp, 2) as control:
            for name, flag, want in (("TLS 1.0", "-tls1", "TLSv1"), ("TLS 1.1", "-tls1_1", "TLSv1.1")):
                rc, proto, out = s_client(control.port, flag, "-cipher", "DEFAULT@SECLEVEL=0", server_name=None)
                assert proto == want, f"this openssl cannot do {name} at all (control server: {proto}):\n{out[-400:]}"
        log("protocols: " + "; ".join(f"{k} {v}" for k, v in results.items())
            + " (TLS 1.0/1.1 established by the same client with a local control server)")

    def alpn():
        rc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{st.https_port}", "-servername",
                             "localhost", "-alpn", "h2,http/1.1"], capture_output=True, text=True, errors="replace",
                            timeout=15,
                            stdin=subprocess.DEVNULL, check=False)
        m = re.search(r"^ALPN protocol: (\S+)", rc.stdout, re.M)
        assert m and m.group(1) == "h2", f"ALPN: {m.group(1) if m else 'none negotiated'}"
        proc = subprocess.run(["curl", "-sS", "--http2", "--cacert", st.ca, "--max-time", "10", "-o", "/dev/null",
                               "-w", "%{http_version} %{http_code}", "--resolve", f"localhost:{st.https_port}:127.0.0.1",
                               f"https://localhost:{st.https_port}/items"],
                              capture_output=True, text=True, timeout=20, check=False)
        assert proc.stdout.strip() == "2 200", f"curl --http2: {proc.stdout.strip()!r} {proc.stderr.strip()}"
        log(f"ALPN: h2 offered with http/1.1, h2 chosen; curl --http2 GET /items: HTTP/{proc.stdout.strip()}")

    def chain():
        assert os.path.isfile(st.ca), f"{st.ca} is missing (scripts/secrets.sh makes it with the certificate)"
        seen = []
        for how, args in (("-verify_hostname localhost", ["-verify_hostname", "localhost"]),
                          ("-verify_ip 127.0.0.1", ["-verify_ip", "127.0.0.1"])):
            rc, proto, out = s_client(st.https_port, "-CAfile", st.ca, "-verify_return_error", *args,
                                      server_name="localhost" if "hostname" in how else None)
            assert rc == 0 and proto and "Verification: OK" in out, f"{how}: exit {rc}:\n{out[-600:]}"
            seen.append(how)
        for url, extra in ((f"https://localhost:{st.https_port}/status",
                            ["--resolve", f"localhost:{st.https_port}:127.0.0.1"]),
                           (f"https://127.0.0.1:{st.https_port}/status", [])):
            proc = subprocess.run(["curl", "-sS", "--cacert", st.ca, "--max-time", "10", "-o", "/dev/null", "-w",
                                   "%{http_code} %{ssl_verify_result}", *extra, url],
                                  capture_output=True, text=True, timeout=20, check=False)
            assert proc.returncode == 0 and proc.stdout.strip() == "200 0", \
                f"curl --cacert {url}: exit {proc.returncode} {proc.stdout!r} {proc.stderr.strip()}"
        # The verification is real: the system CAs do not know the local CA, and another name fails.
        rc, proto, out = s_client(st.https_port, "-CApath", "/nonexistent", "-CAfile",
                                  "/etc/ssl/certs/ca-certificates.crt", "-verify_return_error",
                                  "-verify_hostname", "localhost")
        assert rc != 0 and proto is None, "the chain verified against the system CAs (not the local CA's?)"
        rc, proto, out = s_client(st.https_port, "-CAfile", st.ca, "-verify_return_error",
                                  "-verify_hostname", "example.com")
        assert rc != 0 and "hostname mismatch" in out, f"example.com verified: exit {rc}"
        issuer = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-enddate", "-in",
                                 os.path.join(st.secrets, "tls_cert")], capture_output=True, text=True,
                                check=False, timeout=10).stdout.split("\n")
        log(f"chain: verified against {st.ca} ({', '.join(seen)}, curl --cacert for both names); refused by the "
            f"system CAs and for example.com; {'; '.join(x for x in issuer if x)}")

    def plain_http_default():
        front = st.cid("front")
        assert front, "no front container runs"
        state["https_only"] = st.front_env(front).get("HTTPS_ONLY", "0")
        assert state["https_only"] == "0", f"the front runs with HTTPS_ONLY={state['https_only']}, not the default"
        r = checks.http_request(st.port, "GET", "/items")
        assert r.status == 200 and isinstance(r.json(), list), f"plain GET /items: HTTP {r.status}"
        assert r.header("strict-transport-security") is None, "Strict-Transport-Security over plain HTTP"
        auth = {"Authorization": f"Bearer {st.token}"}
        r = checks.http_request(st.port, "POST", "/items", {"name": "tls checks: plain HTTP write"}, auth)
        assert r.status == 201, f"plain POST with the token: HTTP {r.status} {r.body[:200]!r}"
        item = r.json()["id"]
        d = checks.http_request(st.port, "DELETE", f"/items/{item}", headers=auth)
        assert d.status == 204, f"plain DELETE /items/{item}: HTTP {d.status}"
        for path in ("/items", "/", "/nonexistent"):
            h = https_request(st, "GET", path)
            assert h.header("strict-transport-security") is None, f"HTTPS {path}: Strict-Transport-Security sent"
        assert https_request(st, "GET", "/items").status == 200, "HTTPS GET /items"
        log("HTTPS_ONLY=0: plain HTTP GET /items 200, POST 201 and DELETE 204 with the token; "
            "no Strict-Transport-Security over HTTP or HTTPS")

    def https_only():
        auth = {"Authorization": f"Bearer {st.token}"}
        before = https_request(st, "GET", "/items?limit=1000")
        assert before.status == 200, f"HTTPS GET /items: {before.status}"
        st.recreate_front("1")
        state["recreated"] = True
        port_part = "" if st.https_port == 443 else f":{st.https_port}"
        r = checks.http_request(st.port, "GET", "/items?limit=2&after=1")
        want = f"https://127.0.0.1{port_part}/items?limit=2&after=1"
        assert r.status == 308 and r.header("location") == want, \
            f"plain GET: HTTP {r.status} Location {r.header('location')!r}, want 308 {want}"
        r2 = checks.http_request(st.port, "GET", "/", headers={"Host": "localhost"})
        assert r2.status == 308 and r2.header("location") == f"https://localhost{port_part}/", \
            f"plain GET / (Host localhost): {r2.status} {r2.header('location')!r}"
        marker = f"tls checks: sent in clear {os.getpid()}"
        w = checks.http_request(st.port, "POST", "/items", {"name": marker}, auth)
        assert w.status == 403, f"plain POST with the token: HTTP {w.status}, want 403"
        assert (w.header("content-type") or "").startswith("application/json") and "error" in w.json(), \
            f"403 body: {w.body[:200]!r}"
        after = https_request(st, "GET", "/items?limit=1000")
        assert marker.encode() not in after.body and len(after.json()) == len(before.json()), \
            f"the refused write was applied: {len(before.json())} -> {len(after.json())} items"
        for path in ("/items", "/", "/nonexistent"):
            h = https_request(st, "GET", path)
            assert h.header("strict-transport-security") == f"max-age={st.hsts_max_age}", \
                f"HTTPS {path} ({h.status}): Strict-Transport-Security {h.header('strict-transport-security')!r}"
        a = checks.http_request(st.port, "GET", "/.well-known/acme-challenge/x")
        assert a.status == 404 and a.header("location") is None, \
            f"ACME challenge over plain HTTP: HTTP {a.status} Location {a.header('location')!r}, want 404"
        state["plain_answers"] = {"308": r, "403": w, "404 (ACME)": a}
        log(f"HTTPS_ONLY=1: plain GET -> 308 {want}; plain POST with the token -> 403 {w.json()['error'][:60]!r}..., "
            f"{len(after.json())} items before and after; HTTPS: Strict-Transport-Security max-age={st.hsts_max_age}; "
            "ACME challenge over plain HTTP: 404, no redirect")

    def no_hsts_over_http():
        """RFC 6797, 7.2: an HSTS host MUST NOT send Strict-Transport-Security over plain HTTP."""
        answers = state.get("plain_answers")
        assert answers, "the HTTPS_ONLY=1 check did not get that far"
        sent = [k for k, resp in answers.items() if resp.header("strict-transport-security") is not None]
        assert not sent, (f"Strict-Transport-Security sent over plain HTTP with HTTPS_ONLY=1 on the {', '.join(sent)} "
                          f"answer(s) ({answers[sent[0]].header('strict-transport-security')!r}): the redirecting "
                          "server includes items-headers.conf, which includes items-hsts.conf")

    def https_only_back():
        assert state.get("recreated"), "the HTTPS_ONLY=1 check recreated no front: nothing to put back"
        original = state.get("https_only", "0")
        st.recreate_front(original)
        state.pop("recreated", None)
        r = checks.http_request(st.port, "GET", "/items")
        if original == "0":
            assert r.status == 200, f"plain GET /items after HTTPS_ONLY={original}: HTTP {r.status}"
            assert https_request(st, "GET", "/items").header("strict-transport-security") is None, "HSTS left on"
        log(f"front recreated with HTTPS_ONLY={original} again: plain GET /items {r.status}")

    def renewal():
        cert = os.path.join(st.secrets, "tls_cert")
        old = pem_fingerprint(cert)
        assert served_fingerprint(st) == old, "HTTPS serves another certificate than SECRETS_DIR/tls_cert"
        front = st.cid("front")
        with HttpsLoad(st) as load:
            time.sleep(2)
            renew = st.script("secrets.sh", "--renew-tls", timeout=60)
            reload_ = st.script("deploy.sh", "--reload-tls", timeout=180)
            time.sleep(3)
        log(f"renewal under load: {load.summary()}")
        assert renew.returncode == 0, f"secrets.sh --renew-tls: exit {renew.returncode}: {renew.stderr[-600:]}"
        assert reload_.returncode == 0, f"deploy.sh --reload-tls: exit {reload_.returncode}: {reload_.stderr[-800:]}"
        assert "nginx reloaded" in reload_.stderr, f"not reloaded in place: {reload_.stderr[-600:]}"
        assert st.cid("front") == front, "the front container was recreated (a gap), not reloaded"
        new = pem_fingerprint(cert)
        assert new != old, "secrets.sh --renew-tls left the same certificate"
        served = served_fingerprint(st)
        assert served == new, f"HTTPS serves {served[:16]}..., the new file holds {new[:16]}..."
        assert load.failed == 0, f"{load.failed} failed requests: {load.outcomes}"
        assert load.total >= 100, f"only {load.total} requests: the load did not run"
        assert old in load.fingerprints and new in load.fingerprints, \
            f"the load saw {len(load.fingerprints)} certificate(s), not the old and the new one"
        log(f"certificate sha256 {old[:16]}... -> {new[:16]}... (the new file's, served to "
            f"{load.fingerprints[new]} of {load.handshakes} load handshakes)")

    def testssl():
        command = testssl_command(st)
        version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
        m = re.search(r"testssl(?:\.sh)?\s+(\d[\w.+~-]*)", version)
        json_path = os.path.join(st.artifacts, "testssl.json")
        text_path = os.path.join(st.artifacts, "testssl.txt")
        summary_path = os.path.join(st.artifacts, "testssl-summary.txt")
        for path in (json_path, text_path, summary_path):
            if os.path.exists(path):
                os.unlink(path)  # testssl.sh refuses to write over a file
        argv = [command, "--quiet", "--color", "0", "--warnings", "off", "--openssl", shutil.which("openssl"),
                "--add-ca", st.ca, "--nodns", "none", "--connect-timeout", "10", "--openssl-timeout", "10",
                "--jsonfile-pretty", json_path, "--logfile", text_path, f"127.0.0.1:{st.https_port}"]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=TESTSSL_TIMEOUT, cwd=tmp,
                              stdin=subprocess.DEVNULL, check=False)
        took = time.monotonic() - started
        assert os.path.isfile(json_path), f"testssl.sh wrote no JSON (exit {proc.returncode}): {proc.stdout[-800:]}"
        with open(json_path, encoding="utf-8") as f:
            report = json.load(f)
        sections = {k for r in report.get("scanResult", []) for k, v in r.items() if isinstance(v, list) and v}
        needed = {"protocols", "ciphers", "vulnerabilities", "serverDefaults", "cipherTests"}
        assert needed <= sections, f"the scan lacks {sorted(needed - sections)} (exit {proc.returncode})"
        findings = testssl_findings(report)
        by_id = {f.get("id"): f for _, f in findings}
        tally = {}
        for _, f in findings:
            tally[f["severity"]] = tally.get(f["severity"], 0) + 1
        local_ca = issued_by_local_ca(st)
        bad, excluded, notable = [], [], []
        for section, f in findings:
            sev, fid = f["severity"], f.get("id", "?")
            line = f"{sev} {fid} ({section}): {f.get('finding', '')}"
            if sev in ("HIGH", "CRITICAL", "FATAL"):
                if local_ca and fid in LOCAL_CA_EXCLUDED:
                    excluded.append(f"{line} -- excluded: {LOCAL_CA_EXCLUDED[fid]}")
                else:
                    bad.append(line)
            elif sev in ("MEDIUM", "LOW", "WARN"):
                notable.append(line)
        grade_ids = [i for i in by_id if i and (i in ("overall_grade", "final_score") or i.startswith("grade_cap")
                                                or i.endswith("_score"))]
        rating = [f"{i}: {by_id[i].get('finding')}" for i in grade_ids]
        key = [f"{i}: {by_id[i].get('finding')}" for i in
               ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "ALPN_HTTP2", "cert_chain_of_trust",
                "cert_trust", "cipher_order", "FS", "HSTS") if i in by_id]
        version_text = m.group(1) if m else report.get("version", "?").strip()
        lines = [f"testssl.sh {version_text} against 127.0.0.1:{st.https_port}, {took:.0f} s, exit {proc.returncode}",
                 f"command: {' '.join(argv)}",
                 "severities: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())),
                 "rating: " + ("; ".join(rating) if rating else
                               f"none: testssl.sh {version_text} has no rating (grades came with testssl.sh 3.1/3.2)"),
                 *[f"  {x}" for x in key],
                 f"HIGH/CRITICAL: {len(bad)}", *[f"  {x}" for x in bad],
                 f"excluded (the certificate is from the local CA {st.ca}: {local_ca}): {len(excluded)}",
                 *[f"  {x}" for x in excluded],
                 f"MEDIUM/LOW/WARN: {len(notable)}", *[f"  {x}" for x in notable]]
        with open(summary_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        for x in lines:
            log(f"testssl: {x}")
        log(f"testssl: report {json_path}, {text_path}, {summary_path}")
        assert by_id.get("cert_chain_of_trust", {}).get("severity") == "OK", \
            f"chain of trust with --add-ca {st.ca}: {by_id.get('cert_chain_of_trust')}"
        assert not bad, f"{len(bad)} finding(s) of severity HIGH or CRITICAL: " + " | ".join(bad)

    try:
        check("tls: TLS 1.0, TLS 1.1 and SSLv3 refused by the server (its alert, no handshake); TLS 1.2 and 1.3 "
              "accepted", protocols)
        check("tls: HTTP/2 negotiated by ALPN (openssl -alpn h2, curl --http2)", alpn)
        check("tls: the chain verifies against SECRETS_DIR/tls_ca.pem for localhost and 127.0.0.1 (and not against "
              "the system CAs, nor for another name)", chain)
        check("tls: HTTPS_ONLY=0: plain HTTP serves reads and writes with the token as before, no "
              "Strict-Transport-Security anywhere", plain_http_default)
        check("tls: testssl.sh: no finding of severity HIGH or CRITICAL (report in the artifacts)", testssl)
        check("tls: HTTPS_ONLY=1: plain HTTP redirects (308 to HTTPS_PORT), refuses a write with the token (403, "
              "not applied), serves ACME challenges; HTTPS sends Strict-Transport-Security", https_only)
        check("tls: HTTPS_ONLY=1: no Strict-Transport-Security over plain HTTP (RFC 6797, 7.2)", no_hsts_over_http)
        check("tls: the front recreated with its HTTPS_ONLY again (0: plain HTTP serving, no HSTS)", https_only_back)
        check("tls: secrets.sh --renew-tls + deploy.sh --reload-tls under HTTPS load: no failed request, the new "
              "certificate served", renewal)
    finally:
        if state.get("recreated"):
            check("tls: the front put back to HTTPS_ONLY=" + state.get("https_only", "0"),
                  lambda: st.recreate_front(state.get("https_only", "0")))
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"tls checks took {time.monotonic() - t0:.1f} s")


def main():
    args = sys.argv[1:]
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    artifacts = os.environ.get("TLS_ARTIFACTS", "")
    while args:
        if args[0] in ("-h", "--help"):
            print(__doc__)
            return 0
        if args[0] == "--repo" and len(args) > 1:
            repo = os.path.abspath(args[1])
        elif args[0] == "--artifacts" and len(args) > 1:
            artifacts = os.path.abspath(args[1])
        else:
            print(f"unknown argument: {args[0]} (see --help)", file=sys.stderr)
            return 2
        args = args[2:]
    names = ("COMPOSE_PROJECT_NAME", "HTTP_PORT", "HTTPS_PORT", "HTTP_BIND", "SECRETS_DIR", "IMAGE_PREFIX",
             "IMAGE_TAG", "PUBLIC_SUBNET", "EDGE_SUBNET", "FRONT_EDGE_IP", "DATA_SUBNET", "MONITORING_SUBNET",
             "MONITORING_OUT_SUBNET", "HSTS_MAX_AGE",
             "DEPLOY_STATE_DIR", "BACKUP_DIR", "COMPOSE_IMPL")
    found = checks.stack_from_environment(repo, names, ("COMPOSE_PROJECT_NAME", "HTTP_PORT", "HTTPS_PORT", "SECRETS_DIR"))
    if found is None:
        return 2
    env, token = found
    if not artifacts:
        artifacts = tempfile.mkdtemp(prefix="tls-checks-artifacts.")
    log(f"artifacts: {artifacts}")
    t0 = time.monotonic()
    run_all({"repo": repo, "env": env, "port": int(env["HTTP_PORT"]), "https_port": int(env["HTTPS_PORT"]),
             "secrets_dir": secrets, "api_token": token, "artifacts": artifacts})
    log(f"run_all: {time.monotonic() - t0:.1f} s")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
