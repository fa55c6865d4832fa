"""DEX serving: a KServe predictor and transformer, inference logging, and a drift monitor.

Modules import their heavy libraries (kserve, mlflow, feast, evidently) lazily, because each
one costs seconds to import and because ``kserve`` parses ``sys.argv`` when first imported.
"""
