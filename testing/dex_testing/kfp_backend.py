"""The real Kubeflow Pipelines backend (KFP 2.17.0's API server, ``make kfp``) run from this
machine against a cluster, with the two stores it always needs: MariaDB (Debian's
``mariadb-server``; runs, experiments, recurring runs and tasks live there) and an
S3-compatible object store (moto's server from PyPI; pipeline packages live there).

``tools/kfp/build.sh`` builds the binaries from KFP's source (see that script for where the
source comes from) and copies the API server's ``config.json`` and the Argo and KFP CRDs next
to them; nothing of KFP is committed. ``KFPBackend`` installs the CRDs, the ``kubeflow``
namespace and the ``pipeline-runner`` service account, then starts the three processes; on
exit it stops them and removes their data folder. The CRDs and namespace stay: they are the
cluster's installation.

Probed quirks (``../shared/KFP-BACKEND.md``): the gRPC port flag must be ``:PORT`` (the HTTP
gateway dials ``localhost`` + the flag), so gRPC listens on every interface of this machine;
the API server ignores SIGTERM, so it is killed after a short grace; it exits at start without
a visualization server's address, which it never calls for what DEX does.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.crds import kubectl_binary, run_kubectl, wait_established
from dex_testing.lifecycle import Started
from dexctl.processes import Child, ProcessRecord, free_ports

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "kfp" / "build.sh"
NAMESPACE = "kubeflow"
SERVICE_ACCOUNT = "pipeline-runner"
BUCKET = "mlpipeline"
# Names only: the API server writes them into the Workflows it creates; nothing is pulled
# unless a node runs the run's pods.
DRIVER_IMAGE = "dex.local/kfp-driver:2.17.0"
LAUNCHER_IMAGE = "dex.local/kfp-launcher:2.17.0"


# The agents read their API tokens from fixed in-pod paths (no flag moves them).
TOKENS_DIR = "/var/run/secrets/kubeflow/tokens"
AGENT_TOKENS = {
    "persistence-agent": "persistenceagent-sa-token",
    "scheduledworkflow": "scheduledworkflow-sa-token",
}
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000


def private_tokens(filename: str, token: str) -> Callable[[], None]:
    """Between fork and exec: a private mount namespace whose ``/run`` is an empty tmpfs
    holding ``TOKENS_DIR/filename``. The host's /run is untouched (and hidden from the agent,
    which needs nothing there: its API server and cluster are on 127.0.0.1)."""
    run = os.path.realpath("/var/run").encode()

    def setup() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        steps: list[tuple[int, str]] = []
        steps.append((libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)"))
        if steps[-1][0] == 0:
            steps.append(
                (libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "/ private")
            )
        if steps[-1][0] == 0:
            steps.append((libc.mount(b"tmpfs", run, b"tmpfs", 0, b"size=1m,mode=755"), "/run"))
        code, what = steps[-1]
        if code != 0:
            raise OSError(ctypes.get_errno(), what)
        os.makedirs(TOKENS_DIR)
        with open(os.path.join(TOKENS_DIR, filename), "w") as out:
            out.write(token)  # no trailing newline: the agents send it as read

    return setup


class MissingKFPError(RuntimeError):
    """The KFP backend (or a store it needs) is not installed on this machine."""


class KFPAssets(BaseModel):
    folder: Path
    apiserver: Path
    persistence_agent: Path
    scheduledworkflow: Path
    driver: Path  # static: KFP's driver image (dex_testing.kfp_runtime)
    launcher: Path  # static: copied into each component's pod
    config: Path  # the folder holding config.json
    crds: Path
    mariadbd: Path
    mariadb_install_db: Path


def kfp_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("DEX_KFP_DIR"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def _which(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    return Path(found) if found else None


def find_kfp() -> KFPAssets:
    folder = kfp_folder()
    missing: list[str] = []
    apiserver = folder / "bin" / "apiserver"
    config = folder / "config"
    crds = folder / "crds"
    if not os.access(apiserver, os.X_OK) or not (config / "config.json").is_file():
        missing.append(f"the KFP API server in {folder} (run `make kfp`; ~11 min once)")
    mariadbd = _which("mariadbd") or Path("/usr/sbin/mariadbd")
    install_db = _which("mariadb-install-db") or Path("/usr/bin/mariadb-install-db")
    if not (os.access(mariadbd, os.X_OK) and os.access(install_db, os.X_OK)):
        missing.append("MariaDB (Debian mariadb-server; `make kfp` installs it)")
    if importlib.util.find_spec("moto") is None:
        missing.append("moto (dataenginex-testing's dependency: `make setup`)")
    if missing:
        raise MissingKFPError("the KFP backend cannot start: missing " + "; ".join(missing))
    return KFPAssets(
        folder=folder,
        apiserver=apiserver,
        persistence_agent=folder / "bin" / "persistence_agent",
        scheduledworkflow=folder / "bin" / "controller",
        driver=folder / "bin" / "driver",
        launcher=folder / "bin" / "launcher-v2",
        config=config,
        crds=crds,
        mariadbd=mariadbd,
        mariadb_install_db=install_db,
    )


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class KFPBackend(Started):
    """Installs KFP's CRDs into the cluster ``kubeconfig`` names and runs MariaDB, moto and the
    KFP API server on ``host`` (127.0.0.1 unless pods reach it); a context manager. ``work`` holds their data and logs."""

    def __init__(
        self,
        kubeconfig: Path,
        work: Path,
        *,
        timeout: float = 120.0,
        detached: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        # Where the HTTP API and the object store listen: a dev node's IP when pods reach them
        # (the operator's Deployment, KFP's launcher: dex_testing.kfp_runtime), else loopback.
        self.host = host
        self.timeout = timeout
        # Detached: the processes outlive this Python process (``dexctl dev cluster up
        # --kfp``); ``records`` is what a later ``down`` stops.
        self.detached = detached
        self.children: dict[str, Child] = {}
        self.http_port = 0
        self.grpc_port = 0
        self.db_port = 0
        self.s3_port = 0
        self._apiserver_env: dict[str, str] = {}

    @property
    def url(self) -> str:
        """The API server's HTTP API (``/apis/v2beta1/...``), what the kfp client and the UI
        talk to."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def s3_url(self) -> str:
        """The object store's S3 endpoint (bucket ``mlpipeline``: packages and artifacts)."""
        return f"http://{self.host}:{self.s3_port}"

    # --- install ---------------------------------------------------------------------------
    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return run_kubectl(self.kubeconfig, *args, stdin=stdin).stdout

    def _install(self, assets: KFPAssets) -> None:
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(assets.crds), "-o", "name"
        )
        wait_established(
            self.kubeconfig, applied.split(), timeout=self.timeout, kubectl=kubectl_binary()
        )
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
            },
        ]
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )

    # --- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        assets = find_kfp()
        self.work.mkdir(parents=True, exist_ok=True)
        self._install(assets)
        self.http_port, self.grpc_port, self.db_port, self.s3_port, visualization = free_ports(5)
        self._start_mariadb(assets)
        self._start_moto(assets)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
            "DBCONFIG_MYSQLCONFIG_HOST": "127.0.0.1",
            "DBCONFIG_MYSQLCONFIG_PORT": str(self.db_port),
            "DBCONFIG_MYSQLCONFIG_USER": "root",
            "DBCONFIG_MYSQLCONFIG_PASSWORD": "",
            "OBJECTSTORECONFIG_HOST": self.host,
            "OBJECTSTORECONFIG_PORT": str(self.s3_port),
            "OBJECTSTORECONFIG_SECURE": "false",
            "OBJECTSTORECONFIG_ACCESSKEY": "minio",
            "OBJECTSTORECONFIG_SECRETACCESSKEY": "minio123",
            "OBJECTSTORECONFIG_BUCKETNAME": BUCKET,
            "V2_DRIVER_IMAGE": DRIVER_IMAGE,
            "V2_LAUNCHER_IMAGE": LAUNCHER_IMAGE,
            "ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_HOST": "127.0.0.1",
            "ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_PORT": str(visualization),
        }
        self._start_apiserver(assets, env)
        self._start_agents(assets, env)

    def _start_apiserver(self, assets: KFPAssets, env: dict[str, str]) -> None:
        apiserver = Child(
            "kfp-apiserver",
            [
                str(assets.apiserver),
                f"--config={assets.config}",
                f"--rpcPortFlag=:{self.grpc_port}",
                f"--httpPortFlag={self.host}:{self.http_port}",
                "--logtostderr=true",
            ],
            log=self.work / "kfp-apiserver.log",
            env=env,
            detached=self.detached,
        )
        self.children["apiserver"] = apiserver
        healthz = f"{self.url}/apis/v2beta1/healthz"
        apiserver.wait_ready(
            lambda: httpx.get(healthz, timeout=2).status_code == 200,
            timeout=self.timeout,
            what=f"healthy ({healthz})",
        )
        log.info("KFP API server pid=%d at %s", apiserver.pid, self.url)
        self._apiserver_env = env

    def kill_apiserver(self) -> None:
        """SIGKILL the API server (a crash: no shutdown); its stores and agents keep running."""
        self.children["apiserver"].kill()

    def restart_apiserver(self) -> None:
        """A new API server on the same ports and stores, as a restarted pod would be."""
        self.children.pop("apiserver").kill()
        self._start_apiserver(find_kfp(), self._apiserver_env)

    def _start_agents(self, assets: KFPAssets, env: dict[str, str]) -> None:
        """The persistence agent (Workflow status -> the run's state in KFP) and the
        ScheduledWorkflow controller (a recurring run's cron -> Workflows), as in-cluster."""
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--mlPipelineAPIServerName={self.host}",
            f"--mlPipelineServiceGRPCPort={self.grpc_port}",
        ]
        (metrics,) = free_ports(1)
        agents = {
            "persistence-agent": [
                str(assets.persistence_agent), *common,
                f"--mlPipelineServiceHttpPort={self.http_port}",
                "--ttlSecondsAfterWorkflowFinish=86400",
            ],
            "scheduledworkflow": [
                str(assets.scheduledworkflow), *common,
                f"--metricsPort={metrics}",
                "--recurringRunResyncIntervalSeconds=5",
            ],
        }  # fmt: skip
        for name, argv in agents.items():
            child = Child(
                f"kfp-{name}",
                argv,
                log=self.work / f"kfp-{name}.log",
                env=env,
                detached=self.detached,
                setup=private_tokens(AGENT_TOKENS[name], "dex-test-token"),
            )
            self.children[name] = child
            child.wait_ready(lambda: True, timeout=5, what="started")

    def _start_mariadb(self, assets: KFPAssets) -> None:
        data = self.work / "mariadb"
        done = subprocess.run(
            [
                str(assets.mariadb_install_db),
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=self.timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout[-2000:]}{done.stderr}")
        mariadb = Child(
            "mariadb",
            [
                str(assets.mariadbd),
                "--no-defaults",
                f"--datadir={data}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                # Relative: mariadbd resolves them in its data folder, and a socket's
                # absolute path there can exceed the 107 bytes a unix socket allows.
                "--socket=mariadb.sock",
                "--pid-file=mariadb.pid",
                "--user=root",
            ],
            log=self.work / "mariadb.log",
            detached=self.detached,
        )
        self.children["mariadb"] = mariadb
        mariadb.wait_ready(
            lambda: _accepts(self.db_port), timeout=self.timeout, what="accepting connections"
        )

    def _start_moto(self, assets: KFPAssets) -> None:
        moto = Child(
            "moto",
            # As `python -m`: a recorded process is matched by its binary, and a script's
            # process runs its interpreter.
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.s3_port)],
            log=self.work / "moto.log",
            # Path-style only: KFP's launcher addresses the store by a Service name
            # (seaweedfs.kubeflow:9000), which moto would otherwise read as bucket "seaweedfs".
            env={**os.environ, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"},
            detached=self.detached,
        )
        self.children["moto"] = moto
        moto.wait_ready(
            lambda: httpx.get(self.s3_url, timeout=2).status_code == 200,
            timeout=self.timeout,
            what="answering S3",
        )

    def records(self) -> list[ProcessRecord]:
        """The processes, in start order (a recorded stop goes in reverse)."""
        order = ("mariadb", "moto", "apiserver", "persistence-agent", "scheduledworkflow")
        return [self.children[n].record for n in order]

    def stop(self) -> None:
        # The API server ignores SIGTERM: a short grace, then SIGKILL. Then its stores.
        for name, grace in (
            ("scheduledworkflow", 10.0),
            ("persistence-agent", 10.0),
            ("apiserver", 2.0),
            ("moto", 10.0),
            ("mariadb", 30.0),
        ):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop(grace=grace)
        shutil.rmtree(self.work / "mariadb", ignore_errors=True)
