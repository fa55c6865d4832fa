"""kubectl against the session's cluster, for the KServe tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

# How the API server words a refusal by KServe's validating webhook.
VALIDATOR = (
    'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request'
)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def create(
        self, obj: dict[str, Any], *, dry_run: bool = False
    ) -> subprocess.CompletedProcess[str]:
        extra = ["--dry-run=server"] if dry_run else []
        return self("create", *extra, "-o", "json", "-f", "-", stdin=json.dumps(obj), check=False)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object as JSON, or None while it does not exist."""
        done = self("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if done.returncode != 0:
            return None
        out: dict[str, Any] = json.loads(done.stdout)
        return out
