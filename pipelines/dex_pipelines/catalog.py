"""The shipped pipelines by name, and their compiled IR location."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPILED_DIR = Path(__file__).resolve().parent.parent / "compiled"


def _load() -> dict[str, Callable[..., Any]]:
    from dex_pipelines.evaluation import evaluation_pipeline
    from dex_pipelines.promotion import promotion_pipeline
    from dex_pipelines.training import training_pipeline

    return {
        "training": training_pipeline,
        "evaluation": evaluation_pipeline,
        "promotion": promotion_pipeline,
    }


class _Catalog(dict[str, Callable[..., Any]]):
    """Loaded on first use so importing the package does not import KFP."""

    def _ensure(self) -> None:
        if not super().__len__():
            self.update(_load())

    def __getitem__(self, key: str) -> Callable[..., Any]:
        self._ensure()
        return super().__getitem__(key)

    def keys(self) -> Any:
        self._ensure()
        return super().keys()

    def __iter__(self) -> Any:
        self._ensure()
        return super().__iter__()

    def __contains__(self, key: object) -> bool:
        self._ensure()
        return super().__contains__(key)


PIPELINES: dict[str, Callable[..., Any]] = _Catalog()


def compiled_path(name: str, directory: Path = COMPILED_DIR) -> Path:
    return directory / f"{name}.yaml"


def compile_all(directory: Path = COMPILED_DIR) -> list[Path]:
    from kfp import compiler

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in PIPELINES:
        path = compiled_path(name, directory)
        compiler.Compiler().compile(PIPELINES[name], str(path))
        out.append(path)
    return out
