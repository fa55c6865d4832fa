"""Run the benchmarks and print their tables: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def render(name: str, rows: list[dict[str, object]]) -> Table:
    table = Table(title=f"bench {name}", title_justify="left")
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    for column in columns:
        table.add_column(column, justify="left" if column in {"bench", "step", "case"} else "right")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    return table


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def main(argv: list[str]) -> int:
    console = Console(width=160)
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        console.print(f"unknown benchmarks {unknown}; available: {available()}")
        return 2
    results: dict[str, list[dict[str, object]]] = {}
    failed = False
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.monotonic()
        try:
            rows = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            console.print(f"[red]bench {name} failed[/]: {exc!r}")
            failed = True
            continue
        results[name] = rows
        console.print(render(name, rows))
        console.print(f"(bench {name}: {time.monotonic() - started:.1f}s)\n")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
