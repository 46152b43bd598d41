"""`make bench`: run every `benchmarks/bench_*.py` module's `run()`, print one
table, and write `benchmarks/results.json`.

Each module exposes `run() -> list[Record]`; it measures its own baselines in
the same process, right beside the figure, so ratios are fair on any machine.
`python -m benchmarks inmemory` runs only modules whose name contains
"inmemory".
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._record import Record

_HERE = Path(__file__).parent


def _modules(selected: list[str]) -> list[str]:
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(_HERE)]) if m.name.startswith("bench_")
    )
    return [n for n in names if not selected or any(s in n for s in selected)]


def _table(records: list[Record]) -> Table:
    table = Table(title="pachytype benchmarks")
    for column in ("name", "value", "unit", "baseline", "baseline value", "ratio", "note"):
        table.add_column(column, justify="right" if "value" in column else "left")
    for r in records:
        table.add_row(
            r.name,
            f"{r.value:,.1f}",
            r.unit,
            r.baseline or "",
            "" if r.baseline_value is None else f"{r.baseline_value:,.1f}",
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.note,
        )
    return table


def main(argv: list[str]) -> None:
    console = Console()
    records: list[Record] = []
    for name in _modules(argv):
        started = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        console.print(f"[bold]{name}[/bold] ...")
        records.extend(module.run())
        console.print(f"  done in {time.perf_counter() - started:.1f}s")
    console.print(_table(records))
    out = _HERE / "results.json"
    out.write_text(json.dumps([r.as_json() for r in records], indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
