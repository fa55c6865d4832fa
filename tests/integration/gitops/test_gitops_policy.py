"""The static policy check: checkov (``make checkov``) over what every overlay renders and
over every Dockerfile. Each finding is fixed or answered where it arises: a
``checkov.io/skipN`` annotation on the manifest or a ``checkov:skip`` comment in the
Dockerfile, with the reason. A new finding fails here, naming the check and the resource."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dex_testing import SOURCE_ROOT
from dex_testing.images import IMAGES

pytestmark = [pytest.mark.integration]

INSTALL = SOURCE_ROOT / "tools" / "checkov" / "install.sh"
ENVS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def checkov() -> str:
    # Installs once (`make test` ran `make checkov` already), then prints the binary's path.
    done = subprocess.run(
        ["bash", str(INSTALL)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def render(env: str) -> str:
    kubectl = shutil.which("kubectl") or pytest.fail("kubectl not on PATH (make envtest)")
    overlay = SOURCE_ROOT / "kustomize" / "overlays" / env
    return subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout


def run_checkov(checkov: str, *args: str) -> list[dict[str, Any]]:
    # --skip-download and BC_SKIP_MAPPING: checkov's built-in policies only, and no request
    # to its vendor's platform (tests send no traffic off the machine).
    done = subprocess.run(
        [checkov, *args, "--output", "json", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    # 0: all passed, 1: some failed; anything else is checkov itself failing.
    assert done.returncode in (0, 1), done.stderr[-3000:]
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


def failures(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})"
        for report in reports
        for f in report["results"]["failed_checks"]
    ]


def skipped(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for report in reports for s in report["results"]["skipped_checks"]]


@pytest.mark.parametrize("env", ENVS)
def test_rendered_overlay_passes_or_answers_every_check(
    checkov: str, env: str, tmp_path: Path
) -> None:
    (tmp_path / f"{env}.yaml").write_text(render(env))
    reports = run_checkov(checkov, "--directory", str(tmp_path), "--framework", "kubernetes")
    assert not failures(reports), "\n".join(failures(reports))
    answered = skipped(reports)
    assert answered, "checkov ran no check with an answer: did it read the manifests?"
    for skip in answered:
        assert len(skip["check_result"].get("suppress_comment", "")) > 20, skip["check_id"]


@pytest.mark.parametrize("name", list(IMAGES))
def test_dockerfile_passes_or_answers_every_check(checkov: str, name: str) -> None:
    dockerfile = SOURCE_ROOT / IMAGES[name]
    reports = run_checkov(checkov, "--file", str(dockerfile), "--framework", "dockerfile")
    assert not failures(reports), "\n".join(failures(reports))
    assert sum(r["summary"]["passed"] for r in reports) > 10  # it really checked the file


def test_an_unanswered_finding_fails(checkov: str, tmp_path: Path) -> None:
    """Guards the tests above: the answers are what keeps them green. The dev overlay
    without its checkov annotations fails the image-digest check on every Deployment."""
    docs = [d for d in yaml.safe_load_all(render("dev")) if d]
    for doc in docs:
        annotations = doc["metadata"].get("annotations", {})
        for key in [k for k in annotations if k.startswith("checkov.io/")]:
            del annotations[key]
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump_all(docs))
    reports = run_checkov(checkov, "--directory", str(tmp_path), "--framework", "kubernetes")
    digest = [f for f in failures(reports) if f.startswith("CKV_K8S_43 ")]
    assert len(digest) == sum(d["kind"] == "Deployment" for d in docs), failures(reports)
