"""Measurements the benchmarks share: a process's resident memory and a percentile."""

from __future__ import annotations

from pathlib import Path


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (one decimal); NaN if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
