"""Where a restorer's time goes: one forward at 256 and 512 px under torch's profiler, and whole
photos through the served restoration path (tiling included).

    .venv/bin/python scripts/profile_restorer.py [--weights afdserve/weights/swinir_compact_v1.pt]
        [--threads 2] [--out results/restorer-profile]

Prints, per size, the seconds of one forward, the multiply-adds per second and the ten costliest
operator groups; then the seconds to restore a 500x500 photo with the archive's tiles. Writes the
same as Markdown. Worker settings are applied first (afdserve.serving.worker_process), so what is
timed is what a worker runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from afdserve.models.swinir import count_macs, load_swinir_checkpoint
from afdserve.serving.restoration import TileSpec, restore
from afdserve.serving.worker_process import prepare_worker_process

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "afdserve" / "weights" / "swinir_compact_v1.pt"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/restorer-profile"))
    args = parser.parse_args(argv)

    prepare_worker_process()
    torch.set_num_threads(args.threads)
    model = load_swinir_checkpoint(args.weights).eval()
    lines = [f"# Restorer profile: {args.weights.name}, {args.threads} threads, torch {torch.__version__}", ""]
    with torch.inference_mode():
        for size in (256, 512):
            x = torch.rand(1, 3, size, size)
            model(x)  # warm-up: allocator, masks
            seconds = best_of(lambda: model(x), args.repeats)
            macs = count_macs(model, size, size)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
            lines += [f"## One forward at {size}x{size}", "",
                      f"{seconds:.3f} s, {macs / 1e9:.1f} G multiply-adds: {macs / seconds / 1e9:.1f} G/s", "",
                      "```", table, "```", ""]
            print("\n".join(lines[-7:]), flush=True)

        photo = (np.random.default_rng(0).random((500, 500, 3)) * 255).astype(np.uint8)
        for tiles in (TileSpec(), TileSpec(size=512)):
            seconds = best_of(lambda: restore(model, photo, tiles), args.repeats)
            lines.append(f"- a 500x500 photo through `restore` with {tiles}: {seconds:.2f} s")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
