"""A real node next to the dev control plane: containerd + runc + CNI bridge (Debian
packages), kubelet and kube-proxy (built by ``make node``), so pods really run.

Everything the node can keep in the cluster's folder lives there (containerd's root, state and
socket, runc's state, the kubelet's root, pod logs, CNI config and IPAM data). What it cannot
(kernel tunables, cgroups, iptables chains, links, a few hard-coded paths; see
``hoststate``) is snapshotted before anything starts and restored by :func:`release_machine`.
Those machine-wide resources make a node exclusive: one per machine, claimed through
:data:`CLAIM_FILE`, which also lets a later run clean up after one that crashed. The claim's
folder :data:`RUN_DIR` also holds containerd's sockets and the kubelet's root (its sockets
and pod volumes): a cluster folder (a pytest tmp_path, say) is often too deep for a unix
socket path (104 bytes).

Addresses come from 198.18.0.0/15 (RFC 2544, for test networks): the node IP sits on a
port-less bridge that stands in for a dummy link (this kernel has no dummy driver), pods on
the CNI bridge with no masquerading and no default route, so pod traffic reaches the node
and Services but never leaves the machine. Cluster DNS is CoreDNS on the node IP (``dns``;
on by default): pods resolve ``<svc>.<ns>``, and nothing outside ``cluster.local``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from dex_testing import SOURCE_ROOT
from dex_testing.devcluster import hoststate
from dex_testing.devcluster.assets import Assets
from dex_testing.devcluster.hoststate import HostSnapshot
from dex_testing.devcluster.images import ImageSpec, write_oci_archive
from dex_testing.devcluster.kubeconfig import write_cert_kubeconfig
from dex_testing.devcluster.pki import Pki
from dexctl.processes import Child, ProcessRecord, free_ports, is_running

log = logging.getLogger(__name__)

RUN_DIR = Path(hoststate.NODE_RUN_DIR)
CLAIM_FILE = RUN_DIR / "claim.json"
CTR = "ctr"
CRI_NAMESPACE = "k8s.io"
# Where `make images` (tools/images/build.sh) leaves its archives; it honours the same variable.
DEFAULT_IMAGES_DIR = Path(
    os.environ.get("DEX_IMAGES_DIR") or Path.home() / ".cache" / "dex" / "images"
)


class NodeBusyError(RuntimeError):
    """Another node runs on this machine (kubelet, containerd and the cgroups are global)."""


class MissingNodeToolsError(RuntimeError):
    """containerd/runc/CNI plugins or the node binaries are not installed (``make node``)."""


class NodeConfig(BaseModel):
    name: str = "dex-node"
    ip: str = Field(default="198.18.2.1", description="Node IP, on the node_link.")
    pod_cidr: str = "198.18.0.0/24"
    default_service_cidr: str = "198.18.1.0/24"
    bridge: str = Field(default="dex-br0", description="The pods' bridge (CNI).")
    node_link: str = Field(default="dex-node0", description="Link holding the node IP.")
    image_archives: list[Path] = Field(
        default_factory=list,
        description="OCI/docker image archives to import into containerd (imagePullPolicy: "
        "Never); each image is also tagged <repository>:dev (see DEV_TAG).",
    )
    dns: bool = Field(
        default=True,
        description="Run CoreDNS (make coredns) on the node IP as the pods' cluster DNS.",
    )
    ready_timeout: float = Field(default=120.0, gt=0)
    drain_timeout: float = Field(default=60.0, gt=0)


class NodeState(BaseModel):
    """A started node, as recorded with the cluster (``dexctl dev cluster down`` reads it)."""

    name: str
    ip: str
    pod_cidr: str
    service_cidr: str
    bridge: str
    node_link: str
    containerd_socket: Path
    kubelet_root: Path
    images: list[str] = Field(default_factory=list)
    pause_image: str
    hello_image: str
    timings: dict[str, float] = Field(default_factory=dict)
    before: HostSnapshot


class _Claim(BaseModel):
    owner_pid: int
    work_dir: Path
    before: HostSnapshot
    node: NodeState | None = None
    processes: list[ProcessRecord] = Field(default_factory=list)


Progress = Callable[[str], None]


def _run(argv: list[str], *, timeout: float = 120.0) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "pause", "hello")


def ensure_node_tools() -> None:
    """Install the node's Debian packages and build its binaries if missing (``make node``)."""
    subprocess.run(["bash", str(SOURCE_ROOT / "tools" / "system-deps.sh"), "node"], check=True)
    subprocess.run(
        ["bash", str(SOURCE_ROOT / "tools" / "envtest" / "build.sh"), "--node"], check=True
    )
    subprocess.run(["bash", str(SOURCE_ROOT / "tools" / "coredns" / "build.sh")], check=True)


def check_tools(assets: Assets) -> None:
    missing = [
        name
        for name in ("containerd", "containerd-shim-runc-v2", "runc", CTR, "iptables", "ip")
        if _which(name) is None
    ]
    missing += [
        p for p in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local") if not Path(p).exists()
    ]
    missing += [
        str(assets.folder / b) for b in NODE_BINARIES if not os.access(assets.folder / b, os.X_OK)
    ]
    if os.geteuid() != 0:
        missing.append("root (a node mounts, sets up links, iptables and cgroups)")
    if missing:
        raise MissingNodeToolsError(
            f"a dev node needs {missing}; run `make node` (Debian packages + node binaries)"
        )


def _which(name: str) -> str | None:
    for folder in [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin"]:
        candidate = Path(folder) / name
        if folder and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# ---------------------------------------------------------------------------------------
# Claiming the machine


def _claim_alive(claim: _Claim) -> bool:
    if any(is_running(p) for p in claim.processes):
        return True
    # Still starting (nothing recorded yet) while the process that claimed runs.
    return not claim.processes and Path(f"/proc/{claim.owner_pid}").exists()


def read_claim() -> _Claim | None:
    try:
        return _Claim.model_validate_json(CLAIM_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return None


def claim_machine(work_dir: Path, progress: Progress) -> HostSnapshot:
    """Take the machine for one node and snapshot it first; recover a crashed node's leftovers."""
    for _ in range(3):
        RUN_DIR.mkdir(mode=0o755, exist_ok=True)
        try:
            fd = os.open(CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            claim = read_claim()
            if claim is not None and _claim_alive(claim):
                raise NodeBusyError(
                    f"a dev node already runs on this machine (folder {claim.work_dir}, claimed "
                    f"by pid {claim.owner_pid}); stop it first (`dexctl dev cluster down`)"
                ) from None
            progress(f"cleaning up after a node that did not stop ({CLAIM_FILE})")
            if claim is not None:
                release_machine(claim.before, claim.work_dir, claim.node, kube_proxy=None)
            shutil.rmtree(RUN_DIR, ignore_errors=True)
            continue
        with os.fdopen(fd, "w") as out:
            before = hoststate.take_snapshot(work_dir)
            claim = _Claim(owner_pid=os.getpid(), work_dir=work_dir, before=before)
            out.write(claim.model_dump_json())
        if before.processes:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
            raise NodeBusyError(
                "node processes already run on this machine, not started by a dev cluster: "
                + "; ".join(before.processes)
            )
        return before
    raise NodeBusyError(f"could not claim {CLAIM_FILE}")


def record_claim(work_dir: Path, node: NodeState, processes: list[ProcessRecord]) -> None:
    claim = _Claim(
        owner_pid=os.getpid(),
        work_dir=work_dir,
        before=node.before,
        node=node,
        processes=processes,
    )
    tmp = CLAIM_FILE.with_suffix(".tmp")
    tmp.write_text(claim.model_dump_json())
    tmp.replace(CLAIM_FILE)


def release_machine(
    before: HostSnapshot,
    work_dir: Path,
    node: NodeState | None,
    *,
    kube_proxy: Path | None,
) -> list[str]:
    """Undo what a node changed on the machine; its components must already be stopped.

    Returns what it had to do (for the log); the caller then compares a new snapshot.
    """
    done = [f"killed {p}" for p in hoststate.kill_node_processes(work_dir)]
    if kube_proxy is not None and kube_proxy.exists():
        # kube-proxy's own idea of its rules (iptables, ipvs, nftables), before the generic pass.
        subprocess.run(
            [str(kube_proxy), "--cleanup", "--v=0"], capture_output=True, timeout=60, check=False
        )
    roots = [work_dir, RUN_DIR, *(Path(p) for p in hoststate.HARD_CODED_PATHS)]
    done += [f"unmounted {p}" for p in hoststate.unmount_under(roots)]
    if node is not None:
        done += [
            f"deleted link {n}"
            for n in hoststate.delete_links([node.bridge, node.node_link], node.bridge)
        ]
        markers: tuple[str, ...] = (node.bridge, node.pod_cidr)
    else:
        markers = ()
    done += hoststate.restore_iptables(before, markers)
    done += _remove_node_disk(work_dir)
    done += [f"removed cgroup {p}" for p in hoststate.remove_cgroups(before)]
    done += [f"removed {p}" for p in hoststate.remove_paths(before)]
    done += [f"sysctl {s}" for s in hoststate.restore_sysctls(before)]
    for line in done:
        log.info("release: %s", line)
    return done


def _remove_node_disk(work_dir: Path) -> list[str]:
    """Delete containerd's root (image content and unpacked snapshots): gigabytes per node.

    A node that is down has no use for it (the next ``up`` imports its images again), and a
    test run that kept it in each pytest folder filled the disk within two runs. Logs, PKI and
    etcd stay for whoever reads them after.
    """
    root = work_dir / "containerd" / "root"
    if not root.is_dir():
        return []
    shutil.rmtree(root, ignore_errors=True)
    return [f"removed {root}"]


def release_claim() -> None:
    claim = read_claim()
    if claim is not None and claim.owner_pid != os.getpid() and _claim_alive(claim):
        return  # not ours
    shutil.rmtree(RUN_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Starting


def _setup_node_link(config: NodeConfig, service_cidr: str) -> None:
    """The node IP on a bridge without ports: a local address no other network can reach."""
    link = config.node_link
    _run(["ip", "link", "add", link, "type", "bridge"])
    _run(["ip", "addr", "add", f"{config.ip}/24", "dev", link])
    _run(["ip", "link", "set", link, "up"])
    # The host reaches ClusterIPs from the node IP, so replies come back over the pods'
    # bridge (pods have no default route), and never through the machine's own network.
    _run(["ip", "route", "add", service_cidr, "dev", link, "src", config.ip])


def _containerd_config(work: Path, pause_image: str) -> Path:
    root = work / "containerd"
    cri = {
        "sandbox_image": pause_image,
        # This VM lacks CAP_SYS_RESOURCE: runc cannot set a negative oom_score_adj.
        "restrict_oom_score_adj": True,
        "netns_mounts_under_state_dir": True,
        "enable_selinux": False,
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {
                        "BinaryName": _which("runc") or "runc",
                        "Root": str(root / "runc"),
                        "SystemdCgroup": False,
                    },
                }
            },
        },
        "cni": {"bin_dir": "/usr/lib/cni", "conf_dir": str(work / "cni" / "net.d")},
    }
    lines = [
        "version = 2",
        f'root = "{root / "root"}"',
        f'state = "{root / "state"}"',
        # The opt plugin would install into /opt/containerd; nothing here uses it.
        'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",'
        ' "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
        ' "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]',
        "[grpc]",
        f'  address = "{RUN_DIR / "containerd.sock"}"',
        "[ttrpc]",
        f'  address = "{RUN_DIR / "containerd.sock.ttrpc"}"',
        '[plugins."io.containerd.grpc.v1.cri"]',
        *_toml_table(cri, "  ", 'plugins."io.containerd.grpc.v1.cri"'),
    ]
    path = root / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"no TOML for {value!r}")


def _toml_table(table: dict[str, object], indent: str, prefix: str) -> list[str]:
    """A small TOML writer for nested tables of scalars (containerd's config needs no more)."""
    lines = [f"{indent}{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, sub in table.items():
        if isinstance(sub, dict):
            name = f"{prefix}.{key}"
            lines.append(f"{indent}[{name}]")
            lines.extend(_toml_table(sub, indent, name))
    return lines


def _cni_config(work: Path, config: NodeConfig, service_cidr: str) -> None:
    net = ipaddress.ip_network(config.pod_cidr)
    gateway = str(next(net.hosts()))
    conflist = {
        "cniVersion": "0.4.0",
        "name": "dex",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": True,
                "ipMasq": False,  # pods need no route out
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.pod_cidr, "gateway": gateway}]],
                    # No default route: pods reach the node IP and Services, nothing else.
                    "routes": [{"dst": service_cidr}, {"dst": f"{config.ip}/32"}],
                    "dataDir": str(work / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    folder = work / "cni" / "net.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "10-dex.conflist").write_text(json.dumps(conflist, indent=2))


def _kubelet_config(
    work: Path, pki: Pki, socket: Path, ports: dict[str, int], ip: str, *, dns: bool
) -> Path:
    assert pki.node is not None
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine: cgroup v1 (+ a v2 mount), containerd 1.6, no systemd, swap allowed.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": ip,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet_healthz"],
        "tlsCertFile": str(pki.node.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.node.kubelet_serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        # CoreDNS on the node IP (dns.py); ClusterFirst pods get it as their only nameserver.
        "clusterDNS": [ip] if dns else [],
        # Nothing of the host's resolv.conf: pods have no route to its servers.
        "resolvConf": "",
        "podLogsDir": str(work / "kubelet" / "pod-logs"),
        "volumePluginDir": str(work / "kubelet" / "volume-plugins"),
        "registerNode": True,
        "serializeImagePulls": False,
        # A dev node never evicts for disk or memory pressure of the shared machine.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    path = work / "kubelet" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _kube_proxy_config(
    work: Path, kubeconfig: Path, ports: dict[str, int], config: NodeConfig
) -> Path:
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": config.name,
        "bindAddress": config.ip,
        "healthzBindAddress": f"127.0.0.1:{ports['kube_proxy_healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube_proxy_metrics']}",
        "mode": "iptables",
        "clusterCIDR": config.pod_cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{config.ip}/32"],
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE for a negative one here
        # 0: leave the machine's conntrack table size and timeouts alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # true would set net.ipv4.conf.all.route_localnet=1 for NodePorts on 127.0.0.1.
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }
    path = work / "kube-proxy" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def image_archives(folder: Path = DEFAULT_IMAGES_DIR) -> list[Path]:
    """The image archives ``make images`` leaves (OCI archives ``*.oci.tar``, renamed into place
    when complete)."""
    return sorted(folder.glob("*.oci.tar")) if folder.is_dir() else []


def ctr(socket: Path, *args: str, timeout: float = 600.0) -> str:
    return _run(
        [CTR, "--address", str(socket), "--namespace", CRI_NAMESPACE, *args], timeout=timeout
    )


class NodeStarter:
    """Starts the node's processes through ``spawn`` (the control plane's supervisor)."""

    def __init__(
        self,
        config: NodeConfig,
        assets: Assets,
        spawn: Callable[[str, Path, list[str]], Child],
        progress: Progress,
    ) -> None:
        self.config = config
        self.assets = assets
        self.spawn = spawn
        self.progress = progress

    def describe(self, before: HostSnapshot, service_cidr: str) -> NodeState:
        """The node to be, recorded before anything changes so a failed start can be undone."""
        version = self.assets.folder.name
        return NodeState(
            name=self.config.name,
            ip=self.config.ip,
            pod_cidr=self.config.pod_cidr,
            service_cidr=service_cidr,
            bridge=self.config.bridge,
            node_link=self.config.node_link,
            containerd_socket=RUN_DIR / "containerd.sock",
            kubelet_root=RUN_DIR / "kubelet",
            pause_image=f"localhost/dex/pause:{version}",
            hello_image=f"localhost/dex/hello:{version}",
            before=before,
        )

    def setup_links(self, node: NodeState) -> None:
        """The node IP's link, before the API server starts (it binds the node IP)."""
        _setup_node_link(self.config, node.service_cidr)

    def start(
        self,
        work: Path,
        pki: Pki,
        server: str,
        node: NodeState,
        node_ready: Callable[[], bool],
    ) -> None:
        assert pki.node is not None
        ports = dict(
            zip(
                ["kubelet", "kubelet_healthz", "kube_proxy_healthz", "kube_proxy_metrics"],
                free_ports(4),
                strict=True,
            )
        )
        _cni_config(work, self.config, node.service_cidr)
        containerd_config = _containerd_config(work, node.pause_image)
        began = time.monotonic()
        containerd = self.spawn(
            "containerd",
            Path(_which("containerd") or "containerd"),
            ["--config", str(containerd_config)],
        )
        self.progress("waiting for containerd to answer on its socket")
        containerd.wait_ready(
            lambda: _ctr_ok(node.containerd_socket), timeout=30.0, what="to answer"
        )
        node.timings["containerd_s"] = round(time.monotonic() - began, 2)

        began = time.monotonic()
        images = work / "images"
        archives = [
            write_oci_archive(
                ImageSpec(
                    name=node.pause_image, binary=self.assets.folder / "pause", entrypoint="/pause"
                ),
                images / "pause.tar",
            ),
            write_oci_archive(
                ImageSpec(
                    name=node.hello_image, binary=self.assets.folder / "hello", entrypoint="/hello"
                ),
                images / "hello.tar",
            ),
            *self.config.image_archives,
        ]
        for archive in archives:
            self.progress(f"importing image archive {archive.name} into containerd")
            ctr(node.containerd_socket, "images", "import", str(archive))
        for name in _image_names(node.containerd_socket):
            if name not in (node.pause_image, node.hello_image) and (alias := dev_alias(name)):
                ctr(node.containerd_socket, "images", "tag", "--force", name, alias)
        node.images = sorted(
            line.split()[0]
            for line in ctr(node.containerd_socket, "images", "ls").splitlines()[1:]
            if line.strip() and not line.startswith("sha256:")
        )
        node.timings["images_s"] = round(time.monotonic() - began, 2)

        kubeconfig = write_cert_kubeconfig(
            work / "kubelet.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.node.kubelet_client.cert,
            key=pki.node.kubelet_client.key,
            user=f"system:node:{node.name}",
            context="dex-devcluster",
        )
        config = _kubelet_config(
            work, pki, node.containerd_socket, ports, node.ip, dns=self.config.dns
        )
        began = time.monotonic()
        kubelet = self.spawn(
            "kubelet",
            self.assets.folder / "kubelet",
            [
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={node.kubelet_root}",
                f"--cert-dir={work / 'kubelet' / 'pki'}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.ip}",
                "--v=1",
            ],
        )
        self.progress(f"waiting for node {node.name} to be Ready")
        kubelet.wait_ready(
            node_ready,
            timeout=self.config.ready_timeout,
            what=f"node {node.name} Ready and untainted",
        )
        node.timings["node_ready_s"] = round(time.monotonic() - began, 2)

        proxy_kubeconfig = write_cert_kubeconfig(
            work / "kube-proxy.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.node.kube_proxy.cert,
            key=pki.node.kube_proxy.key,
            user="system:kube-proxy",
            context="dex-devcluster",
        )
        proxy = self.spawn(
            "kube-proxy",
            self.assets.folder / "kube-proxy",
            [f"--config={_kube_proxy_config(work, proxy_kubeconfig, ports, self.config)}", "--v=1"],
        )
        self.progress("waiting for kube-proxy's first iptables sync")
        metrics = f"http://127.0.0.1:{ports['kube_proxy_metrics']}/metrics"
        proxy.wait_ready(lambda: _proxy_synced(metrics), timeout=60.0, what="synced")


# Imported images are also tagged `<repository>:dev`: a content-keyed tag such as
# localhost/dex/dex-operator:2b5afa8e4d169b82 changes with the tree, and a manifest meant for
# the dev node (kustomize/overlays/dev) names the image it runs without knowing the key.
DEV_TAG = "dev"


def dev_alias(name: str) -> str | None:
    """``repo:tag`` -> ``repo:dev`` (None for a digest, or a name already tagged dev)."""
    repository, sep, tag = name.rpartition(":")
    if not sep or "/" in tag or "@" in name or tag == DEV_TAG:
        return None
    return f"{repository}:{DEV_TAG}"


def _image_names(socket: Path) -> list[str]:
    listed = ctr(socket, "images", "ls", "--quiet").split()
    return [name for name in listed if not name.startswith("sha256:")]


def _ctr_ok(socket: Path) -> bool:
    if not socket.exists():
        return False
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        ctr(socket, "version", timeout=5)
        return True
    return False


def _proxy_synced(metrics_url: str) -> bool:
    """kube-proxy has written its rules once (its /healthz is 200 before that)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return False
    return any(
        line.startswith("kubeproxy_sync_proxy_rules_last_timestamp_seconds")
        and float(line.rsplit(" ", 1)[1]) > 0
        for line in text.splitlines()
    )
