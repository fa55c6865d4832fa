"""ML Metadata (MLMD) as a gRPC server on this machine: ``ml_metadata.MetadataStoreService``,
what the Kubeflow Pipelines v2 driver and launcher record executions, artifacts and contexts
in, and what the KFP UI reads run details from.

MLMD's C++ server binary (``metadata_store_server``) is not available here: no Debian
package, the PyPI wheel has no server binary, and its Bazel build needs internet access. PyPI's
``ml-metadata`` does ship MLMD's C++ store itself as a pybind extension, so
``tools/mlmd/mlmd_grpc_server.py`` serves that store over gRPC with a thin generic layer (raw
request bytes in, the store's response bytes or its status out). ``make mlmd``
(``tools/mlmd/install.sh``) installs it in a venv of its own: ml-metadata needs protobuf 4.25,
the project's venv has protobuf 6. ``MLMDServer`` runs the script under that venv's python on
a SQLite file in its work folder; the file stays when the server stops, so a new server on the
same folder sees the same data.

Probed (ml-metadata 1.17.1): 49 of the service's 52 methods are served, all that the KFP
2.17 driver calls; ``GetLineageGraph``, ``GetParentContextsByContexts`` and
``GetChildrenContextsByContexts`` are not in the extension and answer UNIMPLEMENTED. The
store's errors keep their codes (a missing type is NOT_FOUND, a conflicting type
ALREADY_EXISTS). Installing takes about 1 s (43 MB, from PyPI or uv's cache); the server
answers 0.35-0.5 s after start and exits within 0.1 s of SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import grpc  # type: ignore[import-untyped]
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.lifecycle import Started
from dexctl.processes import Child, ProcessRecord, free_ports

log = logging.getLogger(__name__)

INSTALL_SCRIPT = SOURCE_ROOT / "tools" / "mlmd" / "install.sh"
SERVER_SCRIPT = SOURCE_ROOT / "tools" / "mlmd" / "mlmd_grpc_server.py"
SERVICE = "ml_metadata.MetadataStoreService"
STAMP = ".dex-installed"  # written last by install.sh


class MissingMLMDError(RuntimeError):
    """ML Metadata's venv (``make mlmd``) is not installed on this machine."""


class MLMDAssets(BaseModel):
    venv: Path
    python: Path  # the venv's interpreter: runs the server and MLMD's own Python client
    server: Path  # tools/mlmd/mlmd_grpc_server.py


def mlmd_folder() -> Path:
    """The venv install.sh makes, computed by install.sh itself so there is one definition
    (its name is the hash of the pinned requirements)."""
    out = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def find_mlmd() -> MLMDAssets:
    venv = mlmd_folder()
    python = venv / "bin" / "python"
    if not (venv / STAMP).is_file() or not os.access(python, os.X_OK):
        raise MissingMLMDError(
            f"ML Metadata is not installed in {venv}: run `make mlmd` (about 1 s, once per pin)"
        )
    return MLMDAssets(venv=venv, python=python, server=SERVER_SCRIPT)


def answers(address: str) -> bool:
    """One cheap RPC (``GetArtifactTypes``, empty request) answered OK: the store is open."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/GetArtifactTypes")
        call(b"", timeout=2)  # raw bytes both ways: an empty request is a valid one
    return True


class MLMDServer(Started):
    """MLMD's store served over gRPC on ``host`` (a context manager); its SQLite file and log
    are in ``work``."""

    def __init__(
        self,
        work: Path,
        *,
        host: str = "127.0.0.1",
        timeout: float = 60.0,
        detached: bool = False,
    ) -> None:
        self.work = Path(work)
        self.host = host
        self.timeout = timeout
        # Detached: the server outlives this Python process; ``records`` is what stops it.
        self.detached = detached
        self.child: Child | None = None
        self.port = 0

    @property
    def sqlite(self) -> Path:
        return self.work / "mlmd.sqlite"

    @property
    def log(self) -> Path:
        return self.work / "mlmd.log"

    @property
    def address(self) -> str:
        """``host:port``, what a gRPC client dials (KFP's ``METADATA_GRPC_SERVICE_*``)."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        assets = find_mlmd()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        self.child = Child(
            "mlmd",
            [
                str(assets.python),
                str(assets.server),
                f"--host={self.host}",
                f"--port={self.port}",
                f"--sqlite={self.sqlite}",
            ],
            log=self.log,
            detached=self.detached,
        )
        self.child.wait_ready(
            lambda: answers(self.address), timeout=self.timeout, what=f"answering on {self.address}"
        )
        log.info("MLMD pid=%d at %s (%s)", self.child.pid, self.address, self.sqlite)

    def serving_line(self) -> dict[str, object]:
        """The server's last ``{"event": "serving", ...}`` log line (what it serves)."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if line.startswith('{"event": "serving"'):
                parsed: dict[str, object] = json.loads(line)
                return parsed
        raise LookupError(f"no serving line in {self.log}")

    def records(self) -> list[ProcessRecord]:
        return [] if self.child is None else [self.child.record]

    def stop(self) -> None:
        """SIGTERM (it exits at once, the SQLite file intact), SIGKILL after a grace."""
        if self.child is not None:
            self.child.stop(grace=10.0)
            self.child = None
