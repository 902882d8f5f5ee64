"""How an experiment leaves its results: NAME.json (everything), NAME.md (the tables, also printed)
and NAME.png (the plot) in one folder."""

import json
from collections.abc import Callable
from pathlib import Path


def write_report(out: Path, name: str, report: dict, text: str, plot: Callable[[dict, Path], None] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(text)
    if plot is not None:
        plot(report, out / f"{name}.png")
    print(text)
