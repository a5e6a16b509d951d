#!/usr/bin/env python3
"""Checks of the db image's operation (issue 13, "Operating the deployment"): the pinned MariaDB
version, mariadb-upgrade on a version change, root only on the socket, no password needed after
initialisation, and limits that agree (buffer pool from the memory limit, max_connections under the
pids limit). Python 3 standard library only; reports through ctest/lib/checks.py.

    run_all(image, docker_prefix)        every check against an image, with containers and a volume
                                         of its own named DOCKER_PREFIX-..., removed at the end
    check_running_db(container, docker)  the checks that apply to a running stack's db container

    python3 ctest/compose/db_checks.py IMAGE [DOCKER_PREFIX]   (builds nothing; prints the closing line)

The containers run as compose runs the db service: user 10003:10000, read-only root, no capability,
no-new-privileges, tmpfs on /run/mysqld and /tmp, the secrets as files under /run/secrets.
"""

import json
import os
import re
import secrets as random_secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import checks  # noqa: E402 - after its path
from checks import check, log, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIB = 1024 * 1024
# Threads and processes of the db container besides one thread per connection, with a margin:
# measured 12 server threads idle and 14 under 150 writing connections (MariaDB 10.11), plus the
# healthcheck (bash + client) and an operator's `docker exec` session or two.
PIDS_RESERVE = 32
OLD_VERSION = "10.11.0-MariaDB"
START_TIMEOUT = 120


def _docker(*args, timeout=60, check_rc=True):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check_rc and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}... exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout)[-800:]}")
    return proc


def host_memory():
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def derive_buffer_pool(limit):
    """innodb_buffer_pool_size the entrypoint must choose for a memory limit in bytes (0/None = none):
    half the limit rounded down to 8 MiB, at least 32 MiB; no limit (or one at or above the
    machine's memory, cgroup v1's "unlimited") leaves my.cnf's 128M."""
    if not limit or limit >= host_memory():
        return 128 * MIB
    return max(limit // 2 // (8 * MIB) * (8 * MIB), 32 * MIB)


def pinned_version():
    """ARG MARIADB_VERSION=... from mysql/Dockerfile, or None."""
    with open(os.path.join(REPO, "mysql", "Dockerfile"), encoding="utf-8") as f:
        m = re.search(r"^ARG MARIADB_VERSION=(\S+)", f.read(), re.M)
    return m.group(1) if m else None


def sql(container, query, docker=_docker, database=None):
    """Rows of QUERY run through `docker exec` on the socket (the container's local admin)."""
    args = ["exec", container, "mariadb", "--batch", "--skip-column-names"]
    if database:
        args.append(database)
    out = docker(*args, "-e", query, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


class Db:
    """Containers of IMAGE on one volume, run as compose runs the db service; cleanup() removes them."""

    def __init__(self, image, prefix):
        self.image = image
        self.prefix = prefix
        self.volume = f"{prefix}-data"
        self.containers = []
        self.tmp = tempfile.mkdtemp(prefix="db-checks.")
        os.chmod(self.tmp, 0o755)
        self.root_password = "root-" + random_secrets.token_hex(8)
        self.app_password = "app-" + random_secrets.token_hex(8)

    def secret_file(self, name, content):
        path = os.path.join(self.tmp, f"{name}.{len(os.listdir(self.tmp))}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        # As scripts/secrets.sh makes them: 0640 root:10000 (the group the db user is in).
        if os.geteuid() == 0:
            os.chown(path, 0, 10000)
            os.chmod(path, 0o640)
        else:
            os.chmod(path, 0o644)
        return path

    def start(self, tag, memory=None, root_secret=None, app_secret=None, env=None):
        """Starts a container (detached); a secret given as None is not mounted (a missing file)."""
        name = f"{self.prefix}-{tag}"
        _docker("rm", "-f", name, check_rc=False)
        args = ["run", "-d", "--name", name, "--user", "10003:10000", "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--pids-limit", "256",
                "--tmpfs", "/run/mysqld:uid=10003,gid=10000,mode=0750,size=1m",
                "--tmpfs", "/tmp:uid=10003,gid=10000,mode=0700,size=256m",
                "-v", f"{self.volume}:/var/lib/mysql",
                "-e", "MYSQL_ROOT_PASSWORD_FILE=/run/secrets/db_root_password",
                "-e", "MYSQL_PASSWORD_FILE=/run/secrets/db_password",
                "-e", "MYSQL_DATABASE=items", "-e", "MYSQL_USER=items"]
        for secret, content in (("db_root_password", root_secret), ("db_password", app_secret)):
            if content is not None:
                args += ["-v", f"{self.secret_file(secret, content)}:/run/secrets/{secret}:ro"]
        if memory:
            args += ["--memory", str(memory)]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        self.containers.append(name)
        _docker(*args, self.image)
        return name

    def wait_healthy(self, name, timeout=START_TIMEOUT):
        """True once healthcheck.sh passes; raises with the log's end if the container exits."""
        def probe():
            if _docker("exec", name, "healthcheck.sh", check_rc=False).returncode == 0:
                return "healthy"
            state = json.loads(_docker("inspect", name).stdout)[0]["State"]
            return None if state["Running"] else f"exited {state['ExitCode']}"

        result = wait_for(probe, timeout, 0.3)
        if result != "healthy":
            raise AssertionError(f"{name} {result or f'not healthy within {timeout} s'}: {self.logs(name)[-1500:]}")
        return True

    def logs(self, name):
        proc = _docker("logs", name, check_rc=False)
        return proc.stdout + proc.stderr

    def stop(self, name):
        _docker("stop", "-t", "30", name, timeout=60)
        _docker("rm", name, check_rc=False)

    def volume_shell(self, script):
        """Runs a shell script on the volume while no server runs (as the mysql user)."""
        return _docker("run", "--rm", "--user", "10003:10000", "--entrypoint", "sh",
                       "-v", f"{self.volume}:/var/lib/mysql", self.image, "-c", script).stdout

    def cleanup(self):
        for name in self.containers:
            _docker("rm", "-f", "-v", name, check_rc=False)
        _docker("volume", "rm", "-f", self.volume, check_rc=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def buffer_pool(container, docker=_docker):
    return int(sql(container, "SELECT @@innodb_buffer_pool_size", docker)[0][0])


def run_all(image, docker_prefix):
    """Every check against IMAGE (e.g. items-db:latest): one volume initialised, then restarted three
    times with the MariaDB version in it rewritten, the secrets changed or gone and other memory
    limits. Everything created is named DOCKER_PREFIX-... and removed at the end."""
    t0 = time.monotonic()
    db = Db(image, docker_prefix)
    state = {}
    marker = "db_checks marker " + random_secrets.token_hex(4)
    try:
        _run_all(db, state, marker)
    except Exception as exc:  # noqa: BLE001 - a docker command that failed between checks: one failure
        checks.report("db checks: the sequence ran to its end", False, f"{type(exc).__name__}: {exc}")
    finally:
        db.cleanup()
        log(f"db checks: {time.monotonic() - t0:.1f} s")


def _run_all(db, state, marker):
    # --- the first start: initialisation, with the compose default memory limit ---------------------
    def first_start():
        name = db.start("init", memory="512m", root_secret=db.root_password, app_secret=db.app_password)
        db.wait_healthy(name)
        sql(name, f"INSERT INTO items (name) VALUES ('{marker}')", database="items")
        state["init"] = name

    if not check("db image: an empty volume is initialised and healthy (compose settings, secrets as files)",
                 first_start):
        return
    init = state["init"]

    def pinned():
        pin = pinned_version()
        assert pin, "no ARG MARIADB_VERSION=... in mysql/Dockerfile: the MariaDB version is not pinned"
        labels = json.loads(_docker("image", "inspect", db.image).stdout)[0]["Config"].get("Labels") or {}
        assert labels.get("items.mariadb.version") == pin, \
            f"image label items.mariadb.version {labels.get('items.mariadb.version')!r}, pin {pin}: not built from this pin"
        out = _docker("exec", init, "dpkg-query", "-W", "-f", "${Package} ${Version}\n",
                      "mariadb-server-core", "mariadb-client-core").stdout.split("\n")
        versions = dict(line.split(" ", 1) for line in out if line)
        assert versions == {"mariadb-server-core": pin, "mariadb-client-core": pin}, f"{versions}, pin {pin}"
        upstream = pin.split(":", 1)[-1].split("-", 1)[0]
        for tool in ("mariadb-dump", "mariadb-admin"):  # copied from the build's first stage
            text = _docker("exec", init, tool, "--version").stdout
            assert f"Distrib {upstream}-" in text, f"{tool}: {text.strip()} (pin {pin})"
        log(f"MariaDB {pin} in the image, as pinned in mysql/Dockerfile")

    def root_local_only():
        roots = sql(init, "SELECT User, Host FROM mysql.global_priv WHERE User = 'root' ORDER BY Host")
        assert roots == [["root", "localhost"]], f"root accounts: {roots}"
        # TCP as root with the root password: refused (no root@'%'); the app account: admitted (control).
        tcp = ["exec", "-e", f"MYSQL_PWD={db.root_password}", init, "mariadb", "--protocol=tcp",
               "--host=127.0.0.1", "--user=root", "-e", "SELECT 1"]
        refused = _docker(*tcp, check_rc=False)
        assert refused.returncode != 0 and "Access denied" in refused.stderr, \
            f"root over TCP: rc {refused.returncode} {refused.stderr.strip()}"
        app = ["exec", "-e", f"MYSQL_PWD={db.app_password}", init, "mariadb", "--protocol=tcp",
               "--host=127.0.0.1", "--user=items", "-e", "SELECT 1"]
        assert _docker(*app, check_rc=False).returncode == 0, "the application account cannot log in over TCP"
        # What `docker exec` grants: the whole server, through the socket.
        who = sql(init, "SELECT CURRENT_USER()")[0][0]
        grants = [g[0] for g in sql(init, "SHOW GRANTS")]
        assert any(g.startswith("GRANT ALL PRIVILEGES ON *.*") for g in grants), grants
        log(f"docker exec -> {who} via the unix socket: {grants[0][:60]}...")

    def limits_512m():
        assert buffer_pool(init) == 256 * MIB, f"innodb_buffer_pool_size {buffer_pool(init) // MIB}M with a 512m limit"
        assert "innodb_buffer_pool_size 256M" in db.logs(init), "the entrypoint did not log the buffer pool size"
        max_conn = int(sql(init, "SELECT @@max_connections")[0][0])
        assert max_conn + 1 + PIDS_RESERVE <= 256, \
            f"max_connections {max_conn}: + 1 admin + {PIDS_RESERVE} other threads exceeds compose's pids_limit 256"

    check("db image: MariaDB server and client at the version pinned in mysql/Dockerfile", pinned)
    check("db image: root only as root@localhost; root over TCP refused; docker exec = full admin on the socket",
          root_local_only)
    check("db image: 512m limit -> innodb_buffer_pool_size 256M (logged); max_connections fits pids_limit 256",
          limits_512m)
    db.stop(init)

    # --- a MariaDB version change: the datadir says an older version ------------------------------------
    def rewritten():
        db.volume_shell(f"printf '%s' '{OLD_VERSION}' > /var/lib/mysql/mysql_upgrade_info")
        state["upgraded"] = name = db.start("upgrade", root_secret="", app_secret="rotated-" + db.app_password)
        db.wait_healthy(name)

    if not check("db image: restart after mysql_upgrade_info was set to an older version "
                 "(root secret empty, app secret changed): healthy", rewritten):
        return
    upgraded = state["upgraded"]

    def upgrade():
        text = db.logs(upgraded)
        assert "MariaDB version change" in text and "upgrade complete" in text, \
            f"no upgrade in the log: {text[-1200:]}"
        server = sql(upgraded, "SELECT VERSION()")[0][0]
        info = _docker("exec", upgraded, "cat", "/var/lib/mysql/mysql_upgrade_info").stdout.strip()
        assert info.split("-")[0] == server.split("-")[0], f"mysql_upgrade_info {info!r}, server {server}"
        found = _docker("exec", upgraded, "sh", "-c",
                        "ls /var/lib/mysql/mysql-system-backup-*.sql").stdout.split()
        assert len(found) == 1 and f"-{OLD_VERSION}-to-" in found[0], f"backups: {found}"
        state["backup"] = found[0]
        dump = _docker("exec", upgraded, "cat", found[0]).stdout
        assert any(line.startswith("-- MariaDB dump") for line in dump.splitlines()[:3]), dump[:200]
        assert dump.rstrip("\n").splitlines()[-1].startswith("-- Dump completed"), dump[-200:]
        for needle in ("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql`", "CREATE TABLE `global_priv`",
                       "INSERT INTO `global_priv`"):
            assert needle in dump, f"{needle!r} not in the backup"
        mode = _docker("exec", upgraded, "stat", "-c", "%a", found[0]).stdout.strip()
        assert mode == "600", f"backup mode {mode}"
        log(f"upgraded {OLD_VERSION} -> {info}; backup {found[0]} ({len(dump)} bytes)")

    def backup_loads():
        # The dump is valid SQL: it loads, as another schema, into the running server.
        script = ("mariadb -e 'CREATE DATABASE dump_check' && "
                  "sed -e '/^CREATE DATABASE/d' -e 's/^USE `mysql`;/USE `dump_check`;/' \"$0\" | mariadb && "
                  "mariadb --batch --skip-column-names -e "
                  "'SELECT COUNT(*) FROM dump_check.global_priv WHERE User = \"root\"; DROP DATABASE dump_check'")
        out = _docker("exec", upgraded, "sh", "-c", script, state["backup"], timeout=120).stdout.split()
        assert out == ["1"], f"root accounts in the loaded backup: {out}"

    def data_kept():
        rows = sql(upgraded, f"SELECT COUNT(*) FROM items WHERE name = '{marker}'", database="items")
        assert rows == [["1"]], f"the row written before the upgrade: {rows}"

    def no_password_needed():
        # started and healthy with an empty root secret and another app password (checked above);
        # the account keeps the password it had: the entrypoint never applies the file again.
        app = ["exec", "-e", f"MYSQL_PWD={db.app_password}", upgraded, "mariadb", "--protocol=tcp",
               "--host=127.0.0.1", "--user=items", "-e", "SELECT 1"]
        assert _docker(*app, check_rc=False).returncode == 0, "the application account's password changed"

    def no_limit():
        assert buffer_pool(upgraded) == derive_buffer_pool(0) == 128 * MIB, \
            f"innodb_buffer_pool_size {buffer_pool(upgraded) // MIB}M without a memory limit"

    check("db upgrade: logged, mysql_upgrade_info = the server's version, a 0600 SQL dump of the `mysql` "
          "schema in the volume", upgrade)
    if "backup" in state:
        check("db upgrade: the system-table backup loads as SQL (into a scratch schema)", backup_loads)
    check("db upgrade: the row written before the upgrade is still there", data_kept)
    check("db secrets: an initialised datadir starts with an empty root secret and a changed app secret, "
          "the account's password untouched", no_password_needed)
    check("db limits: no memory limit -> innodb_buffer_pool_size 128M (my.cnf)", no_limit)
    db.stop(upgraded)

    # --- a second restart: nothing to upgrade; no secret files at all -------------------------------------
    def second_restart():
        state["again"] = name = db.start("again", memory="300m")
        db.wait_healthy(name)
        text = db.logs(name)
        assert "MariaDB version change" not in text, "upgraded again"
        found = _docker("exec", name, "sh", "-c", "ls /var/lib/mysql/mysql-system-backup-*.sql").stdout.split()
        assert found == [state.get("backup")], f"backups now {found}, after the upgrade {state.get('backup')}"

    def limit_300m():
        want = derive_buffer_pool(300 * MIB)
        assert buffer_pool(state["again"]) == want == 144 * MIB, \
            f"innodb_buffer_pool_size {buffer_pool(state['again']) // MIB}M with a 300m limit (want 144M)"

    if check("db secrets+upgrade: a second restart with no secret file mounted is healthy and does not upgrade again",
             second_restart):
        check("db limits: 300m limit -> innodb_buffer_pool_size 144M (150M rounded down to 8M)", limit_300m)
    if "again" in state:  # one server at a time on the volume, whatever failed
        db.stop(state["again"])

    # --- MARIADB_AUTO_UPGRADE=0 and an explicit INNODB_BUFFER_POOL_SIZE --------------------------------
    def opt_out():
        db.volume_shell(f"printf '%s' '{OLD_VERSION}' > /var/lib/mysql/mysql_upgrade_info")
        state["optout"] = name = db.start("optout", memory="512m",
                                          env={"MARIADB_AUTO_UPGRADE": "0", "INNODB_BUFFER_POOL_SIZE": "64M"})
        db.wait_healthy(name)
        text = db.logs(name)
        assert "NOT upgrading" in text and "upgrade complete" not in text, text[-800:]
        info = _docker("exec", name, "cat", "/var/lib/mysql/mysql_upgrade_info").stdout.strip()
        assert info == OLD_VERSION, f"mysql_upgrade_info {info!r}"

    def explicit_pool():
        assert buffer_pool(state["optout"]) == 64 * MIB, \
            f"innodb_buffer_pool_size {buffer_pool(state['optout']) // MIB}M with INNODB_BUFFER_POOL_SIZE=64M"

    if check("db upgrade: MARIADB_AUTO_UPGRADE=0 logs the version mismatch and leaves the datadir as it is",
             opt_out):
        check("db limits: INNODB_BUFFER_POOL_SIZE=64M wins over the 512m limit", explicit_pool)
    if "optout" in state:
        db.stop(state["optout"])

    # --- a failed upgrade: mariadb-upgrade cannot write mysql_upgrade_info (made a directory) ------------
    def failed_upgrade():
        db.volume_shell("rm -f /var/lib/mysql/mysql_upgrade_info && mkdir /var/lib/mysql/mysql_upgrade_info")
        name = db.start("failed")
        def ended():  # the container's state once it exited, "healthy" if the server came up instead
            st = json.loads(_docker("inspect", name).stdout)[0]["State"]
            if not st["Running"]:
                return st
            return "healthy" if _docker("exec", name, "healthcheck.sh", check_rc=False).returncode == 0 else None

        st = wait_for(ended, START_TIMEOUT, 0.3)
        assert st and st != "healthy", f"{name} {st or 'still running'} after a failed upgrade: {db.logs(name)[-600:]}"
        text = db.logs(name)
        assert st["ExitCode"] == 1, f"exit code {st['ExitCode']}: {text[-600:]}"
        assert re.search(r"ERROR: mariadb-upgrade from .* failed .*the server is not started", text), text[-800:]
        assert "starting mariadbd" not in text, "the server was started after the failed upgrade"

    check("db upgrade: a failed mariadb-upgrade stops the container (exit 1) with a message", failed_upgrade)


def check_running_db(container, docker=_docker):
    """Checks of a running stack's db container: root is local only, the buffer pool follows the
    container's memory limit, max_connections fits its pids limit. docker(*args, timeout=, check_rc=)
    runs the docker CLI (test_compose.py's docker() fits)."""
    def no_remote_root():
        roots = sql(container, "SELECT User, Host FROM mysql.global_priv WHERE User = 'root'", docker)
        assert roots == [["root", "localhost"]], f"root accounts: {roots}"

    def pool_follows_limit():
        info = json.loads(docker("inspect", container).stdout)[0]
        env = dict(e.split("=", 1) for e in info["Config"]["Env"] if "=" in e)
        limit = info["HostConfig"].get("Memory") or 0
        got = buffer_pool(container, docker)
        if env.get("INNODB_BUFFER_POOL_SIZE"):
            log(f"INNODB_BUFFER_POOL_SIZE={env['INNODB_BUFFER_POOL_SIZE']} set: {got // MIB}M")
            return
        want = derive_buffer_pool(limit)
        assert got == want, f"innodb_buffer_pool_size {got // MIB}M, memory limit {limit // MIB} MiB -> want {want // MIB}M"
        log(f"db: memory limit {limit // MIB} MiB, innodb_buffer_pool_size {got // MIB}M")

    def connections_fit_pids():
        info = json.loads(docker("inspect", container).stdout)[0]
        pids = info["HostConfig"].get("PidsLimit") or 0
        max_conn = int(sql(container, "SELECT @@max_connections", docker)[0][0])
        assert pids > 0, "no pids limit on the db container"
        assert max_conn + 1 + PIDS_RESERVE <= pids, \
            f"max_connections {max_conn} + 1 admin + {PIDS_RESERVE} other threads > pids_limit {pids}"

    check("db (running): no remote root account, root@localhost only", no_remote_root)
    check("db (running): innodb_buffer_pool_size derived from the container's memory limit", pool_follows_limit)
    check("db (running): max_connections + server threads fit in the pids limit", connections_fit_pids)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] in ("-h", "--help"):
        print("usage: db_checks.py IMAGE [DOCKER_PREFIX]   (e.g. items-db:latest; builds nothing)")
        sys.exit(2)
    run_all(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else f"dbchecks-{os.getpid()}")
    sys.exit(checks.finish())
