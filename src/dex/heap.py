"""Keep the cyclic garbage collector off the objects a server keeps for its whole life.

A DEX server imports large libraries (FastAPI, pandas, MLflow, Evidently, kopf) and loads
models and registries at start: several hundred thousand objects that live until exit. Each
full collection walks all of them, about 0.1 to 0.2 s of one core, and a steady stream of
allocations (an event batch, a watch stream) triggers one every few seconds. On a node shared
with a predictor, that burst is latency in the predictions served beside it.
:func:`freeze` moves what is alive into the permanent generation, which no collection walks.
"""

from __future__ import annotations

import gc


def freeze() -> int:
    """Collect garbage now, then exempt every surviving object from later collections.

    Call it once the server holds what it keeps (imports done, models loaded), and again
    after a first lazy import of a large library. Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
