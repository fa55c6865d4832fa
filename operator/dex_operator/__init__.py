"""The DEX operator: reconciles DexModel resources into KServe InferenceServices and drives
their metric-gated canary rollout (see ``rollout.py``)."""

GROUP = "dex.dataenginex.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
