"""The DEX operator: reconciles DexModel resources into KServe InferenceServices and drives
their metric-gated canary rollout (see ``rollout.py``)."""

GROUP = "dex.dataenginex.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Labels every object the operator creates for a DexModel (its name as value).
MODEL_LABEL = f"{GROUP}/dexmodel"
