"""DEX (DataEngineX): Feast -> KFP -> MLflow -> KServe, closed into one loop."""

__version__ = "0.1.0"
