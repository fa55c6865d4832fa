"""Where the control-plane binaries are, and building them when they are not there.

Same rules as ``tools/envtest/build.sh`` (which the Makefile's ``envtest`` target runs):
``KUBEBUILDER_ASSETS`` wins; else ``DEX_ENVTEST_DIR``; else the per-version cache folder
``~/.cache/dex/envtest/<k8s version>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from dex_testing import SOURCE_ROOT

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "envtest" / "build.sh"
REQUIRED = ("etcd", "kube-apiserver")


class MissingAssetsError(RuntimeError):
    """The binaries are absent and were not (or could not be) built."""


class Assets(BaseModel):
    folder: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    kubectl: Path | None


def asset_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("KUBEBUILDER_ASSETS"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def find_assets(*, build_if_missing: bool = False) -> Assets:
    folder = asset_folder()
    missing = [name for name in REQUIRED if _executable(folder / name) is None]
    if missing and build_if_missing and "KUBEBUILDER_ASSETS" not in os.environ:
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
        missing = [name for name in REQUIRED if _executable(folder / name) is None]
    if missing:
        raise MissingAssetsError(
            f"control-plane binaries {missing} not found in {folder}. Run `make envtest` "
            "(builds etcd and kube-apiserver from Go modules, once per machine) or point "
            "KUBEBUILDER_ASSETS at a folder holding them."
        )
    kubectl = _executable(folder / "kubectl")
    if kubectl is None and (on_path := shutil.which("kubectl")):
        kubectl = Path(on_path)
    return Assets(
        folder=folder,
        etcd=folder / "etcd",
        kube_apiserver=folder / "kube-apiserver",
        kube_controller_manager=_executable(folder / "kube-controller-manager"),
        kubectl=kubectl,
    )
