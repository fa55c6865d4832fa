"""The import-linter contracts in pyproject.toml (``lint-imports``, run by ``make lint``) bite:
a copy of DEX's packages keeps them, and the same copy with one forbidden import added
breaks them, naming the offending import."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dex_testing import SOURCE_ROOT as ROOT

PYPROJECT = ROOT / "pyproject.toml"
ROOT_PACKAGES: list[str] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"][
    "root_packages"
]


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """Every root package copied, flat, into one folder (first on PYTHONPATH when linted)."""
    dest = tmp_path / "packages"
    for name in ROOT_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.submodule_search_locations, name
        (source,) = spec.submodule_search_locations
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def lint_imports(packages: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts, on the copies in ``packages``."""
    return subprocess.run(
        [Path(sys.executable).parent / "lint-imports", "--config", str(PYPROJECT), "--no-cache"],
        cwd=packages,
        env={**os.environ, "PYTHONPATH": str(packages)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_packages_keep_the_contracts(packages: Path) -> None:
    result = lint_imports(packages)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        # The kernel imports nothing of DEX above it.
        ("dex/contract.py", "import dexctl", "dex.contract -> dexctl"),
        # Components sit below the pipelines that use them.
        ("dex_components/__init__.py", "import dex_pipelines", "dex_components -> dex_pipelines"),
        # Serving and the operator are independent of each other and of the components.
        ("dex_serving/__init__.py", "import dex_components", "dex_serving -> dex_components"),
        ("dex_operator/__init__.py", "import dex_serving", "dex_operator -> dex_serving"),
        # The product never imports its test support.
        ("dexctl/__init__.py", "import dex_testing", "dexctl -> dex_testing"),
        # The operator image carries no ML stack.
        ("dex_operator/__init__.py", "import mlflow", "dex_operator -> mlflow"),
        ("dex_operator/__init__.py", "import pandas", "dex_operator -> pandas"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    packages: Path, module: str, statement: str, broken: str
) -> None:
    path = packages / module
    path.write_text(path.read_text() + f"\n{statement}\n")
    result = lint_imports(packages)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^-\s+{re.escape(broken)} \(l\.\d+\)$", result.stdout, re.M), result.stdout
