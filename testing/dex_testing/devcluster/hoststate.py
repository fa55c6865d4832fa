"""What a real node changes on this machine: snapshot it before ``up``, put it back at ``down``.

A kubelet, containerd, the CNI plugins and kube-proxy reach beyond the folders they are
configured with: kernel tunables, ``/kubepods`` cgroups in every hierarchy, iptables chains,
network links, mounts, and a few hard-coded paths. :func:`take_snapshot` records all of that
(scoped so other tools' concurrent work on the machine does not show), :func:`restore` undoes
what the node added, and :meth:`HostSnapshot.diff` says what still differs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)

# The node's machine-wide folder: its claim and containerd's sockets (node.RUN_DIR).
NODE_RUN_DIR = "/run/dex-devnode"

# Executables only a node runs; their processes belong to a node wherever they come from.
NODE_EXECUTABLES = frozenset(
    {"containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "kube-scheduler"}
)

# Tunables the kubelet (setupKernelTunables), the bridge plugin (isGateway) and kube-proxy
# (route_localnet, conntrack sizing) may set; the dev node's configs avoid the last ones.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)

# Paths used whatever the components are configured with (device plugins, container log
# links, containerd's shim sockets and FIFOs, libcni's result cache, ...), and the defaults
# the dev node moves elsewhere, so a regression that falls back to one shows up.
HARD_CODED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/etc/kubernetes",
    "/run/kubernetes",
    "/usr/libexec/kubernetes",
    "/var/lib/kube-proxy",
)

IPTABLES = ("iptables", "ip6tables")
IPTABLES_TABLES = ("filter", "nat", "mangle")
# Chains and rules the node's components own (kubelet, kube-proxy, CNI portmap/bridge).
NODE_CHAIN_PREFIXES = ("KUBE-", "CNI-")

# Where a node mounts: its folder (kubelet root, containerd root/state, netns pins), the
# hard-coded paths, network namespaces and cgroups. Other tools on the machine (buildah's
# image storage, say) mount and unmount elsewhere concurrently; that is not the node's.
MOUNT_SCOPE = (*HARD_CODED_PATHS, NODE_RUN_DIR, "/var/run/netns", "/sys/fs/cgroup", "/proc/sys")

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Top-level cgroups other container tools create and remove while a node runs (buildah's
# RUN steps with cgroupfs, podman); a node never makes these.
FOREIGN_CGROUP_PREFIXES = ("buildah-", "libpod")
_MNT_DETACH = 2


class HostSnapshot(BaseModel):
    """The parts of the machine a node touches, each as sorted lines for easy diffs."""

    processes: list[str]
    mounts: list[str]
    links: list[str]
    addresses: list[str]
    routes: list[str]
    iptables: dict[str, list[str]]
    cgroups: list[str]
    sysctls: dict[str, str | None]
    paths: dict[str, list[str] | None]  # None: absent; else the folder's entries

    def diff(self, other: HostSnapshot) -> list[str]:
        """Human-readable differences ``self`` → ``other`` (empty when equal)."""
        out: list[str] = []

        def lines(kind: str, before: list[str], after: list[str]) -> None:
            b, a = Counter(before), Counter(after)
            out.extend(f"{kind}: - {line}" for line in sorted((b - a).elements()))
            out.extend(f"{kind}: + {line}" for line in sorted((a - b).elements()))

        lines("process", self.processes, other.processes)
        lines("mount", self.mounts, other.mounts)
        lines("link", self.links, other.links)
        lines("address", self.addresses, other.addresses)
        lines("route", self.routes, other.routes)
        for key in sorted(set(self.iptables) | set(other.iptables)):
            lines(key, self.iptables.get(key, []), other.iptables.get(key, []))
        lines("cgroup", self.cgroups, other.cgroups)
        for name in sorted(set(self.sysctls) | set(other.sysctls)):
            if self.sysctls.get(name) != other.sysctls.get(name):
                was, now = self.sysctls.get(name), other.sysctls.get(name)
                out.append(f"sysctl {name}: {was} -> {now}")
        for path in sorted(set(self.paths) | set(other.paths)):
            was_p, now_p = self.paths.get(path), other.paths.get(path)
            if was_p != now_p:
                out.append(f"path {path}: {was_p} -> {now_p}")
        return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class _Process(BaseModel):
    pid: int
    exe: str
    cmdline: str
    in_pod: bool
    named: bool

    def line(self) -> str:
        where = "pod " if self.in_pod else ""
        return f"{where}pid={self.pid} {self.exe}: {self.cmdline[:200]}"


def _scan(work_dir: Path | None) -> list[_Process]:
    """Processes of a node: its executables, anything in a kubepods cgroup (pods), and
    anything whose command line names ``work_dir`` or the node's run folder (etcd, API
    server, runc, containerd's shims)."""
    found: list[_Process] = []
    mine = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (entry / "cgroup").read_text()
            exe = os.path.basename(os.readlink(entry / "exe")).removesuffix(" (deleted)")
        except OSError:  # exited meanwhile, or a kernel thread without exe
            continue
        proc = _Process(
            pid=int(entry.name),
            exe=exe,
            cmdline=cmdline.strip(),
            in_pod="kubepods" in cgroups,
            named=NODE_RUN_DIR in cmdline or (work_dir is not None and str(work_dir) in cmdline),
        )
        if proc.exe in NODE_EXECUTABLES or proc.in_pod or proc.named:
            found.append(proc)
    return found


def _processes(work_dir: Path | None) -> list[str]:
    return sorted(p.line() for p in _scan(work_dir))


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")  # mountinfo octal-escapes space, tab, \n


def _mounts(work_dir: Path | None = None) -> list[str]:
    """``mountpoint fstype source propagation`` of the mounts a node could make: at or under
    its folder and :data:`MOUNT_SCOPE`, plus the propagation of ``/`` (a kubelet makes its
    root shared)."""
    roots = [*MOUNT_SCOPE, *([str(work_dir)] if work_dir is not None else [])]
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        point = _unescape(fields[4])
        if point != "/" and not _under(point, roots):
            continue
        propagation = ",".join(f.split(":")[0] for f in fields[6:sep]) or "private"
        out.append(f"{point} {fields[sep + 1]} {_unescape(fields[sep + 2])} {propagation}")
    return sorted(out)


def _links_json() -> list[dict[str, object]]:
    out = subprocess.run(
        ["ip", "-d", "-j", "link", "show"], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out))


def _links() -> list[str]:
    out = []
    for link in _links_json():
        info = link.get("linkinfo")
        kind = info.get("info_kind") if isinstance(info, dict) else None
        out.append(f"{link['ifname']} {kind or link.get('link_type')}")
    return sorted(out)


def _addresses() -> list[str]:
    out = subprocess.run(["ip", "-j", "addr", "show"], check=True, capture_output=True, text=True)
    return sorted(
        f"{link['ifname']} {addr['local']}/{addr['prefixlen']}"
        for link in json.loads(out.stdout)
        for addr in link.get("addr_info", [])
    )


def _routes() -> list[str]:
    lines = []
    for family in ("-4", "-6"):
        out = subprocess.run(
            ["ip", family, "route", "show", "table", "all"],
            check=True,
            capture_output=True,
            text=True,
        )
        lines += [" ".join(line.split()) for line in out.stdout.splitlines() if line.strip()]
    return sorted(lines)


def _iptables_save(binary: str, table: str) -> list[str] | None:
    if shutil.which(f"{binary}-save") is None:
        return None
    result = subprocess.run(
        [f"{binary}-save", "-t", table], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    rules = []
    for line in result.stdout.splitlines():
        if line.startswith(":"):  # ":CHAIN POLICY [packets:bytes]": counters change
            rules.append(" ".join(line.split()[:2]))
        elif line.startswith("-A "):
            rules.append(line)
    return rules


def _iptables() -> dict[str, list[str]]:
    out = {}
    for binary in IPTABLES:
        for table in IPTABLES_TABLES:
            rules = _iptables_save(binary, table)
            if rules is not None:
                out[f"{binary}/{table}"] = rules
    return out


def _hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        return [CGROUP_ROOT]
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and os.path.ismount(p))


def _cgroups() -> list[str]:
    """Top-level cgroups of every hierarchy, and everything under the kubelet's kubepods."""
    out = []
    for hierarchy in _hierarchies():
        for child in hierarchy.iterdir():
            if not child.is_dir() or child.name.startswith(FOREIGN_CGROUP_PREFIXES):
                continue
            out.append(str(child))
            if child.name.startswith("kubepods"):
                out.extend(str(p) for p, _, _ in os.walk(child) if p != str(child))
    return sorted(out)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _sysctls() -> dict[str, str | None]:
    return {
        name: None if (v := _read(_sysctl_path(name))) is None else v.strip() for name in SYSCTLS
    }


def _paths() -> dict[str, list[str] | None]:
    out: dict[str, list[str] | None] = {}
    for raw in HARD_CODED_PATHS:
        path = Path(raw)
        if path.is_dir():
            out[raw] = sorted(os.listdir(path))
        else:
            out[raw] = [] if path.exists() else None
    return out


def take_snapshot(work_dir: Path | None = None) -> HostSnapshot:
    return HostSnapshot(
        processes=_processes(work_dir),
        mounts=_mounts(work_dir),
        links=_links(),
        addresses=_addresses(),
        routes=_routes(),
        iptables=_iptables(),
        cgroups=_cgroups(),
        sysctls=_sysctls(),
        paths=_paths(),
    )


# ---------------------------------------------------------------------------------------
# Restoring


# What a node's teardown may kill when it names the node's folder: its own components, the
# shims and runc calls of its containerd; never, say, a `tail -f` of one of its logs.
_KILLABLE = NODE_EXECUTABLES | {
    "runc",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "coredns",  # the cluster DNS (dns.py); its Corefile is in the node's folder
}


def kill_node_processes(work_dir: Path) -> list[str]:
    """SIGKILL what is left of a node (shims, pod processes) after its components stopped."""
    killed = []
    for proc in _scan(work_dir):
        if proc.in_pod or (proc.named and proc.exe in _KILLABLE):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.line())
    return killed


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def unmount_under(roots: list[Path]) -> list[str]:
    """Unmount every mount at or below ``roots``, deepest first (lazily if busy)."""
    libc = ctypes.CDLL(None, use_errno=True)
    names = [str(r) for r in roots]
    done: list[str] = []
    for _ in range(20):  # stacked mounts at one point come off one per pass
        points = sorted(
            {m.split(" ", 1)[0] for m in _mounts(roots[0]) if _under(m.split(" ", 1)[0], names)},
            key=lambda p: p.count("/"),
            reverse=True,
        )
        if not points:
            break
        for point in points:
            if libc.umount2(point.encode(), 0) != 0:
                libc.umount2(point.encode(), _MNT_DETACH)
            done.append(point)
    return done


def delete_links(names: list[str], bridge: str) -> list[str]:
    """Delete the veths still enslaved to ``bridge``, then the links in ``names``."""
    deleted = []
    links = _links_json()
    veths = [str(link["ifname"]) for link in links if link.get("master") == bridge]
    present = {str(link["ifname"]) for link in links}
    for name in [*veths, *(n for n in names if n in present)]:
        subprocess.run(["ip", "link", "delete", name], check=False, capture_output=True)
        deleted.append(name)
    return deleted


def _node_rule(rule: str, extra_markers: tuple[str, ...]) -> bool:
    return any(marker in rule for marker in (*NODE_CHAIN_PREFIXES, *extra_markers))


def restore_iptables(before: HostSnapshot, extra_markers: tuple[str, ...] = ()) -> list[str]:
    """Remove the rules and chains the node added (KUBE-*, CNI-*, or naming a marker such as
    the pod CIDR or the bridge), leaving everything else — others' rules — untouched."""
    changes = []
    now = _iptables()
    for key, rules in now.items():
        binary, table = key.split("/")
        had = Counter(before.iptables.get(key, []))
        added = list((Counter(rules) - had).elements())
        new_rules = [r for r in added if r.startswith("-A ") and _node_rule(r, extra_markers)]
        new_chains = [
            r.split()[0][1:]
            for r in added
            if r.startswith(":") and r[1:].startswith(NODE_CHAIN_PREFIXES)
        ]
        base = [binary, "-w", "-t", table]
        for rule in new_rules:
            chain = rule.split()[1]
            if chain in new_chains:
                continue  # flushed with its chain below
            args = shlex.split(rule)[1:]
            subprocess.run([*base, "-D", *args], check=False, capture_output=True)
            changes.append(f"{key} -D {' '.join(args)}")
        for chain in new_chains:
            subprocess.run([*base, "-F", chain], check=False, capture_output=True)
        for chain in new_chains:
            subprocess.run([*base, "-X", chain], check=False, capture_output=True)
            changes.append(f"{key} -X {chain}")
    return changes


def remove_cgroups(before: HostSnapshot) -> list[str]:
    """Remove the kubepods cgroups the node created, in every hierarchy, leaves first."""
    had = set(before.cgroups)
    removed = []
    for hierarchy in _hierarchies():
        for top in hierarchy.glob("kubepods*"):
            if str(top) in had or not top.is_dir():
                continue
            for path, _, _ in sorted(os.walk(top), key=lambda w: w[0].count("/"), reverse=True):
                for pid in (_read(Path(path) / "cgroup.procs") or "").split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                    removed.append(path)
    return removed


def remove_paths(before: HostSnapshot) -> list[str]:
    """Delete the hard-coded paths (or the entries in them) that were not there before."""
    removed = []
    for raw, had in before.paths.items():
        path = Path(raw)
        if not path.exists() and not path.is_symlink():
            continue
        if had is None:
            targets = [path]
        elif path.is_dir():
            targets = [path / name for name in sorted(set(os.listdir(path)) - set(had))]
        else:
            targets = []
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            removed.append(str(target))
    return removed


def restore_sysctls(before: HostSnapshot) -> list[str]:
    changed = []
    for name, value in before.sysctls.items():
        path = _sysctl_path(name)
        current = _read(path)
        if value is None or current is None or current.strip() == value:
            continue
        try:
            path.write_text(value)
            changed.append(f"{name}={value}")
        except OSError as exc:
            log.warning("cannot restore %s=%s: %s", name, value, exc)
    return changed
