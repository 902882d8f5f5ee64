"""Which serving settings give a classifier archive the most throughput on this machine?

Builds the archive once per setting (workers, torch threads per worker, batch size,
maxBatchDelay, threads preparing a batch's images) into a scratch model store, serves it alone through a real TorchServe, and drives
it with ``afdserve bench``'s client at several concurrencies. Prints a Markdown table (best
throughput, the concurrency it came at, p50/p95 there, p50 for one client at a time) and writes
it with the raw figures to ``--out``. The archives' ServingConfig is chosen from this. Usage:

    python scripts/sweep_serving.py [--models afd_classifier,lite0_baseline] [--requests 96]
        [--settings "1,2,4,5,1;1,2,4,5,2"] [--passes 2]

``--passes`` runs the whole list again, the settings taking turns, and reports each setting's
median: on a shared VM a single run of one setting can be off by 10% or more.
"""

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

from afdserve.packaging.archive import ServingConfig, build_spec, variant
from afdserve.experiments.bench import REPO_CONFIG, TYPICAL, SIZES, photo_jpeg, served
from afdserve.ops.server import LocalTorchServe, free_ports

# (workers, threads per worker, batch size, maxBatchDelay ms, threads preparing a batch)
SETTINGS = (
    (1, 2, 8, 10, 2),
    (1, 2, 1, 0, 2),
    (1, 2, 4, 5, 2),
    (1, 2, 4, 5, 1),
    (2, 1, 1, 0, 1),
    (2, 1, 4, 5, 1),
    (2, 1, 8, 10, 1),
    (2, 1, 8, 25, 1),
)


def sweep_one(model: str, setting: tuple, body: bytes, concurrencies, requests: int, store: Path) -> dict:
    workers, threads, batch, delay, prepare_threads = setting
    version = "0." + "".join(str(v) for v in setting)
    spec = dataclasses.replace(variant(model), version=version, serving=ServingConfig(
        workers=workers, threads=threads, batch_size=batch, max_batch_delay_ms=delay,
        prepare_threads=prepare_threads, reason="sweep"))
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
    parser.add_argument("--settings", help="';'-separated workers,threads,batch,delay,prepare_threads "
                        "(default: the built-in list)")
    parser.add_argument("--passes", type=int, default=1, help="runs of the whole list; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("results") / "bench")
    args = parser.parse_args()
    settings = SETTINGS
    if args.settings:
        settings = [tuple(int(v) for v in item.split(",")) for item in args.settings.split(";")]
    body = photo_jpeg(*next((w, h) for label, w, h in SIZES if label == TYPICAL))
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows, raw = [], {}
    header = ("| model | workers x threads | prepare threads | batch | delay ms | best img/s (clients) "
              "| p50 / p95 ms there | p50 ms, 1 client |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(header)
    with tempfile.TemporaryDirectory() as store:
        for model in args.models.split(","):
            runs = {setting: [] for setting in settings}
            for _ in range(args.passes):
                for setting in settings:
                    runs[setting].append(sweep_one(model, setting, body, concurrencies, args.requests, Path(store)))
            for setting, results in runs.items():
                raw[f"{model} {setting}"] = results
                rows.append(summary_row(model, setting, results, concurrencies))
                print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text(f"# Serving settings sweep (`python scripts/sweep_serving.py`)\n\n"
                                       f"500x375 JPEG, {args.requests} requests per level, median of "
                                       f"{args.passes} pass(es).\n\n"
                                       + header + "\n" + "\n".join(rows) + "\n")
    (args.out / "sweep.json").write_text(json.dumps(raw, indent=2))
    print(f"wrote {args.out}/sweep.md and sweep.json")


def summary_row(model: str, setting: tuple, results: list[dict], concurrencies) -> str:
    """One table row: at the concurrency with the best median throughput, the medians over passes."""
    def median(c, pick):
        return statistics.median(pick(r["by_concurrency"][str(c)]) for r in results)

    best_c = max(concurrencies, key=lambda c: median(c, lambda level: level["throughput_rps"]))
    workers, threads, batch, delay, prepare_threads = setting
    return (f"| {model} | {workers} x {threads} | {prepare_threads} | {batch} | {delay} "
            f"| {median(best_c, lambda level: level['throughput_rps']):.1f} ({best_c}) "
            f"| {median(best_c, lambda level: level['latency_ms']['p50']):.0f} / "
            f"{median(best_c, lambda level: level['latency_ms']['p95']):.0f} "
            f"| {median(concurrencies[0], lambda level: level['latency_ms']['p50']):.0f} |")


if __name__ == "__main__":
    main()
