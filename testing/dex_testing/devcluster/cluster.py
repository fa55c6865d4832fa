"""A real Kubernetes control plane as local processes: etcd, kube-apiserver and, optionally,
kube-controller-manager restricted to garbage collection and namespace deletion.

Authentication is by client certificates from a throw-away CA and authorization is RBAC,
so tests see the same 401/403s, admission, validation and watch behaviour a cluster gives.
By default there are no nodes: nothing schedules or runs pods. With ``node=True`` (see
``node.py``) the cluster also gets kube-scheduler, all controllers, and one real node
(containerd, kubelet, kube-proxy) whose pods run; stopping it restores the machine.
"""

from __future__ import annotations

import atexit
import datetime as dt
import http.client
import ipaddress
import json
import logging
import shutil
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from dex_testing.devcluster import dns
from dex_testing.devcluster.assets import Assets, find_assets
from dex_testing.devcluster.hoststate import HostSnapshot
from dex_testing.devcluster.kubeconfig import write_cert_kubeconfig
from dex_testing.devcluster.node import (
    NodeConfig,
    NodeStarter,
    NodeState,
    check_tools,
    claim_machine,
    record_claim,
    release_claim,
    release_machine,
)
from dex_testing.devcluster.pki import NodeIdentity, Pki, generate_pki
from dexctl.polling import eventually
from dexctl.processes import (
    Child,
    ProcessRecord,
    free_ports,
    is_running,
    port_is_free,
)
from dexctl.processes import (
    stop_recorded as stop_process,
)

log = logging.getLogger(__name__)

# The controllers whose absence would make tests lie: without the garbage collector
# ownerReference cascades never happen, without the namespace controller a deleted
# namespace stays Terminating forever, and without aggregation the built-in admin/edit/view
# ClusterRoles (and any aggregate-to-* role we ship) grant nothing. The rest need nodes.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "clusterrole-aggregation-controller",
)


class ControlPlaneConfig(BaseModel):
    work_dir: Path | None = Field(
        default=None, description="Folder for certs, etcd data and logs; a temp folder if unset."
    )
    controller_manager: bool = Field(
        default=True, description="Also run kube-controller-manager (GC + namespace controllers)."
    )
    start_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for readiness.")
    service_cluster_ip_range: str = "10.0.0.0/24"
    detached: bool = Field(
        default=False,
        description="Leave the processes running when this Python process exits (dexctl dev).",
    )
    apiserver_args: list[str] = Field(default_factory=list, description="Extra apiserver flags.")
    node: NodeConfig | None = Field(
        default=None,
        description="Also run a real node (True for the defaults): scheduler, all controllers, "
        "containerd + kubelet + kube-proxy. Root only; one per machine.",
    )

    @field_validator("node", mode="before")
    @classmethod
    def _node_flag(cls, value: object) -> object:
        if value is True:
            return NodeConfig()
        return None if value is False else value

    @model_validator(mode="after")
    def _node_service_range(self) -> ControlPlaneConfig:
        # The node's Services get an address range that cannot be any real network's.
        if self.node is not None and "service_cluster_ip_range" not in self.model_fields_set:
            self.service_cluster_ip_range = self.node.default_service_cidr
        return self


class ClusterState(BaseModel):
    """Everything needed to use, inspect or stop a started control plane (persisted by dexctl)."""

    server: str
    kubeconfig: Path
    work_dir: Path
    owns_work_dir: bool
    version: str
    started_at: dt.datetime
    startup_seconds: float
    ports: dict[str, int]
    processes: list[ProcessRecord]
    node: NodeState | None = None

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"


Progress = Callable[[str], None]
# Stops, in this order, the components a node's teardown names; the rest follow in reverse.
_BEFORE_DRAIN = ("kube-controller-manager", "kube-scheduler")  # nothing re-creates pods
_AFTER_DRAIN = ("kube-proxy", "kubelet", "containerd")


def _tls_context(pki: Pki) -> ssl.SSLContext:
    return _admin_context(pki.ca.cert, pki.admin.cert, pki.admin.key)


def _admin_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _api(server: str, ctx: ssl.SSLContext, method: str, path: str) -> Any:
    request = urllib.request.Request(f"{server}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10, context=ctx) as resp:
        return json.load(resp)


NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def _node_ready(server: str, ctx: ssl.SSLContext, name: str) -> bool:
    try:
        node = _api(server, ctx, "GET", f"/api/v1/nodes/{name}")
    except (OSError, http.client.HTTPException):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    # The TaintNodesByCondition admission plugin registers every node with
    # node.kubernetes.io/not-ready:NoSchedule; only the controller manager's node lifecycle
    # controller removes it. Ready alone is the kubelet's word: pods still do not schedule
    # until the taint is gone, so a node is up when both hold.
    taints = [t.get("key") for t in node.get("spec", {}).get("taints") or []]
    return ready and NOT_READY_TAINT not in taints


def _exists(server: str, ctx: ssl.SSLContext, path: str) -> bool:
    try:
        _api(server, ctx, "GET", path)
    except (OSError, http.client.HTTPException):
        return False
    return True


def _drain(server: str, ctx: ssl.SSLContext, timeout: float) -> None:
    """Delete every pod with a 1 s grace period (kubectl's --now) while the kubelet still runs,
    and wait until the kubelet has stopped them all: containers, sandboxes, their networks."""
    try:
        namespaces = _api(server, ctx, "GET", "/api/v1/namespaces")["items"]
        for ns in namespaces:
            name = ns["metadata"]["name"]
            _api(server, ctx, "DELETE", f"/api/v1/namespaces/{name}/pods?gracePeriodSeconds=1")
        eventually(
            lambda: not _api(server, ctx, "GET", "/api/v1/pods")["items"],
            timeout=timeout,
            interval=0.2,
            what="every pod deleted by the kubelet",
        )
    except (OSError, http.client.HTTPException, AssertionError) as exc:
        # The machine is restored below whatever the API says; pods left are killed there.
        log.warning("drain incomplete (%s); the node's processes will be killed", exc)


def _teardown_node(
    *,
    node: NodeState | None,
    before: HostSnapshot,
    work_dir: Path,
    names: list[str],
    stop: Callable[[str], None],
    running: Callable[[str], bool],
    server: str | None,
    ctx: ssl.SSLContext | None,
    drain_timeout: float,
    kube_proxy: Path | None,
) -> None:
    """Stop a cluster with a node, in the order that leaves nothing behind."""
    for name in _BEFORE_DRAIN:
        if name in names:
            stop(name)
    if server is not None and ctx is not None and running("kubelet") and running("kube-apiserver"):
        _drain(server, ctx, drain_timeout)
    for name in _AFTER_DRAIN:
        if name in names:
            stop(name)
    for name in reversed(names):
        if name not in _BEFORE_DRAIN + _AFTER_DRAIN:
            stop(name)
    release_machine(before, work_dir, node, kube_proxy=kube_proxy)
    release_claim()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (OSError, http.client.HTTPException):  # URLError, SSLError, resets: not up yet
        return False


class ControlPlane:
    """Start with ``start()`` or ``with ControlPlane(...) as state:``; ``stop()`` is idempotent."""

    def __init__(
        self,
        config: ControlPlaneConfig | None = None,
        assets: Assets | None = None,
        progress: Progress | None = None,
    ):
        self.config = config or ControlPlaneConfig()
        self.assets = assets or find_assets()
        self.progress: Progress = progress or log.info
        self.state: ClusterState | None = None
        self._procs: list[Child] = []
        self._work_dir: Path | None = None
        self._owns_work_dir = False
        self._before: HostSnapshot | None = None  # set once this plane claimed the machine
        self._node: NodeState | None = None
        self._server: str | None = None
        self._ctx: ssl.SSLContext | None = None

    def __enter__(self) -> ClusterState:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ClusterState:
        began = time.monotonic()
        if self.config.work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="dex-devcluster-"))
            self._owns_work_dir = True
        else:
            self._work_dir = self.config.work_dir.resolve()
            self._work_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.detached:
            atexit.register(self.stop)
        try:
            return self._start(self._work_dir, began)
        except BaseException:
            self.stop()
            raise

    def _start(self, work: Path, began: float) -> ClusterState:
        node_config = self.config.node
        starter: NodeStarter | None = None
        identity: NodeIdentity | None = None
        host = "127.0.0.1"
        coredns: Path | None = None
        if node_config is not None:
            check_tools(self.assets)
            coredns = dns.binary() if node_config.dns else None
            self.progress("snapshotting the machine before the node changes it")
            self._before = claim_machine(work, self.progress)
            starter = NodeStarter(
                node_config,
                self.assets,
                lambda name, binary, args: self._spawn(name, binary, args, work),
                self.progress,
            )
            self._node = starter.describe(self._before, self.config.service_cluster_ip_range)
            starter.setup_links(self._node)
            host = node_config.ip
            service_ip = str(
                next(ipaddress.ip_network(self.config.service_cluster_ip_range).hosts())
            )
            identity = NodeIdentity(
                name=node_config.name, ip=host, apiserver_ips=(host, service_ip)
            )
        pki = generate_pki(work / "pki", identity)
        names = ["etcd_client", "etcd_peer", "apiserver"]
        if self.config.controller_manager or node_config is not None:
            names.append("controller_manager")
        if node_config is not None:
            names.append("scheduler")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.progress("waiting for etcd")
        self._start_etcd(work, ports)
        server = f"https://{host}:{ports['apiserver']}"
        self._server, self._ctx = server, _tls_context(pki)
        self.progress("waiting for kube-apiserver /readyz")
        self._start_apiserver(work, pki, ports, host)
        kubeconfig = write_cert_kubeconfig(
            work / "admin.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.admin.cert,
            key=pki.admin.key,
            user="dex-admin",
            context="dex-devcluster",
        )
        if "controller_manager" in ports:
            if self.assets.kube_controller_manager is None:
                raise FileNotFoundError(
                    f"kube-controller-manager not in {self.assets.folder}; run `make envtest`"
                )
            self.progress("waiting for kube-controller-manager /healthz")
            self._start_controller_manager(work, pki, server, ports["controller_manager"])
        if starter is not None and self._node is not None:
            self.progress("waiting for kube-scheduler /healthz")
            self._start_scheduler(work, pki, server, ports["scheduler"])
            ctx, name = self._ctx, self._node.name

            def node_ready() -> bool:
                self.check_alive()  # the taint waits on the controller manager: fail if it died
                return _node_ready(server, ctx, name)

            starter.start(work, pki, server, self._node, node_ready)
            # ServiceAccount admission rejects pods until the controller made `default`.
            self.progress("waiting for the default ServiceAccount")
            eventually(
                lambda: _exists(server, ctx, "/api/v1/namespaces/default/serviceaccounts/default"),
                timeout=self.config.start_timeout,
                what="ServiceAccount default/default",
            )
            if coredns is not None:
                self._start_dns(work, coredns, kubeconfig, ports, self._node.ip)
        version = str(_api(server, self._ctx, "GET", "/version")["gitVersion"])
        self.state = ClusterState(
            server=server,
            kubeconfig=kubeconfig,
            work_dir=work,
            owns_work_dir=self._owns_work_dir,
            version=version,
            started_at=dt.datetime.now(dt.UTC),
            startup_seconds=round(time.monotonic() - began, 2),
            ports=ports,
            processes=[child.record for child in self._procs],
            node=self._node,
        )
        if self._node is not None:
            self._node.timings["up_s"] = self.state.startup_seconds
            record_claim(work, self._node, self.state.processes)
        log.info(
            "control plane %s ready at %s in %.1f s", version, server, self.state.startup_seconds
        )
        return self.state

    def check_alive(self) -> None:
        """Raise ``StartupError`` naming the first of this cluster's processes that exited
        (with the end of its log): a dead controller manager or kubelet otherwise shows only
        as pods that never schedule or start."""
        for child in self._procs:
            child.check_alive()

    def _spawn(self, name: str, binary: Path, args: list[str], work: Path) -> Child:
        child = Child(
            name,
            [str(binary), *args],
            log=work / "logs" / f"{name}.log",
            detached=self.config.detached,
        )
        self._procs.append(child)
        return child

    def _start_dns(
        self, work: Path, binary: Path, admin: Path, ports: dict[str, int], ip: str
    ) -> None:
        """CoreDNS on the node IP port 53, as ServiceAccount kube-system/coredns (dns.py)."""
        self.progress("waiting for CoreDNS (cluster DNS) to be ready")
        ports["coredns_health"], ports["coredns_ready"] = free_ports(2)
        kubeconfig = dns.grant(admin, work / "coredns" / "coredns.kubeconfig")
        corefile = dns.corefile(
            work / "coredns" / "Corefile",
            node_ip=ip,
            kubeconfig=kubeconfig,
            health=ports["coredns_health"],
            ready=ports["coredns_ready"],
        )
        child = self._spawn("coredns", binary, ["-conf", str(corefile)], work)
        child.wait_ready(
            lambda: dns.is_ready(ports["coredns_ready"]), timeout=self.config.start_timeout
        )

    def _start_etcd(self, work: Path, ports: dict[str, int]) -> None:
        client = f"http://127.0.0.1:{ports['etcd_client']}"
        peer = f"http://127.0.0.1:{ports['etcd_peer']}"
        child = self._spawn(
            "etcd",
            self.assets.etcd,
            [
                "--name=dex",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=dex={peer}",
                # Throw-away data: durability buys nothing and fsync dominates on slow disks.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            work,
        )
        child.wait_ready(lambda: _http_ok(f"{client}/health"), timeout=self.config.start_timeout)

    def _apiserver_mode_args(self, pki: Pki) -> list[str]:
        if self.config.node is None:
            return [
                "--authorization-mode=RBAC",
                # No controller-manager serviceaccount controller guarantees a `default`
                # ServiceAccount, so admission would reject every pod; as in envtest.
                "--disable-admission-plugins=ServiceAccount",
            ]
        assert pki.node is not None
        return [
            # The Node authorizer + NodeRestriction confine the kubelet to its own node's
            # objects, as in every production cluster; ServiceAccount admission stays on.
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki.node.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={pki.node.apiserver_kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            # The node's hostname does not resolve; its IP does.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def _start_apiserver(self, work: Path, pki: Pki, ports: dict[str, int], host: str) -> None:
        child = self._spawn(
            "kube-apiserver",
            self.assets.kube_apiserver,
            [
                f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
                # With a node: the node IP (on a dummy link), so pods reach the API server
                # through the `kubernetes` Service; never the machine's own network.
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={ports['apiserver']}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                *self._apiserver_mode_args(pki),
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={self.config.service_cluster_ip_range}",
                "--allow-privileged=true",
                "--profiling=false",
                *self.config.apiserver_args,
            ],
            work,
        )
        ctx = _tls_context(pki)
        child.wait_ready(
            lambda: _http_ok(f"https://{host}:{ports['apiserver']}/readyz", ctx),
            timeout=self.config.start_timeout,
        )

    def _start_controller_manager(self, work: Path, pki: Pki, server: str, port: int) -> None:
        assert self.assets.kube_controller_manager is not None
        kubeconfig = write_cert_kubeconfig(
            work / "controller-manager.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.controller_manager.cert,
            key=pki.controller_manager.key,
            user="system:kube-controller-manager",
            context="dex-devcluster",
        )
        child = self._spawn(
            "kube-controller-manager",
            self.assets.kube_controller_manager,
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={work / 'controller-manager-certs'}",
                "--leader-elect=false",
                *self._controller_args(pki, work),
                # Each controller gets its own ServiceAccount token, hence its own RBAC role.
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki.ca.cert}",
            ],
            work,
        )
        child.wait_ready(
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", _insecure()),
            timeout=self.config.start_timeout,
        )

    def _controller_args(self, pki: Pki, work: Path) -> list[str]:
        if self.config.node is None:
            return [f"--controllers={','.join(CONTROLLERS)}"]
        return [
            # A node makes every controller meaningful: deployments, replicasets, jobs,
            # endpoints, service accounts and their tokens, node lifecycle, ...
            "--controllers=*",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--allocate-node-cidrs=false",  # the CNI config names the pod range
            # Else it creates /usr/libexec/kubernetes/kubelet-plugins/volume/exec.
            f"--flex-volume-plugin-dir={work / 'flex-volume-plugins'}",
        ]

    def _start_scheduler(self, work: Path, pki: Pki, server: str, port: int) -> None:
        assert pki.node is not None
        kubeconfig = write_cert_kubeconfig(
            work / "scheduler.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.node.scheduler.cert,
            key=pki.node.scheduler.key,
            user="system:kube-scheduler",
            context="dex-devcluster",
        )
        child = self._spawn(
            "kube-scheduler",
            self.assets.folder / "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={work / 'scheduler-certs'}",
                "--leader-elect=false",
            ],
            work,
        )
        child.wait_ready(
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", _insecure()),
            timeout=self.config.start_timeout,
        )

    def stop(self) -> None:
        if self._before is not None:
            self._stop_with_node(self._before)
            self._before = None
        # Reverse order: the API server must not outlive etcd and log connection errors.
        for child in reversed(self._procs):
            child.stop()
        self._procs.clear()
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        atexit.unregister(self.stop)

    def _stop_with_node(self, before: HostSnapshot) -> None:
        assert self._work_dir is not None
        children = {child.name: child for child in self._procs}

        def stop(name: str) -> None:
            if name in children:
                children[name].stop()

        def running(name: str) -> bool:
            return name in children and children[name].proc.poll() is None

        drain_timeout = self.config.node.drain_timeout if self.config.node else 60.0
        _teardown_node(
            node=self._node,
            before=before,
            work_dir=self._work_dir,
            names=list(children),
            stop=stop,
            running=running,
            server=self._server,
            ctx=self._ctx,
            drain_timeout=drain_timeout,
            kube_proxy=self.assets.folder / "kube-proxy",
        )


def _insecure() -> ssl.SSLContext:
    # /healthz of the controller-manager and scheduler is served on a self-signed cert each
    # makes for itself in --cert-dir; a loopback liveness probe, not a trust decision.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def stop_recorded(state: ClusterState) -> None:
    """Stop a control plane started by another process (``dexctl dev cluster down``)."""
    if state.node is not None:
        records = {record.name: record for record in state.processes}
        pki = state.work_dir / "pki"
        try:
            ctx: ssl.SSLContext | None = _admin_context(
                pki / "ca.crt", pki / "admin.crt", pki / "admin.key"
            )
        except OSError:
            ctx = None
        _teardown_node(
            node=state.node,
            before=state.node.before,
            work_dir=state.work_dir,
            names=list(records),
            stop=lambda name: stop_process(records[name]),
            running=lambda name: name in records and is_running(records[name]),
            server=state.server,
            ctx=ctx,
            drain_timeout=60.0,
            kube_proxy=next(
                (r.binary.parent / "kube-proxy" for r in state.processes if r.name == "kubelet"),
                None,
            ),
        )
    for record in reversed(state.processes):
        stop_process(record)
    if state.owns_work_dir:
        shutil.rmtree(state.work_dir, ignore_errors=True)


def leftovers(state: ClusterState) -> list[str]:
    """Processes still running and ports still bound that ``state`` accounts for."""
    alive = [f"{p.name} pid={p.pid}" for p in state.processes if is_running(p)]
    bound = [f"{name} port={port}" for name, port in state.ports.items() if not port_is_free(port)]
    return alive + bound
