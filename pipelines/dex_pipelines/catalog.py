"""The shipped pipelines by name, and their compiled IR location."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

# Package data, so an installed DEX (the operator submitting a shipped pipeline) finds it too.
COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


@cache
def pipelines() -> dict[str, Callable[..., Any]]:
    """Name -> pipeline function; a function so importing the package does not import KFP."""
    from dex_pipelines.evaluation import evaluation_pipeline
    from dex_pipelines.promotion import promotion_pipeline
    from dex_pipelines.training import training_pipeline

    return {
        "training": training_pipeline,
        "evaluation": evaluation_pipeline,
        "promotion": promotion_pipeline,
    }


def parameters(name: str) -> dict[str, Any]:
    """A pipeline's parameters by name: KFP's InputSpec (type, default, optional)."""
    pipeline: Any = pipelines()[name]
    return dict(pipeline.component_spec.inputs or {})


def compile_all(directory: Path = COMPILED_DIR) -> list[Path]:
    from kfp import compiler

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, pipeline_func in pipelines().items():
        path = directory / f"{name}.yaml"
        compiler.Compiler().compile(pipeline_func, str(path))
        out.append(path)
    return out
