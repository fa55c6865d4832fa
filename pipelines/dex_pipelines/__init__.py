"""DEX pipelines: training, evaluation and promotion, compiled to KFP IR YAML in
``pipelines/compiled/``."""

from dex_pipelines.catalog import PIPELINES, compile_all

__all__ = ["PIPELINES", "compile_all"]
