"""DEX's test and development support (as ``kopf.testing`` is kopf's): a real Kubernetes
control plane as local processes, a serving world built from the real generator and Feast
repo, the operator as a subprocess, a KServe-controller stand-in, and ``dexctl dev``.

It is its own distribution (``dataenginex-testing``, a workspace member installed by
``make setup``) so no DEX image or wheel carries it. It only ever runs from a source checkout,
which is why :data:`SOURCE_ROOT` may point into one.
"""

from pathlib import Path

# testing/dex_testing/__init__.py -> the checkout's root.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
