"""DEX benchmarks: ``python -m benchmarks [name ...]`` (``make bench``) prints one table each.

Each ``bench_<name>.py`` exposes ``run() -> list[dict[str, object]]``: one row per
measurement, all measured in the same run so ratios between rows mean something.
"""
