"""Which serving settings give a classifier archive the most throughput on this machine?

Builds the archive once per setting (workers, torch threads per worker, batch size,
maxBatchDelay) into a scratch model store, serves it alone through a real TorchServe, and drives
it with ``afdserve bench``'s client at several concurrencies. Prints a Markdown table (best
throughput, the concurrency it came at, p50/p95 there, p50 for one client at a time) and writes
it with the raw figures to ``--out``. The archives' ServingConfig is chosen from this. Usage:

    python scripts/sweep_serving.py [--models afd_classifier,lite0_baseline] [--requests 96]
"""

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from afdserve.archive import ServingConfig, build_spec, variant
from afdserve.bench import REPO_CONFIG, TYPICAL, SIZES, photo_jpeg, served
from afdserve.server import LocalTorchServe, free_ports

# (workers, threads per worker, batch size, maxBatchDelay ms)
SETTINGS = (
    (1, 2, 8, 10),
    (1, 2, 1, 0),
    (1, 2, 4, 5),
    (2, 1, 1, 0),
    (2, 1, 4, 5),
    (2, 1, 8, 10),
    (2, 1, 8, 25),
)


def sweep_one(model: str, setting: tuple, body: bytes, concurrencies, requests: int, store: Path) -> dict:
    workers, threads, batch, delay = setting
    version = "0.{}{}{}{}".format(*setting)
    spec = dataclasses.replace(variant(model), version=version, serving=ServingConfig(
        workers=workers, threads=threads, batch_size=batch, max_batch_delay_ms=delay, reason="sweep"))
    archive = build_spec(spec, store)
    with tempfile.TemporaryDirectory() as tmp:
        with LocalTorchServe(store, {model: archive.name}, Path(tmp), config_file=REPO_CONFIG,
                             ports=tuple(free_ports(3)), tmpdir=Path(tmp) / "tmp") as server:
            result = served(server, [model], body, concurrencies, requests, rounds=1)[model]
    archive.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="afd_classifier,lite0_baseline")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench")
    args = parser.parse_args()
    body = photo_jpeg(*next((w, h) for label, w, h in SIZES if label == TYPICAL))
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows, raw = [], {}
    header = ("| model | workers x threads | batch | delay ms | best img/s (clients) | p50 / p95 ms there "
              "| p50 ms, 1 client |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(header)
    with tempfile.TemporaryDirectory() as store:
        for model in args.models.split(","):
            for setting in SETTINGS:
                result = sweep_one(model, setting, body, concurrencies, args.requests, Path(store))
                raw[f"{model} {setting}"] = result
                levels = result["by_concurrency"]
                best_c, best = max(levels.items(), key=lambda kv: kv[1]["throughput_rps"])
                workers, threads, batch, delay = setting
                row = (f"| {model} | {workers} x {threads} | {batch} | {delay} "
                       f"| {best['throughput_rps']:.1f} ({best_c}) "
                       f"| {best['latency_ms']['p50']:.0f} / {best['latency_ms']['p95']:.0f} "
                       f"| {levels[str(concurrencies[0])]['latency_ms']['p50']:.0f} |")
                rows.append(row)
                print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text(f"# Serving settings sweep (`python scripts/sweep_serving.py`)\n\n"
                                       f"500x375 JPEG, {args.requests} requests per level.\n\n"
                                       + header + "\n" + "\n".join(rows) + "\n")
    (args.out / "sweep.json").write_text(json.dumps(raw, indent=2))
    print(f"wrote {args.out}/sweep.md and sweep.json")


if __name__ == "__main__":
    main()
