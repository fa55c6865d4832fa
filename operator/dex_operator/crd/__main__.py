"""``python -m dex_operator.crd [DIR]``: (re)write the CRD YAML, default manifests/crd/."""

from __future__ import annotations

import sys
from pathlib import Path

from dex_operator.crd.render import write_all

# Relative to the checkout dexctl runs in: the CRDs are committed deployment manifests.
DEFAULT_DIR = Path("manifests") / "crd"


def main(argv: list[str]) -> None:
    target = Path(argv[0]) if argv else DEFAULT_DIR
    for path in write_all(target):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
