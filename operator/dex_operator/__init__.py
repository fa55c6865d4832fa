"""The DEX operator: reconciles DexModel resources into KServe InferenceServices and drives
their metric-gated canary rollout (see ``rollout.py``)."""

GROUP = "dex.dataenginex.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Labels every object the operator creates for a DexModel (its name as value).
MODEL_LABEL = f"{GROUP}/dexmodel"
# kopf's finalizer, under our group: on DexPipelines (deletion removes their KFP recurring
# run); on DexModels only from operator versions with kopf timers, and dropped on sight.
FINALIZER = f"{GROUP}/operator"
