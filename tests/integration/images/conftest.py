"""The ``images`` marker: tests of the images ``make images`` built. They build nothing, and
run only when selected (``pytest -m images``), so ``make test`` does not depend on images yet.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "images: checks the images `make images` built")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "images" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="image tests run with `pytest -m images` after `make images`")
    for item in items:
        if item.get_closest_marker("images"):
            item.add_marker(skip)
