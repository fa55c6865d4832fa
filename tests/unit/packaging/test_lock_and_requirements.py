"""uv.lock is the one source of pinned versions: it must be current with the pyproject files,
and each image's ``requirements/<extra>.txt`` must be exactly what ``make lock`` exports
from it (the Dockerfiles install those files)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from dex_testing import SOURCE_ROOT as ROOT

REQUIREMENTS = ROOT / "requirements"
ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def requirement_names(path: Path) -> set[str]:
    """The distribution names a requirements file pins (hash and comment lines skipped)."""
    return {
        re.split(r"[\s=<>;\[]", line, maxsplit=1)[0].lower()
        for line in path.read_text().splitlines()
        if line and not line[0].isspace() and not line.startswith(("#", "-"))
    }


def test_uv_lock_is_current_with_the_pyproject_files() -> None:
    result = subprocess.run(
        [find_uv_bin(), "lock", "--check", "--offline", "--python", sys.executable],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"uv.lock is stale: run `make lock`\n{result.stderr}"


def test_image_requirements_are_what_make_lock_exports_from_uv_lock(tmp_path: Path) -> None:
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "requirements",
            f"REQUIREMENTS_DIR={tmp_path}",
            f"VENV={sys.prefix}",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        check=True,
    )
    exported = {path.name: path.read_text() for path in tmp_path.glob("*.txt")}
    committed = {path.name: path.read_text() for path in REQUIREMENTS.glob("*.txt")}
    assert sorted(exported) == ["operator.txt", "serving.txt", "training.txt"]
    assert sorted(committed) == sorted(exported)
    stale = sorted(name for name, text in exported.items() if committed[name] != text)
    assert not stale, f"requirements/{stale} do not match uv.lock: run `make lock`"


@pytest.mark.parametrize("image", ["operator", "serving", "training"])
def test_image_requirements_are_pinned_hashed_and_carry_no_dev_tools(image: str) -> None:
    path = REQUIREMENTS / f"{image}.txt"
    text = path.read_text()
    pins = [line for line in text.splitlines() if line and not line[0].isspace()]
    pins = [line for line in pins if not line.startswith("#")]
    assert pins
    assert all("==" in line for line in pins), [line for line in pins if "==" not in line]
    assert text.count("--hash=sha256:") >= len(pins)
    # (not mypy: Feast pulls it in at run time, through sqlalchemy[mypy])
    dev_only = {"pytest", "ruff", "hypothesis", "uv", "import-linter", "lupa"}
    workspace = {"dataenginex", "dataenginex-testing"}
    assert not requirement_names(path) & (dev_only | workspace)


def test_operator_requirements_carry_no_ml_stack() -> None:
    names = requirement_names(REQUIREMENTS / "operator.txt")
    assert {"kopf", "httpx", "prometheus-client"} <= names
    heavy = {"mlflow", "mlflow-skinny", "feast", "evidently", "kserve", "scikit-learn", "pandas"}
    heavy |= {"kubernetes"}  # the operator's API client is its own (dex_operator.kubeapi)
    assert not names & heavy
