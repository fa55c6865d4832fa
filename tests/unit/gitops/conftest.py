"""Fixtures for the GitOps tests; the helpers live in gitopskit (importable by the tests)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The helpers sit next to this file; test modules import them by name.
sys.path.insert(0, str(Path(__file__).parent))
from gitopskit import ENVS, HEALTH_DIR, KUSTOMIZE, Health, Manifest, kustomize, run_health_lua


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Every overlay and the Argo CD folder, rendered once per session."""
    out = {env: kustomize(KUSTOMIZE / "overlays" / env) for env in ENVS}
    out["argocd"] = kustomize(KUSTOMIZE / "argocd")
    return out


@pytest.fixture(scope="session")
def health_of() -> Callable[[str, Manifest], Health]:
    """``health_of("dexmodel", obj)`` runs kustomize/argocd/health/dexmodel.lua on ``obj``."""
    scripts = {path.stem: path.read_text() for path in HEALTH_DIR.glob("*.lua")}

    def run(kind: str, obj: Manifest) -> Health:
        return run_health_lua(scripts[kind], obj)

    return run
