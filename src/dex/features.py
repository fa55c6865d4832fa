"""Feast, wired to a DEX state folder.

``feature_store.yaml`` reads its store paths from ``DEX_FEAST_*`` variables and the sources
read ``DEX_DATA_DIR``; :func:`feast_env` derives them from :class:`DexSettings` so the CLI,
the KFP components (subprocesses inherit the environment) and the servers agree.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dex.settings import DexSettings

if TYPE_CHECKING:
    from feast import FeatureStore


def feast_env(settings: DexSettings) -> dict[str, str]:
    return {
        "DEX_FEAST_REGISTRY": settings.feast_registry or str(settings.feast_dir / "registry.db"),
        "DEX_FEAST_ONLINE_DB": settings.feast_online_db
        or str(settings.feast_dir / "online_store.db"),
        "DEX_DATA_DIR": settings.data_location,
        "FEAST_USAGE": "False",
    }


def export_feast_env(settings: DexSettings) -> None:
    """Export the store locations ``feature_store.yaml`` and the sources read."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(feast_env(settings))


def open_store(repo_path: Path | str, settings: DexSettings | None = None) -> FeatureStore:
    from feast import FeatureStore

    export_feast_env(settings or DexSettings())
    return FeatureStore(repo_path=str(repo_path))


def open_remote_store(
    repo_path: Path | str, registry_server: str, feature_server: str
) -> FeatureStore:
    """The repository's project, provider and key serialization, with Feast's servers as its
    stores: the registry server (``feast serve_registry``, gRPC ``host:port``) and the online
    feature server (``feast serve``, an ``http://`` URL). This is how a pod reads features in a
    cluster, where the repository's own file registry and SQLite store do not exist; on-demand
    features are still computed here, from the definitions in the repository."""
    import yaml
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    repo = Path(repo_path).resolve()
    raw = yaml.safe_load((repo / "feature_store.yaml").read_text())
    raw["registry"] = {"registry_type": "remote", "path": registry_server}
    raw["online_store"] = {"type": "remote", "path": feature_server}
    config = RepoConfig(**raw)
    config.repo_path = repo
    return FeatureStore(config=config)


@contextlib.contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    # feast's apply_total chdirs into the repo; put the caller back where it was.
    before = Path.cwd()
    try:
        yield
    finally:
        os.chdir(before)


def apply(settings: DexSettings) -> list[str]:
    """`feast apply` in-process; returns the feature services now registered."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    export_feast_env(settings)
    repo = settings.feature_repo.resolve()
    config = load_repo_config(repo, repo / "feature_store.yaml")
    # Definition files import each other by module name, as with the `feast` CLI.
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    with _in_directory(repo):
        apply_total(config, repo, skip_source_validation=False)
    store = open_store(repo, settings)
    return sorted(fs.name for fs in store.list_feature_services())


def materialize(settings: DexSettings, end: datetime, start: datetime) -> None:
    """Load the newest value per entity in [start, end] into the online store.

    An explicit window (not ``materialize_incremental``) so historical batches, whose
    timestamps are older than the views' TTLs, still reach the online store.
    """
    store = open_store(settings.feature_repo, settings)
    store.materialize(start_date=start, end_date=end)


def feature_refs(store: FeatureStore, feature_service: str) -> list[str]:
    """'view:feature' references of a feature service, in service order: the one definition
    of a contract's ``feature_refs``.

    Raises ValueError naming the known services when the name is unknown.
    """
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(feature_service)
    except FeatureServiceNotFoundException as exc:
        known = sorted(fs.name for fs in store.list_feature_services())
        raise ValueError(
            f"unknown feature service {feature_service!r}; registered services: {known}"
        ) from exc
    # name_to_use() is how Feast itself names a projection in references: the alias if set,
    # plus "@vN" for a pinned feature-view version. Training and serving both call this, so
    # a contract recorded at training is exactly what the transformer asks for online.
    refs: list[str] = []
    for projection in service.feature_view_projections:
        view_name: Callable[[], str] = projection.name_to_use  # Feast leaves it untyped
        refs.extend(f"{view_name()}:{feature.name}" for feature in projection.features)
    return refs
