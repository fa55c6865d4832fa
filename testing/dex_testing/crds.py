"""kubectl for the test tiers: finding it, running it, and waiting for just-applied
CustomResourceDefinitions (the one poll every tier uses).

``kubectl wait --for=condition=Established`` fails at once on a CRD whose status has no
conditions yet (right after the apply), so this polls ``kubectl get`` instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from dexctl.polling import eventually


def kubectl_binary() -> str:
    """kubectl on PATH, else the one envtest builds next to the control plane."""
    if on_path := shutil.which("kubectl"):
        return on_path
    from dex_testing.devcluster import find_assets

    found = find_assets().kubectl
    if found is None:
        raise FileNotFoundError("kubectl is needed: none on PATH or in envtest (make envtest)")
    return str(found)


def run_kubectl(
    kubeconfig: Path | str,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
    kubectl: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``kubectl --kubeconfig=...`` with ``args``; a failure raises, quoting kubectl."""
    done = subprocess.run(
        [kubectl or kubectl_binary(), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def established(kubeconfig: Path | str, crds: Iterable[str], kubectl: str = "kubectl") -> bool:
    """Every one of ``crds`` (names, or ``customresourcedefinition.../name``) Established."""
    names = [c.rsplit("/", 1)[-1] for c in crds]
    done = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "get", "crd", *names, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return False
    listed = json.loads(done.stdout)
    items = listed.get("items", [listed])
    return len(items) == len(names) and all(
        any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )
        for crd in items
    )


def wait_established(
    kubeconfig: Path | str, crds: Iterable[str], timeout: float = 60, kubectl: str = "kubectl"
) -> None:
    names = list(crds)
    eventually(
        lambda: established(kubeconfig, names, kubectl),
        timeout=timeout,
        what=f"{', '.join(names)} Established",
    )
