"""What ships: the sdist, the wheel built from that sdist, and each image's dependency set.

Each image's set is installed the way its Dockerfile installs it — ``requirements/<x>.txt``
(hash-checked), then the wheel with ``--no-deps`` — into a clean venv, offline, from the uv
cache ``make setup`` filled; then its entry point must import and run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel
from uv import find_uv_bin

from dex_testing import SOURCE_ROOT as ROOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="packaging")]

PIPELINES = {"training", "evaluation", "promotion"}
COMPILED = ROOT / "pipelines" / "dex_pipelines" / "compiled"
# Source trees (relative to the repository) every sdist must carry, whole.
SDIST_TREES = [
    "src/dex",
    "src/dexctl",
    "components/dex_components",
    "pipelines/dex_pipelines",
    "serving/dex_serving",
    "operator/dex_operator",
]
PRODUCT_PACKAGES = {
    "dex",
    "dexctl",
    "dex_components",
    "dex_pipelines",
    "dex_serving",
    "dex_operator",
}


class Dists(BaseModel):
    sdist: Path
    wheel: Path


def uv(*args: str | Path, cwd: Path) -> None:
    """Run uv offline (no index, no Python download); fail with its output."""
    result = subprocess.run(
        [find_uv_bin(), *map(str, args)],
        cwd=cwd,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"uv {' '.join(map(str, args))}\n{result.stderr}"


def run_python(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python`` outside the checkout, with nothing of it on the path."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(python), *args],
        cwd=python.parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist of the checkout, and a wheel built from that sdist (not from the tree)."""
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--sdist", "--python", sys.executable, "--out-dir", out / "sdist", cwd=ROOT)
    (sdist,) = (out / "sdist").glob("dataenginex-*.tar.gz")
    uv("build", "--wheel", "--python", sys.executable, "--out-dir", out / "wheel", sdist, cwd=out)
    (wheel,) = (out / "wheel").glob("dataenginex-*.whl")
    return Dists(sdist=sdist, wheel=wheel)


@pytest.fixture(scope="session")
def image_python(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``image_python("serving")``: the python of a clean venv holding that image's packages."""

    def install(image: str) -> Path:
        venv = tmp_path_factory.mktemp(f"image-{image}") / "venv"
        uv("venv", "--python", sys.executable, venv, cwd=venv.parent)
        python = venv / "bin" / "python"
        requirements = ROOT / "requirements" / f"{image}.txt"
        uv("pip", "install", "--python", python, "-r", requirements, cwd=venv.parent)
        uv("pip", "install", "--python", python, "--no-deps", dists.wheel, cwd=venv.parent)
        return python

    return install


def importable(python: Path, modules: list[str]) -> list[str]:
    """Which of ``modules`` can be found by ``python``."""
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"
    )
    result = run_python(python, "-c", code, *modules)
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


def test_sdist_carries_every_package_the_compiled_pipelines_and_the_feature_repo(
    dists: Dists,
) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for tree in SDIST_TREES:
        sources = {
            str(path.relative_to(ROOT))
            for path in (ROOT / tree).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        assert sources, tree
        assert sources <= names, f"{tree}: missing {sorted(sources - names)}"
    compiled = {f"pipelines/dex_pipelines/compiled/{p}.yaml" for p in PIPELINES}
    assert compiled <= names
    feature_repo = {str(p.relative_to(ROOT)) for p in (ROOT / "feature_repo").glob("*.py")}
    assert feature_repo
    assert feature_repo | {"feature_repo/feature_store.yaml"} <= names
    # Test support and tests are the checkout's, not the distribution's.
    assert not [n for n in names if n.startswith(("testing/", "tests/"))]


def test_wheel_from_the_sdist_carries_the_product_and_no_test_support(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    top_level = {name.split("/", 1)[0] for name in names if "/" in name}
    assert top_level >= PRODUCT_PACKAGES
    assert {"dex_operator/__main__.py", "dex_serving/run.py", "dexctl/main.py"} <= names
    shipped_yaml = {n for n in names if n.startswith("dex_pipelines/compiled/")}
    assert shipped_yaml == {f"dex_pipelines/compiled/{p.name}" for p in COMPILED.glob("*.yaml")}
    assert {f"dex_pipelines/compiled/{p}.yaml" for p in PIPELINES} <= shipped_yaml
    assert "dex_testing" not in top_level
    assert "dexctl = dexctl.main:app" in scripts
    assert "dexctl.plugins" not in scripts


def test_operator_image_runs_the_operator_without_the_ml_stack(
    image_python: Callable[[str], Path],
) -> None:
    python = image_python("operator")
    result = run_python(python, "-c", "import dex_operator.__main__, dex_operator.handlers")
    assert result.returncode == 0, result.stderr
    assert importable(python, ["kopf", "httpx", "dex_operator"]) == [
        "kopf",
        "httpx",
        "dex_operator",
    ]
    # Nor the official Kubernetes client: its import alone is ~80 MiB (dex_operator.kubeapi).
    heavy = ["kubernetes", "mlflow", "feast", "evidently", "kserve", "sklearn", "pandas"]
    assert importable(python, heavy) == []


def test_serving_image_runs_the_serving_cli(image_python: Callable[[str], Path]) -> None:
    python = image_python("serving")
    result = run_python(python, "-m", "dex_serving.run", "--help")
    assert result.returncode == 0, result.stderr
    assert "predictor" in result.stdout
    imports = "import dex_serving.predictor, dex_serving.transformer, dex_serving.monitor.service"
    result = run_python(python, "-c", imports)
    assert result.returncode == 0, result.stderr
    # No KFP, kopf or Optuna in the serving image.
    assert importable(python, ["kfp", "kopf", "optuna"]) == []


def test_component_image_loads_the_components_and_the_pipelines(
    image_python: Callable[[str], Path],
) -> None:
    python = image_python("training")
    code = (
        "import json, dex_components.kfp_components, dex_pipelines; "
        "print(json.dumps(sorted(dex_pipelines.pipelines())))"
    )
    result = run_python(python, "-c", code)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) >= PIPELINES
