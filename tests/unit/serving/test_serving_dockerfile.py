"""Static checks of the serving image (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

from dex_testing import SOURCE_ROOT as REPO_ROOT

DOCKERFILE = REPO_ROOT / "serving" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _pip_installs(steps: list[tuple[str, str]]) -> list[str]:
    """The arguments of every ``pip install`` in the RUN steps, in order."""
    return [
        command.split("pip install", 1)[1].strip()
        for kw, rest in steps
        if kw == "RUN"
        for command in re.split(r"&&|;", rest)
        if "pip install" in command
    ]


def test_installs_only_the_serving_extra_and_runs_as_non_root() -> None:
    steps = _instructions()
    runs = " ".join(rest for kw, rest in steps if kw == "RUN")
    # The serving extra's dependencies as uv.lock pins them (hash-checked), then DEX itself
    # with nothing more resolved: no other extra, no unpinned package.
    assert _pip_installs(steps) == [
        "--require-hashes -r requirements/serving.txt",
        "--no-deps .",
    ]
    for other in ("[dev]", "[training]", "[operator]", "training.txt", "operator.txt"):
        assert other not in runs
    assert ("COPY", "requirements/serving.txt ./requirements/") in steps
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert steps[-2] == ("ENTRYPOINT", '["python", "-m", "dex_serving.run"]')


def test_copied_sources_exist() -> None:
    for kw, rest in _instructions():
        if kw == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO_ROOT / source).exists(), source


def test_entrypoint_module_exists() -> None:
    assert Path(REPO_ROOT / "serving" / "dex_serving" / "run.py").is_file()
