"""Image builds (``make images``): the debootstrapped base, each image's cold build, its cached
no-op, and sizes.

Runs the build twice: the first brings the images up to date (building whatever changed since
the last run, so on a fresh machine this is a long, cold build of everything), the second is
the measured no-op. From ``images.json``: each image's last cold build (no RUN step from the
``--layers`` cache) and its last build (``cached_steps`` of which came from that cache). Needs root and the `images` Debian packages (``make images`` installs them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dex_testing import images


def _mb(size: int | None) -> float | None:
    return None if size is None else round(size / 1e6, 1)


def _disk_bytes(folder: Path) -> int:
    """Allocated bytes under ``folder`` (``du``), each inode counted once."""
    seen: set[int] = set()
    total = 0
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = os.lstat(os.path.join(parent, name))
            if info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_blocks * 512
    return total


def run() -> list[dict[str, object]]:
    images.build()  # up to date (cold where anything changed)
    outcomes = {o.name: o for o in images.build()}  # the no-op being measured
    record = images.load_record()
    base = record.base
    assert base is not None
    rows: list[dict[str, object]] = [
        {
            "bench": "images",
            "case": "base (debootstrap + commit)",
            "cold_build_s": base.build_s,
            "image_mb": _mb(base.image_bytes),
        }
    ]
    for name, image in record.images.items():
        rows.append(
            {
                "bench": "images",
                "case": name,
                "cold_build_s": image.cold_build_s,
                "last_build_s": image.build_s,
                "cached_steps": image.reused_steps,
                "export_s": image.export_s,
                "cached_s": outcomes[name].seconds if name in outcomes else image.cached_s,
                "image_mb": _mb(image.image_bytes),
                "archive_mb": _mb(image.archive_bytes),
            }
        )
    archives = sum(image.archive_bytes for image in record.images.values())
    rows.append(
        {
            "bench": "images",
            "case": f"disk: {images.cache_dir()}",
            "cached_s": round(sum(o.seconds for o in outcomes.values()), 2),
            "archive_mb": _mb(archives),
            "disk_mb": _mb(_disk_bytes(images.cache_dir())),
        }
    )
    return rows


if __name__ == "__main__":
    for row in run():
        sys.stdout.write(f"{row}\n")
