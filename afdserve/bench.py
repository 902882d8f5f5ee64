"""Per-image latency of the built archives, in-process and through a real TorchServe, in one run
on the same machine. A script that prints figures, not a timed test.

``afdserve bench --model-store model_store``
"""

import io
import json
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import torch
from PIL import Image

from afdserve.evaluation import service_from_archive
from afdserve.manifest import served_archives
from afdserve.server import LocalTorchServe, free_ports

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.properties"


def typical_jpeg(width: int = 500, height: int = 375, quality: int = 75) -> bytes:
    """A typical web photo: scikit-image's coffee photo at ImageNet's usual 500x375."""
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.coffee()).resize((width, height), Image.Resampling.BICUBIC).save(
        out, format="JPEG", quality=quality)
    return out.getvalue()


def percentiles(ms: list[float]) -> dict:
    ordered = sorted(ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": statistics.median(ordered), "p95": pick(0.95), "mean": statistics.fmean(ordered)}


def time_calls(call, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - t0))
    return times


def bench_in_process(mar: Path, body: bytes, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(mar, Path(tmp))
        single = percentiles(time_calls(lambda: service.handle([body]), n))
        batch = percentiles(time_calls(lambda: service.handle([body] * 8), max(3, n // 8)))
    return {"batch1_ms": single, "batch8_ms_per_image": {k: v / 8 for k, v in batch.items()}}


def bench_served(server: LocalTorchServe, model: str, body: bytes, n: int, concurrency: int) -> dict:
    url = f"{server.inference_url}/predictions/{model}"
    headers = server.inference_headers()
    session = requests.Session()

    def call(s=session):
        response = s.put(url, data=body, headers=headers, timeout=60)
        response.raise_for_status()

    sequential = percentiles(time_calls(call, n))
    total = n * 2
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: call(requests), range(total)))
    throughput = total / (time.perf_counter() - t0)
    return {"sequential_ms": sequential, f"throughput_at_{concurrency}_clients": throughput}


def cmd_bench(args) -> int:
    body = typical_jpeg()
    torch.set_num_threads(args.threads)
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "image": "500x375 JPEG q75", "models": {}}
    models = {m: served_archives(args.model_store, m)[:1] for m in args.models.split(",")}
    for model, mar in models.items():
        report["models"][model] = {"in_process": bench_in_process(args.model_store / mar[0], body, args.requests)}
        print(model, "in-process:", json.dumps(report["models"][model]["in_process"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        with LocalTorchServe(args.model_store, models, Path(tmp), config_file=REPO_CONFIG,
                             ports=tuple(free_ports(3)), tmpdir=Path(tmp) / "tmp") as server:
            report["startup_seconds"] = server.startup_seconds
            for model in models:
                served = bench_served(server, model, body, args.requests, args.concurrency)
                report["models"][model]["torchserve"] = served
                print(model, "TorchServe:", json.dumps(served), flush=True)
    print(f"\nTorchServe start-up to every model READY: {report['startup_seconds']:.1f} s")
    print("| model | in-process batch 1 p50 | in-process batch 8, per image | TorchServe sequential p50 "
          f"| TorchServe throughput, {args.concurrency} clients |")
    print("| --- | --- | --- | --- | --- |")
    for model, r in report["models"].items():
        served = r["torchserve"]
        print(f"| {model} | {r['in_process']['batch1_ms']['p50']:.1f} ms "
              f"| {r['in_process']['batch8_ms_per_image']['p50']:.1f} ms "
              f"| {served['sequential_ms']['p50']:.1f} ms "
              f"| {served[f'throughput_at_{args.concurrency}_clients']:.1f} img/s |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("bench", help="per-image latency in-process and through TorchServe")
    p.add_argument("--model-store", type=Path, default=Path("model_store"))
    p.add_argument("--models", default="afd_classifier,lite0_baseline")
    p.add_argument("--requests", type=int, default=40, help="timed requests per measurement")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the in-process runs")
    p.add_argument("--json", help="also write the report here")
    p.set_defaults(func=cmd_bench)
