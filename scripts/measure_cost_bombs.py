"""What each cost bomb (afdserve.experiments.cost_bombs) costs to decode, without and with the structure limits.

    .venv/bin/python scripts/measure_cost_bombs.py [--cap 120] [--out results/cost-bombs]

"Without" decodes with the structure check switched off and a CPU budget of ``--cap`` seconds as
the only bound (a bomb that reaches it is shown as "> cap"); "with" is the served path. CPU time
of this thread, so other load on the machine changes little. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

import afdserve.imaging.decode as decode_module
from afdserve.experiments.cost_bombs import cost_bombs
from afdserve.imaging.budget import BudgetExceeded, CpuBudget
from afdserve.imaging.decode import ImageDecodeError, decode_image


def cost(body: bytes, cap_s: float | None) -> tuple[float, str]:
    """(CPU seconds, outcome) of decoding ``body``."""
    start = time.thread_time()
    try:
        decode_image(body, budget=CpuBudget(cap_s) if cap_s else None)
        outcome = "decoded"
    except BudgetExceeded:
        outcome = "budget"
    except ImageDecodeError as err:
        outcome = f"{err.status}"
    return time.thread_time() - start, outcome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cap", type=float, default=120.0, help="CPU seconds a bomb may take unlimited")
    parser.add_argument("--out", type=Path, default=Path("results/cost-bombs"))
    args = parser.parse_args(argv)

    rows = []
    check_structure = decode_module.check_structure
    for bomb in tqdm(cost_bombs(), desc="bombs", file=sys.stderr):
        decode_module.check_structure = lambda data: None
        try:
            without_s, without = cost(bomb.body, args.cap)
        finally:
            decode_module.check_structure = check_structure
        with_s, served = cost(bomb.body, None)
        shown = f"> {args.cap:g}" if without == "budget" else f"{without_s:.2f}"
        rows.append(f"| {bomb.name} | {len(bomb.body) / 1e6:.2f} | {shown} ({without}) | {with_s * 1e3:.1f} | {served} |")
    table = "\n".join(["# Cost bombs: CPU seconds to decode, without and with the structure limits", "",
                       "| bomb | MB | without limits, s | with limits, ms | answer |",
                       "| --- | --- | --- | --- | --- |", *rows]) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost_bombs.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
