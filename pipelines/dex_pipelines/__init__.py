"""DEX pipelines: training, evaluation and promotion, compiled to KFP IR YAML in
``pipelines/dex_pipelines/compiled/``."""

from dex_pipelines.catalog import compile_all, pipelines

__all__ = ["compile_all", "pipelines"]
