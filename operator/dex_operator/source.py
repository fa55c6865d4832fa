"""The model source: ``spec.model`` resolved to the ``Target`` a rollout moves towards.

A ``storageUri`` is its own target, versioned by a hash of the URI. A registry source (a
version or an alias) is resolved through MLflow's REST API (``registry.MlflowRegistry``) and
the answer is kept in status (``resolvedFrom``, ``registryCheckedAt``): a pinned version is
asked once, an alias again only once ``registry_poll_seconds`` have passed, so resyncs cost
no registry calls. A version whose feature-service tag names another feature service than
``spec.features`` is refused rather than served with features it was not trained on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dex.contract import TAG_FEATURE_SERVICE
from dex.metrics import version_label
from dex_operator.config import CONFIG
from dex_operator.crd.models import DexModelSpec, DexModelStatus
from dex_operator.registry import MlflowRegistry, RegistryError, ResolvedModel
from dex_operator.rollout import Target

REGISTRY_ERROR = "RegistryError"
FEATURE_SERVICE_MISMATCH = "FeatureServiceMismatch"
# Every reason a SourceError carries: the registry may answer differently later (an alias
# moves, a version gets registered or retagged), so a DexModel reporting one keeps being
# requeued (``handlers.in_motion``).
RETRIED_REASONS = frozenset({REGISTRY_ERROR, FEATURE_SERVICE_MISMATCH})


class SourceError(RuntimeError):
    """spec.model cannot be resolved right now; reported in status, retried on resync."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def resolve_target(spec: DexModelSpec, status: DexModelStatus, now: datetime) -> Target:
    """The target ``spec.model`` names now; records a registry answer in ``status``."""
    src = spec.model
    if src.storage_uri:
        # The same label the predictor reports and the monitor records (dex.metrics).
        return Target(src.storage_uri, version_label(None, src.storage_uri))
    key = f"{src.name}:{src.version}" if src.version else f"{src.name}@{src.alias}"
    fresh = status.registry_checked_at is not None and (
        src.version is not None
        or now - status.registry_checked_at < timedelta(seconds=CONFIG.registry_poll_seconds)
    )
    if status.resolved_from == key and fresh and status.resolved_storage_uri:
        return Target(status.resolved_storage_uri, status.resolved_version or "")
    registry = MlflowRegistry(src.registry_url or CONFIG.mlflow_url, timeout=CONFIG.http_timeout)
    try:
        resolved = registry.resolve(src)
    except RegistryError as exc:
        raise SourceError(REGISTRY_ERROR, str(exc)) from exc
    finally:
        registry.close()
    check_feature_service(spec, resolved)
    status.resolved_from, status.registry_checked_at = key, now
    status.resolved_version, status.resolved_storage_uri = resolved.version, resolved.storage_uri
    return Target(resolved.storage_uri, resolved.version)


def check_feature_service(spec: DexModelSpec, resolved: ResolvedModel) -> None:
    """Refuse a version trained on another feature service than ``spec.features`` names."""
    trained_on = resolved.tags.get(TAG_FEATURE_SERVICE)
    if spec.features and trained_on and trained_on != spec.features.feature_service:
        raise SourceError(
            FEATURE_SERVICE_MISMATCH,
            f"version {resolved.version} was trained on feature service {trained_on!r}, "
            f"spec.features.featureService is {spec.features.feature_service!r}",
        )
