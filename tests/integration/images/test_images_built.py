"""The images ``make images`` built: each OCI archive exists and is current, carries the
Dockerfile's entrypoint and (non-root) user, and its Python imports the entry point as that
user. Nothing is built here: stale or missing images fail with "run make images".

    make images && .venv/bin/pytest -m images tests/integration/images
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from dex_testing import SOURCE_ROOT, images

pytestmark = [
    pytest.mark.integration,
    pytest.mark.images,
    pytest.mark.xdist_group(name="images"),
]

# What each image runs, and the import that proves its Python can.
ENTRYPOINTS = {
    "dex-operator": ["python", "-m", "dex_operator"],
    "dex-serving": ["python", "-m", "dex_serving.run"],
    "dex-components": None,  # KFP runs `python3 -m kfp.dsl.executor_main` in it
    "redis": None,  # the pod's args name redis-server, as for docker.io/library/redis
}
IMPORTS = {
    "dex-operator": "import dex_operator.handlers",
    "dex-serving": "import dex_serving.run",
    "dex-components": "import kfp.dsl.executor_main, dex_components",
}
# Images without DEX's Python: the command that proves what they run starts as their user.
COMMANDS = {"redis": "redis-server --version && redis-cli --version"}


@pytest.fixture(scope="module")
def built() -> images.Record:
    if shutil.which("buildah") is None or os.geteuid() != 0:
        pytest.skip("needs root and buildah (`make images` installs it)")
    if stale := images.stale():
        pytest.fail(f"images {stale} are missing or older than the working tree: run `make images`")
    return images.load_record()


def _final_stage(name: str) -> dict[str, str]:
    """The last USER / ENTRYPOINT of the Dockerfile's final stage."""
    said: dict[str, str] = {}
    for instruction, rest in images.instructions(SOURCE_ROOT / images.IMAGES[name]):
        if instruction == "FROM":
            said = {}
        elif instruction in {"USER", "ENTRYPOINT"}:
            said[instruction] = rest
    return said


@pytest.mark.parametrize("name", list(images.IMAGES))
def test_archive_config_is_the_dockerfiles(built: images.Record, name: str) -> None:
    record = built.images[name]
    assert record.archive.is_file()
    assert record.archive.stat().st_size == record.archive_bytes
    config = images.archive_config(record.archive)
    said = _final_stage(name)
    assert config.get("User") == said["USER"]
    assert not str(config["User"]).startswith(("0", "root"))
    entrypoint = json.loads(said["ENTRYPOINT"]) if "ENTRYPOINT" in said else None
    assert config.get("Entrypoint") == entrypoint == ENTRYPOINTS[name]
    labels = config.get("Labels")
    assert isinstance(labels, dict)
    assert labels["dex.content-key"] == record.key


@pytest.mark.parametrize("name", list(images.IMAGES))
def test_python_imports_the_entry_point(built: images.Record, name: str) -> None:
    command = COMMANDS.get(name) or f'python -c "{IMPORTS[name]}"'
    done = images.run_in_image(name, ["sh", "-c", f"id -u && {command}"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] != "0"  # ran as the image's non-root user
