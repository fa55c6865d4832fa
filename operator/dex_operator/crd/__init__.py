"""Custom resource definitions: pydantic models are the source of truth, ``render`` turns
them into the CRD YAML in ``manifests/crd/``."""

from dex_operator.crd.models import (
    AnalysisGate,
    Condition,
    DexModelSpec,
    DexModelStatus,
    DexPipelineSpec,
    DexPipelineStatus,
)

__all__ = [
    "AnalysisGate",
    "Condition",
    "DexModelSpec",
    "DexModelStatus",
    "DexPipelineSpec",
    "DexPipelineStatus",
]
