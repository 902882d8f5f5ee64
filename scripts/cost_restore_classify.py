"""What one image costs through each classifier archive, restore-then-classify included, in-process
and through TorchServe: the cost column of issue 16's table. ``afdserve bench`` profiles
classifiers up to 12-megapixel photos, beyond what a restorer archive admits; this times the two
sizes the table speaks of, one request at a time, the models taking turns.

    python scripts/cost_restore_classify.py --model-store model_store \
        --models lite0_baseline,afd_classifier,restore_classify --out results/task-restorer/cost
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from afdserve.evaluation.accuracy import service_from_archive
from afdserve.experiments.bench import REPO_CONFIG, _drive, photo_jpeg
from afdserve.ops.client import Target, TorchServeClient
from afdserve.ops.server import LocalTorchServe, free_ports
from afdserve.packaging.manifest import served_archives
from afdserve.serving.worker_process import prepare_worker_process

# imagenet-val-1000's photos are 227x227; 500x375 is ImageNet's typical web photo.
SIZES = (("227x227", 227, 227), ("500x375", 500, 375))


def in_process_ms(mar: Path, body: bytes, repeats: int) -> float:
    """Median wall time of the whole in-process path (decode, restore, prepare, classify, JSON)."""
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(mar, Path(tmp))
        service.handle([body])  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            [reply] = service.handle([body])
            times.append(time.perf_counter() - t0)
            assert reply.status == 200, reply.body
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--models", default="lite0_baseline,afd_classifier,restore_classify")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=8, help="served requests per model and size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepare_worker_process()
    models = {m: served_archives(args.model_store, m)[0] for m in args.models.split(",")}
    bodies = {label: photo_jpeg(w, h, quality=10) for label, w, h in SIZES}
    result = {"threads": args.threads, "models": {m: {"archive": f} for m, f in models.items()}}
    for model, archive in models.items():
        result["models"][model]["in_process_ms"] = {
            label: in_process_ms(args.model_store / archive, body, args.repeats) for label, body in bodies.items()}
        print(model, "in-process", result["models"][model]["in_process_ms"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        with LocalTorchServe(args.model_store, {m: [f] for m, f in models.items()}, Path(tmp),
                             config_file=REPO_CONFIG, ports=tuple(free_ports(3)), tmpdir=Path(tmp) / "tmp") as server:
            client = TorchServeClient(server.inference_url, key_file=server.key_file, timeout=300)
            for label, body in bodies.items():
                for model in models:
                    _drive(client, Target(model), body, 1, 2)  # warm-up
                runs = {model: _drive(client, Target(model), body, 1, args.requests) for model in models}
                for model, run in runs.items():
                    result["models"][model].setdefault("served_p50_ms", {})[label] = run["latency_ms"]["p50"]
    lines = ["| model | archive | in-process ms, 227x227 / 500x375 | served p50 ms, 227x227 / 500x375 |",
             "| --- | --- | --- | --- |"]
    for model, r in result["models"].items():
        ip, sv = r["in_process_ms"], r["served_p50_ms"]
        lines.append(f"| {model} | {r['archive']} | {ip['227x227']:.0f} / {ip['500x375']:.0f} "
                     f"| {sv['227x227']:.0f} / {sv['500x375']:.0f} |")
    text = (f"# Cost per image, one request at a time (JPEG quality 10; {args.threads} threads in-process)\n\n"
            + "\n".join(lines) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps(result, indent=2))
    (args.out / "cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
