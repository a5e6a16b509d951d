#!/usr/bin/env python3
"""Turn compose's merged configuration of compose.yaml + compose.swarm.yaml into a stack file.

usage: compose config | scripts/lib/stackfile.py [--stack NAME] [--profiles LIST]
           [--keep-image SERVICE=IMAGE]... [--explain] > stack.json

Reads the output of `docker-compose -f compose.yaml -f compose.swarm.yaml config` (YAML, compose
1.29) or `docker compose ... config --format json` (v2) on stdin, writes a stack file for
`docker stack deploy -c` on stdout (JSON, which is YAML). Compose has already interpolated the
variables and merged the two files; this only translates what `docker stack deploy` (Docker 20.10
and later) rejects or silently drops, so that every setting of compose.yaml either reaches the Swarm
service or is listed here as left out on purpose:

  rejected by docker stack deploy        done here
  mem_limit ("forbidden property")       -> deploy.resources.limits.memory
  pids_limit (schema error)              -> deploy.resources.limits.pids (Docker 20.10: --limit-pids)
  cpus (schema error)                    -> deploy.resources.limits.cpus, unless compose.swarm.yaml
                                            sets that (its per-replica value wins)
  depends_on, long form (schema error)   dropped: Swarm has no start-up order; the api answers 503
                                            until the db is up, nginx 502 until an api task is healthy
  profiles (schema error)                the service is left out (it is opt-in in compose), unless
                                            one of its profiles is in --profiles (COMPOSE_PROFILES):
                                            then it is kept, without the key
  top-level name (v2 output)             dropped
  silently dropped or ignored            done here
  tmpfs: ["/path:uid=..,mode=..,size=.."] dropped when compose.swarm.yaml mounts a volume on the same
                                            path; otherwise -> volumes: {type: tmpfs, target,
                                            tmpfs.size}: Swarm takes no uid=, and the mount gets the
                                            mode of the image's directory (fine for a 1777 /tmp)
  build, restart, container_name         dropped (images are built before; deploy.restart_policy)
  the volume api-socket, group_add       dropped: the api's unix socket (compose's API_TRANSPORT=unix)
                                            needs front and api on one host; compose.swarm.yaml
                                            sets API_TRANSPORT=tcp (group_add: no Swarm equivalent)
  ulimits                                dropped: Swarm services take none before Docker 23 (the
                                            engine's default, higher than compose's, applies)
  security_opt (no-new-privileges)       dropped: Swarm services cannot set it before Docker 27
  deploy.placement.constraints: [""]     an empty constraint (FRONT_PLACEMENT unset) is dropped
  deploy.replicas with mode: global      dropped (FRONT_MODE=global: one task a node)
  max_replicas_per_node                  cast to an integer; 0 (no limit) dropped
  network driver_opts encrypted: off     the option dropped (Docker encrypts when it is present, whatever
                                            its value): OVERLAY_ENCRYPTION=off
  networks.*.ipv4_address, network ipam  dropped (compose's fixed front address; overlay subnets are
                                            allocated by Swarm)
  ports "ip:published:target" (or v2's   dropped when compose.swarm.yaml publishes the same target
  long form with host_ip)                   (Swarm has no host address); otherwise -> host mode,
                                            except on a loopback address (Prometheus' UI): dropped,
                                            host mode would publish it on every address of the node
Also: numbers that the stack schema wants as strings (cpus) or integers (published ports) are cast.

--stack NAME: every secret read from a file is named NAME_<secret>-<first 12 hex digits of the
SHA-256 of its content>. A Swarm secret cannot change, so a changed file (a rotated API token)
becomes a new secret, and the services that use it roll over to it like any other update
(start-first for the api); scripts/deploy.sh removes the versions no service uses any more.
--keep-image SERVICE=IMAGE: the service runs IMAGE instead of compose's image. scripts/deploy.sh
passes a service's current image when the one just pushed has the same digest: named by the new
commit, an identical image would still change the spec, and Swarm would restart the service's
tasks for nothing (the db, stop-first, answering 503 meanwhile).
--explain prints what was translated on stderr.
"""

import hashlib
import json
import re
import sys

STACK_VERSION = "3.9"  # the highest the Docker 20.10 CLI knows; later CLIs accept it too

SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)b?\s*", str(text).lower())
    if not m:
        raise ValueError(f"cannot read the size {text!r}")
    return int(m.group(1)) * SIZE_UNITS[m.group(2)]


def load(text):
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # python3-yaml: a dependency of Debian's docker-compose
    except ImportError:
        sys.exit("stackfile.py: the input is YAML and python3-yaml is missing "
                 "(apt-get install python3-yaml, or give compose v2's `config --format json`)")
    return yaml.safe_load(text)


def tmpfs_mount(spec):
    """'/run/nginx:uid=10001,gid=10001,mode=0700,size=16m' -> a Swarm tmpfs mount."""
    target, _, opts = spec.partition(":")
    mount = {"type": "tmpfs", "target": target}
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key == "size":
            mount["tmpfs"] = {"size": parse_size(value)}
    return mount


SOCKET_VOLUME = "api-socket"


def mount_source(volume):
    if isinstance(volume, dict):
        return volume.get("source")
    parts = str(volume).split(":")
    return parts[0] if len(parts) > 1 else None


def mount_target(volume):
    if isinstance(volume, dict):
        return volume.get("target")
    parts = str(volume).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def short_port(spec):
    """'0.0.0.0:80:8080/tcp' -> (target, long form in host mode)."""
    spec, _, proto = str(spec).partition("/")
    parts = spec.rsplit(":", 2)
    target = int(parts[-1])
    published = int(parts[-2]) if len(parts) >= 2 else target
    return target, {"target": target, "published": published, "protocol": proto or "tcp", "mode": "host"}


def convert_ports(name, ports, notes):
    """compose.yaml publishes "${HTTP_BIND}:${HTTP_PORT}:8080" (compose 1.29 prints it as that
    string, v2 as a long form with host_ip); compose.swarm.yaml publishes the same target in long
    form, with no host address (Swarm has none). For each target, an entry with a host address gives
    way to one without; of several left, the last (the override's) wins. A port given only in
    compose.yaml's short form is published in host mode."""
    entries = []
    for p in ports:
        if isinstance(p, dict):
            entry = {k: v for k, v in p.items() if k != "host_ip"}
            entry["target"] = int(entry["target"])
            if "published" in entry:
                entry["published"] = int(entry["published"])
            entries.append((entry, bool(p.get("host_ip")), p))
        else:
            target, entry = short_port(p)
            entries.append((entry, str(p).count(":") >= 2, p))
    kept = {}
    for entry, has_host_ip, original in entries:
        key = (entry["target"], entry.get("protocol", "tcp"))
        if key in kept and has_host_ip and not kept[key][1]:
            notes.append(f"{name}: port {original} replaced by compose.swarm.yaml's")
            continue
        if key in kept:
            notes.append(f"{name}: port {kept[key][2]} replaced by compose.swarm.yaml's")
        kept[key] = (entry, has_host_ip, original)
    for key, (entry, has_host_ip, original) in list(kept.items()):
        if has_host_ip and is_loopback(original):
            notes.append(f"{name}: port {original} dropped (loopback only: Swarm would publish it on "
                         "every address of the node)")
            del kept[key]
        elif isinstance(original, str):
            notes.append(f"{name}: port {original} -> host mode")
    return [entry for entry, _, _ in kept.values()]


def is_loopback(original):
    """A port published on 127.0.0.1 or ::1 only (short form or v2's long form)."""
    if isinstance(original, dict):
        host = str(original.get("host_ip", ""))
    else:
        host = str(original).split("/")[0].rsplit(":", 2)[0] if str(original).count(":") >= 2 else ""
    return host.strip("[]") in ("127.0.0.1", "::1", "localhost")


def convert_placement(name, deploy, notes):
    placement = deploy.get("placement")
    if deploy.get("mode") == "global" and "replicas" in deploy:
        del deploy["replicas"]
        notes.append(f"{name}: replicas dropped (mode global)")
    if not isinstance(placement, dict):
        return
    if "constraints" in placement:
        kept = [c for c in placement["constraints"] or [] if str(c).strip()]
        if len(kept) != len(placement["constraints"] or []):
            notes.append(f"{name}: empty placement constraint dropped")
        if kept:
            placement["constraints"] = kept
        else:
            del placement["constraints"]
    if "max_replicas_per_node" in placement:
        limit = int(placement["max_replicas_per_node"])
        if limit > 0:
            placement["max_replicas_per_node"] = limit
        else:
            del placement["max_replicas_per_node"]
            notes.append(f"{name}: max_replicas_per_node 0 dropped (no limit)")
    if not placement:
        del deploy["placement"]


OFF_VALUES = ("off", "false", "0", "no")


def convert_network(name, net, notes):
    opts = net.get("driver_opts")
    if isinstance(opts, dict) and "encrypted" in opts:
        if str(opts["encrypted"]).strip().lower() in OFF_VALUES:
            del opts["encrypted"]
            notes.append(f"network {name}: not encrypted (OVERLAY_ENCRYPTION=off)")
        else:
            opts["encrypted"] = ""
            notes.append(f"network {name}: encrypted (IPsec between nodes)")
        if not opts:
            del net["driver_opts"]
    return net


def convert_service(name, svc, notes):
    for key in ("build", "restart", "container_name", "security_opt", "depends_on", "ulimits", "group_add"):
        if key in svc:
            notes.append(f"{name}: {key} dropped")
            del svc[key]
    deploy = svc.setdefault("deploy", {})
    convert_placement(name, deploy, notes)
    limits = deploy.setdefault("resources", {}).setdefault("limits", {})
    if "mem_limit" in svc:
        mem = svc.pop("mem_limit")
        limits.setdefault("memory", str(mem))
        notes.append(f"{name}: mem_limit {mem} -> deploy.resources.limits.memory")
    if "cpus" in svc:
        cpus = svc.pop("cpus")
        if "cpus" in limits:
            notes.append(f"{name}: cpus {cpus} dropped (compose.swarm.yaml's limit {limits['cpus']} applies)")
        else:
            limits["cpus"] = str(cpus)
            notes.append(f"{name}: cpus {cpus} -> deploy.resources.limits.cpus")
    if "pids_limit" in svc:
        pids = int(svc.pop("pids_limit"))
        limits.setdefault("pids", pids)
        notes.append(f"{name}: pids_limit {pids} -> deploy.resources.limits.pids")
    for section in ("limits", "reservations"):
        res = deploy["resources"].get(section) or {}
        if "cpus" in res:
            res["cpus"] = str(res["cpus"])
        if "memory" in res and str(res["memory"]).isdigit():
            res["memory"] = f"{res['memory']}b"
    if any(mount_source(v) == SOCKET_VOLUME for v in svc.get("volumes") or []):
        svc["volumes"] = [v for v in svc["volumes"] if mount_source(v) != SOCKET_VOLUME]
        if not svc["volumes"]:
            del svc["volumes"]
        notes.append(f"{name}: volume {SOCKET_VOLUME} dropped (Swarm: API_TRANSPORT=tcp)")
    if "tmpfs" in svc:
        specs = svc.pop("tmpfs")
        specs = [specs] if isinstance(specs, str) else specs
        volumes = svc.setdefault("volumes", [])
        mounted = {mount_target(v) for v in volumes}
        for spec in specs:
            mount = tmpfs_mount(spec)
            if mount["target"] in mounted:
                notes.append(f"{name}: tmpfs {spec} replaced by compose.swarm.yaml's volume")
            else:
                volumes.append(mount)
                notes.append(f"{name}: tmpfs {spec} -> tmpfs mount (size kept; no owner)")
    if "ports" in svc:
        svc["ports"] = convert_ports(name, svc["ports"], notes)
    nets = svc.get("networks")
    if isinstance(nets, dict):
        for net, conf in nets.items():
            if isinstance(conf, dict):
                for key in ("ipv4_address", "ipv6_address"):
                    if conf.pop(key, None) is not None:
                        notes.append(f"{name}: networks.{net}.{key} dropped")
                nets[net] = conf or None
    # compose v2 writes empty or null keys the 3.x schema does not take
    for key in [k for k, v in svc.items() if v is None]:
        del svc[key]
    return svc


def local_name(entry):
    """Compose v2 names every network, volume and secret after its project (name: items_edge):
    drop that, so that the stack's namespace applies. An external object keeps its name."""
    entry = dict(entry or {})
    if not entry.get("external"):
        entry.pop("name", None)
    return entry


def versioned_secrets(secrets, stack, notes):
    for key, secret in secrets.items():
        if secret.get("external") or "file" not in secret:
            continue
        with open(secret["file"], "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        secret["name"] = f"{stack}_{key}-{digest}"
        notes.append(f"secret {key}: named {secret['name']} (after its content)")


def convert(cfg, notes, stack=None, profiles=()):
    out = {"version": STACK_VERSION}
    services = {}
    for name, svc in (cfg.get("services") or {}).items():
        if svc.get("profiles"):
            if not set(svc["profiles"]) & set(profiles):
                notes.append(f"{name}: left out (profiles {svc['profiles']})")
                continue
            notes.append(f"{name}: kept (profile {sorted(set(svc['profiles']) & set(profiles))[0]} is on)")
            del svc["profiles"]
        services[name] = convert_service(name, svc, notes)
    out["services"] = services
    networks = {}
    for name, net in (cfg.get("networks") or {}).items():
        net = local_name(net)
        if net.pop("ipam", None) is not None:
            notes.append(f"network {name}: ipam dropped (Swarm allocates overlay subnets)")
        net.setdefault("driver", "overlay")
        networks[name] = convert_network(name, net, notes)
    if networks:
        out["networks"] = networks
    for key in ("volumes", "secrets", "configs"):
        if cfg.get(key):
            out[key] = {name: local_name(value) for name, value in cfg[key].items()
                        if not (key == "volumes" and name == SOCKET_VOLUME)}
    if stack and out.get("secrets"):
        versioned_secrets(out["secrets"], stack, notes)
    return out


def keep_images(services, pairs, notes):
    """Each SERVICE=IMAGE of pairs: that service's image replaced by IMAGE."""
    for pair in pairs:
        name, _, image = pair.partition("=")
        if name not in services or not image:
            sys.exit(f"stackfile.py: --keep-image {pair!r}: not SERVICE=IMAGE of a service of the stack")
        notes.append(f"{name}: keeps {image} (compose's {services[name].get('image')} has its digest)")
        services[name]["image"] = image


def main():
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        return 0
    cfg = load(sys.stdin.read())
    if not isinstance(cfg, dict) or "services" not in cfg:
        sys.exit("stackfile.py: the input is not a compose configuration")
    args = sys.argv[1:]
    stack_name = None
    if "--stack" in args:
        stack_name = args[args.index("--stack") + 1]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", stack_name):
            sys.exit(f"stackfile.py: bad stack name {stack_name!r}")
    profiles = ()
    if "--profiles" in args:
        profiles = [p for p in args[args.index("--profiles") + 1].split(",") if p]
    notes = []
    stack = convert(cfg, notes, stack_name, profiles)
    keep_images(stack["services"], [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--keep-image"], notes)
    json.dump(stack, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    if "--explain" in sys.argv[1:]:
        for note in notes:
            print(f"[stackfile] {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
