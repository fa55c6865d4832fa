"""The real Kubeflow Pipelines 2.17.0 UI (``make kfp-ui``: its React app and Node server, built
from KFP's frontend source) served against a running :class:`~dex_testing.kfp_backend.KFPBackend`,
as users see their pipelines and runs.

The UI's Node server proxies ``/apis/v2beta1/...`` to the API server's HTTP port and serves the
app; ``kfp_ui_server.mjs`` (next to this file) starts that server bound to 127.0.0.1 (KFP's own
entry point listens on every interface). Probed facts: ``../shared/KFP-BACKEND.md``. ML
Metadata and its Envoy proxy do not run (no server binary is published for Debian or PyPI, and
its C++/Bazel build does not run here): the run page's task colours and artifact views, which
read MLMD, show the UI's "Cannot get MLMD objects" banner; the run's own state and the
pipeline's DAG come from the API server.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import httpx
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.lifecycle import Started
from dexctl.processes import Child, ProcessRecord, free_ports

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "kfp-ui" / "build.sh"
SERVER_WRAPPER = Path(__file__).with_name("kfp_ui_server.mjs")


class MissingKFPUIError(RuntimeError):
    """The KFP UI is not built on this machine (or Node.js is missing)."""


class KFPUIAssets(BaseModel):
    folder: Path
    static: Path  # the React app's build/
    server_dist: Path  # the compiled Node server (app.js, configs.js, ...)
    node: Path


def kfp_ui_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("DEX_KFP_UI_DIR"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def find_kfp_ui() -> KFPUIAssets:
    folder = kfp_ui_folder()
    node = shutil.which("node")
    # build.sh writes the stamp last: without it the build is partial.
    if not (folder / ".dex-built").is_file():
        raise MissingKFPUIError(
            f"the KFP UI is not built in {folder} (run `make kfp-ui`; ~5 min once)"
        )
    if node is None:
        raise MissingKFPUIError("Node.js (node) is needed to serve the KFP UI")
    return KFPUIAssets(
        folder=folder,
        static=folder / "build",
        server_dist=folder / "server" / "dist",
        node=Path(node),
    )


class KFPUI(Started):
    """The KFP UI's Node server on 127.0.0.1, talking to the API server at ``api_port``; a
    context manager. ``work`` holds its log."""

    def __init__(
        self,
        api_port: int,
        kubeconfig: Path,
        work: Path,
        *,
        timeout: float = 60.0,
        detached: bool = False,
    ) -> None:
        self.api_port = api_port
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        self.timeout = timeout
        self.detached = detached
        self.port = 0
        self.child: Child | None = None

    @property
    def url(self) -> str:
        """Where a browser opens the UI (its pages are hash routes: ``/#/runs`` ...)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assets = find_kfp_ui()
        self.work.mkdir(parents=True, exist_ok=True)
        self.port, unused = free_ports(2)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            # The API server (runs, pipelines, experiments): the UI proxies /apis/v2beta1 there.
            "ML_PIPELINE_SERVICE_HOST": "127.0.0.1",
            "ML_PIPELINE_SERVICE_PORT": str(self.api_port),
            # Artifacts and ML Metadata are not served (see the module docstring): an unused
            # loopback port makes the UI report them unavailable instead of resolving names.
            "MINIO_HOST": "127.0.0.1",
            "MINIO_PORT": str(unused),
            # Empty, else the UI appends ".kubeflow" to MINIO_HOST.
            "MINIO_NAMESPACE": "",
            "METADATA_ENVOY_SERVICE_SERVICE_HOST": "127.0.0.1",
            "METADATA_ENVOY_SERVICE_SERVICE_PORT": str(unused),
            # Its default, stated: no lookup of a GKE metadata server off this machine.
            "DISABLE_GKE_METADATA": "true",
            "NODE_ENV": "production",
        }
        self.child = Child(
            "kfp-ui",
            [
                str(assets.node),
                str(SERVER_WRAPPER),
                str(assets.server_dist),
                str(assets.static),
                str(self.port),
            ],
            log=self.work / "kfp-ui.log",
            env=env,
            detached=self.detached,
        )
        # Ready when the app is served and its proxy reaches the API server.
        healthz = f"{self.url}/apis/v2beta1/healthz"
        self.child.wait_ready(
            lambda: (
                httpx.get(self.url, timeout=2).status_code == 200
                and httpx.get(healthz, timeout=2).status_code == 200
            ),
            timeout=self.timeout,
            what=f"serving the app and proxying {healthz}",
        )
        log.info("KFP UI pid=%d at %s", self.child.pid, self.url)

    def records(self) -> list[ProcessRecord]:
        return [] if self.child is None else [self.child.record]

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=10.0)
            self.child = None
