"""A real Kubernetes control plane as local processes: etcd, kube-apiserver and, optionally,
kube-controller-manager restricted to garbage collection and namespace deletion.

Authentication is by client certificates from a throw-away CA and authorization is RBAC,
so tests see the same 401/403s, admission, validation and watch behaviour a cluster gives.
There are no nodes: nothing schedules or runs pods.
"""

from __future__ import annotations

import atexit
import datetime as dt
import http.client
import json
import logging
import shutil
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, Field

from dex_testing.devcluster.assets import Assets, find_assets
from dex_testing.devcluster.kubeconfig import write_cert_kubeconfig
from dex_testing.devcluster.pki import Pki, generate_pki
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

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"


def _tls_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    return ctx


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (OSError, http.client.HTTPException):  # URLError, SSLError, resets: not up yet
        return False


class ControlPlane:
    """Start with ``start()`` or ``with ControlPlane(...) as state:``; ``stop()`` is idempotent."""

    def __init__(self, config: ControlPlaneConfig | None = None, assets: Assets | None = None):
        self.config = config or ControlPlaneConfig()
        self.assets = assets or find_assets()
        self.state: ClusterState | None = None
        self._procs: list[Child] = []
        self._work_dir: Path | None = None
        self._owns_work_dir = False

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
        pki = generate_pki(work / "pki")
        names = ["etcd_client", "etcd_peer", "apiserver"]
        if self.config.controller_manager:
            names.append("controller_manager")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._start_etcd(work, ports)
        server = f"https://127.0.0.1:{ports['apiserver']}"
        self._start_apiserver(work, pki, ports)
        kubeconfig = write_cert_kubeconfig(
            work / "admin.kubeconfig",
            server=server,
            ca=pki.ca.cert,
            cert=pki.admin.cert,
            key=pki.admin.key,
            user="dex-admin",
            context="dex-devcluster",
        )
        if self.config.controller_manager:
            if self.assets.kube_controller_manager is None:
                raise FileNotFoundError(
                    f"kube-controller-manager not in {self.assets.folder}; run `make envtest`"
                )
            self._start_controller_manager(work, pki, server, ports["controller_manager"])
        with urllib.request.urlopen(f"{server}/version", context=_tls_context(pki)) as resp:
            version = str(json.load(resp)["gitVersion"])
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
        )
        log.info(
            "control plane %s ready at %s in %.1f s", version, server, self.state.startup_seconds
        )
        return self.state

    def _spawn(self, name: str, binary: Path, args: list[str], work: Path) -> Child:
        child = Child(
            name,
            [str(binary), *args],
            log=work / "logs" / f"{name}.log",
            detached=self.config.detached,
        )
        self._procs.append(child)
        return child

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

    def _start_apiserver(self, work: Path, pki: Pki, ports: dict[str, int]) -> None:
        child = self._spawn(
            "kube-apiserver",
            self.assets.kube_apiserver,
            [
                f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={self.config.service_cluster_ip_range}",
                "--allow-privileged=true",
                # No controller-manager serviceaccount controller guarantees a `default`
                # ServiceAccount, so admission would reject every pod; as in envtest.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                *self.config.apiserver_args,
            ],
            work,
        )
        ctx = _tls_context(pki)
        child.wait_ready(
            lambda: _http_ok(f"https://127.0.0.1:{ports['apiserver']}/readyz", ctx),
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
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller gets its own ServiceAccount token, hence its own RBAC role.
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki.ca.cert}",
            ],
            work,
        )
        # /healthz is served on a self-signed cert the controller-manager makes for itself
        # in --cert-dir; this is a loopback liveness probe, not a trust decision.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        child.wait_ready(
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", insecure),
            timeout=self.config.start_timeout,
        )

    def stop(self) -> None:
        # Reverse order: the API server must not outlive etcd and log connection errors.
        for child in reversed(self._procs):
            child.stop()
        self._procs.clear()
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        atexit.unregister(self.stop)


def stop_recorded(state: ClusterState) -> None:
    """Stop a control plane started by another process (``dexctl dev cluster down``)."""
    for record in reversed(state.processes):
        stop_process(record)
    if state.owns_work_dir:
        shutil.rmtree(state.work_dir, ignore_errors=True)


def leftovers(state: ClusterState) -> list[str]:
    """Processes still running and ports still bound that ``state`` accounts for."""
    alive = [f"{p.name} pid={p.pid}" for p in state.processes if is_running(p)]
    bound = [f"{name} port={port}" for name, port in state.ports.items() if not port_is_free(port)]
    return alive + bound
