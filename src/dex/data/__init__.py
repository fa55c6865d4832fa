"""Synthetic, seeded data for the DEX churn use case."""

from dex.data.churn import ChurnDataset, GeneratorConfig, generate, write_parquet

__all__ = ["ChurnDataset", "GeneratorConfig", "generate", "write_parquet"]
