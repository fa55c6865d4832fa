"""Static checks of the component image's Dockerfile (no Docker engine here)."""

import re

from dex_pipelines.training import IMAGE_FEATURE_REPO
from dex_testing import SOURCE_ROOT

ROOT = SOURCE_ROOT
DOCKERFILE = ROOT / "components" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_base_images_are_pinned() -> None:
    for keyword, rest in instructions():
        if keyword == "FROM":
            image = rest.split()[0]
            assert ":" in image, image
            assert not image.endswith(":latest"), image


def test_runs_as_a_fixed_non_root_user() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_installs_only_the_training_extra() -> None:
    runs = [rest for keyword, rest in instructions() if keyword == "RUN"]
    # The training extra's dependencies as uv.lock pins them (hash-checked), then DEX itself
    # with nothing more resolved.
    installs = [
        command.split("pip install", 1)[1].strip()
        for rest in runs
        for command in re.split(r"&&|;", rest)
        if "pip install" in command
    ]
    assert installs == [
        "--upgrade pip",
        "--require-hashes -r requirements/training.txt",
        "--no-deps .",
    ]
    assert re.findall(r"requirements/(\w+)\.txt", " ".join(runs)) == ["training"]


def test_copied_sources_exist_and_feature_repo_lands_where_pipelines_expect() -> None:
    copies = [rest for keyword, rest in instructions() if keyword == "COPY"]
    for rest in copies:
        if "--from=" in rest:
            continue  # copies between build stages
        parts = [p for p in rest.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} missing"
    assert any(rest.endswith(f"feature_repo {IMAGE_FEATURE_REPO}") for rest in copies)
