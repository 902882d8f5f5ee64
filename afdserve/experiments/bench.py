"""``afdserve bench``: where a served classifier's time goes, in one run on one machine.

For each model archive:
- the model alone (batch 1 and the served batch size), on prepared inputs;
- the full in-process path (decode + DCT + resize + model + JSON) through the same
  ``ClassifierService`` the handler runs, with the CPU time per image split by stage, for image
  sizes from a small web image to a 12-megapixel photo;
- the same archive through a real TorchServe at several client concurrencies: throughput and
  p50/p95/p99 latency.

It reports the ratio of the best served throughput to the in-process full path (at the faster of
batch 1 and the served batch size), the share of CPU time outside the model, and writes bench.md,
bench.json and bench.png. A restorer archive among --models gets its own table: seconds per image
and per megapixel in-process at three sizes, the multiply-adds per second that makes, and the
served latency of a 500x500 photo. ``--device cuda --no-served`` times the archives in-process on
a GPU. A script that prints figures, not a timed test.
"""

from __future__ import annotations

import io
import json
import os
import platform
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml
from PIL import Image

from afdserve.experiments.reports import write_report
from afdserve.ops.client import Target, TorchServeClient
from afdserve.ops.latency import latency_summary
from afdserve.evaluation.accuracy import service_from_archive
from afdserve.imaging.preprocess import ModelInput, dct_tensor, image_tensor
from afdserve.packaging.manifest import read_manifest, served_archives
from afdserve.ops.server import LocalTorchServe, free_ports
from afdserve.serving.settings import ArchiveSettings
from afdserve.serving.worker_process import prepare_worker_process

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.properties"
STAGES = ("decode", "resize", "dct", "model", "serialize")
# (label, width, height): ImageNet's typical 500x375 web photo, smaller and larger ones.
SIZES = (("320x240", 320, 240), ("500x375", 500, 375), ("1600x1200", 1600, 1200), ("4000x3000", 4000, 3000))
TYPICAL = "500x375"


def photo_jpeg(width: int, height: int, quality: int = 75) -> bytes:
    """scikit-image's coffee photo resized to width x height, as a Pillow JPEG."""
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.coffee()).resize((width, height), Image.Resampling.BICUBIC).save(
        out, format="JPEG", quality=quality)
    return out.getvalue()


def _thread_cpu_ms(fn, *args):
    """(result, CPU milliseconds of the calling thread) of one call."""
    t0 = time.thread_time()
    result = fn(*args)
    return result, 1000 * (time.thread_time() - t0)


def stage_profile(service, body: bytes, repeats: int) -> dict:
    """Mean CPU ms per image of each stage of the served path, one request at a time.

    Decoding, resizing, the DCT and serialising run on the calling thread alone, so each gets
    that thread's CPU time. The model gets the rest of the process's CPU time in the round: its
    own threads, and their spin-waits after the forward pass, which would otherwise land in
    whichever stage runs next.
    """
    totals = dict.fromkeys(STAGES, 0.0)
    afd = service.model.afd
    for round_ in range(repeats + 1):  # the first round warms caches and is dropped
        process_t0 = time.process_time()
        decoded, decode_ms = _thread_cpu_ms(service.read_image, body)
        image, resize_ms = _thread_cpu_ms(image_tensor, decoded.image, service.model.spec)
        dct, dct_ms = _thread_cpu_ms(dct_tensor, decoded, service.model.spec) if afd is not None else (None, 0.0)
        probs = service.predict(service.batch([ModelInput(image, dct, decoded.quality)]))
        _, serialize_ms = _thread_cpu_ms(lambda: json.dumps(service.answer(probs[0], decoded.quality)))
        round_ms = 1000 * (time.process_time() - process_t0)
        if round_ == 0:
            continue
        model_ms = round_ms - decode_ms - resize_ms - dct_ms - serialize_ms
        for stage, ms in zip(STAGES, (decode_ms, resize_ms, dct_ms, model_ms, serialize_ms)):
            totals[stage] += ms / repeats
    total = sum(totals.values())
    return {"cpu_ms": totals, "cpu_ms_total": total,
            "share_outside_model": (total - totals["model"]) / total if total else None}


def _wall_ms_per_image(fn, images_per_call: int, repeats: int, chunks: int = 3) -> float:
    """Wall ms per image: the fastest of ``chunks`` runs of ``repeats`` calls, so that a slow
    spell of a shared machine is not taken for the code's speed."""
    fn()
    best = float("inf")
    for _ in range(chunks):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / (repeats * images_per_call))
    return 1000 * best


def in_process(mar: Path, bodies: dict[str, bytes], batch: int, repeats: int, device: str = "cpu") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(mar, Path(tmp), device=device)
        typical = bodies[TYPICAL]
        decoded = service.read_image(typical)
        afd = service.model.afd
        spec = service.model.spec
        inp = ModelInput(image_tensor(decoded.image, spec), dct_tensor(decoded, spec) if afd is not None else None,
                         decoded.quality)
        out = {
            "model_only_ms_per_image": {
                "batch_1": _wall_ms_per_image(lambda: service.predict(service.batch([inp])), 1, repeats),
                f"batch_{batch}": _wall_ms_per_image(lambda: service.predict(service.batch([inp] * batch)), batch,
                                                     max(2, repeats // batch)),
            },
            "full_path_ms_per_image": {
                "batch_1": _wall_ms_per_image(lambda: service.handle([typical]), 1, repeats),
                f"batch_{batch}": _wall_ms_per_image(lambda: service.handle([typical] * batch), batch,
                                                     max(2, repeats // batch)),
            },
            # 12-megapixel photos take seconds each: fewer rounds.
            "stages_by_size": {label: stage_profile(service, body, repeats if label != SIZES[-1][0] else 2)
                               for label, body in bodies.items()},
        }
    # The reference for the served figure: the in-process path at its best batch size.
    out["full_path_images_per_s"] = 1000 / min(out["full_path_ms_per_image"].values())
    return out


# The restorer's sizes: a small web image, the 500x500 photo, a larger one that is tiled.
RESTORER_SIZES = (("256x256", 256, 256), ("500x500", 500, 500), ("1024x768", 1024, 768))
RESTORER_TYPICAL = "500x500"


def model_config(mar: Path) -> dict:
    """An archive's model-config.yaml: TorchServe's settings, ours under ``afdserve``."""
    with zipfile.ZipFile(mar) as z:
        return yaml.safe_load(z.read("model-config.yaml"))


def restorer_in_process(mar: Path, repeats: int, device: str = "cpu") -> dict:
    """Wall seconds per image and per megapixel of the whole in-process path (decode, tiles,
    network, PNG), and the multiply-adds per second that makes."""
    # The multiply-adds per pixel from the weights' training record (an official checkpoint has
    # none: then no rate).
    macs_per_pixel = (read_manifest(mar).get("record") or {}).get("macs_per_pixel")
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(mar, Path(tmp), device=device)
        dtype = next(service.model.parameters()).dtype  # the archive's precision
        out = {"macs_per_pixel": macs_per_pixel, "precision": str(dtype).removeprefix("torch."), "by_size": {}}
        for label, w, h in RESTORER_SIZES:
            body = photo_jpeg(w, h, quality=20)
            seconds = _wall_ms_per_image(lambda: service.handle([body]), 1, max(1, repeats // 8), chunks=2) / 1000
            megapixels = w * h / 1e6
            out["by_size"][label] = {"s_per_image": seconds, "s_per_megapixel": seconds / megapixels,
                                     "gmacs_per_s": macs_per_pixel * w * h / seconds / 1e9 if macs_per_pixel else None}
    return out


def _drive(client: TorchServeClient, target: Target, body: bytes, clients: int, n: int) -> dict:
    """n requests from ``clients`` concurrent callers: throughput, latency, the client's own CPU."""
    def call(_):
        outcome = client.predict(target, body)
        return outcome.status, outcome.latency_s

    t0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(call, range(n)))
    wall = time.perf_counter() - t0
    ok = [s for code, s in results if code == 200]
    # The load generator shares this machine's cores with the server: say what it took.
    return {"requests": n, "errors": n - len(ok), "throughput_rps": len(ok) / wall,
            "latency_ms": latency_summary(ok), "client_cpu_ms_per_request": 1000 * (time.process_time() - cpu0) / n}


def served(server: LocalTorchServe, models: list[str], body: bytes, concurrencies, requests_per_level: int,
           rounds: int = 3) -> dict:
    """Per model, per client concurrency, the median of ``rounds`` runs. The models take turns
    within each round, so a slow spell of a shared machine does not land on one model alone."""
    client = TorchServeClient(server.inference_url, key_file=server.key_file, timeout=120)
    for model in models:  # warm-up
        _drive(client, Target(model), body, 1, 4)
    out = {model: {"by_concurrency": {}} for model in models}
    for c in concurrencies:
        n = max(requests_per_level, 4 * c)
        runs = {model: [] for model in models}
        for _ in range(rounds):
            for model in models:
                runs[model].append(_drive(client, Target(model), body, c, n))
        for model, model_runs in runs.items():
            model_runs.sort(key=lambda r: r["throughput_rps"])
            median = model_runs[len(model_runs) // 2]
            median["throughput_rps_runs"] = [r["throughput_rps"] for r in model_runs]
            out[model]["by_concurrency"][str(c)] = median
    for result in out.values():
        result["best_throughput_rps"] = max(v["throughput_rps"] for v in result["by_concurrency"].values())
    return out


def markdown(report: dict) -> str:
    lines = [f"# Serving benchmark ({report['machine']})", "",
             f"torch {report['torch']}, {report['threads']} intra-op threads in-process; served: the archives' "
             f"model-config (batch {report['batch']}), TorchServe {report['torchserve']}.", "",
             "| model | model alone b1 / b%d ms/img | full path b1 / b%d ms/img | served best img/s (clients) "
             "| served / in-process | p50 / p95 / p99 ms at best | client CPU ms/request at best "
             "| CPU outside the model (500x375) |"
             % (report["batch"], report["batch"]), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in report["models"].items():
        ip, sv = r["in_process"], r.get("served")
        b = f"batch_{report['batch']}"
        served_cells = "not served | | | "  # --no-served
        if sv is not None:
            best_c, best = max(sv["by_concurrency"].items(), key=lambda kv: kv[1]["throughput_rps"])
            lat = best["latency_ms"]
            served_cells = (f"{best['throughput_rps']:.1f} ({best_c}) | {100 * r['served_vs_in_process']:.0f}% "
                            f"| {lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} "
                            f"| {best['client_cpu_ms_per_request']:.1f}")
        lines.append(
            f"| {name} | {ip['model_only_ms_per_image']['batch_1']:.1f} / {ip['model_only_ms_per_image'][b]:.1f} "
            f"| {ip['full_path_ms_per_image']['batch_1']:.1f} / {ip['full_path_ms_per_image'][b]:.1f} "
            f"| {served_cells} | {100 * ip['stages_by_size'][TYPICAL]['share_outside_model']:.0f}% |")
    lines += ["", "CPU ms per image by stage, one request at a time (each stage its own thread's CPU; the "
              "model the rest of the process's, its threads' spin-waits included):", "",
              "| model | image | " + " | ".join(STAGES) + " | total | outside the model |",
              "| --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- | --- |"]
    for name, r in report["models"].items():
        for size, st in r["in_process"]["stages_by_size"].items():
            lines.append(f"| {name} | {size} | " + " | ".join(f"{st['cpu_ms'][s]:.1f}" for s in STAGES)
                         + f" | {st['cpu_ms_total']:.1f} | {100 * st['share_outside_model']:.0f}% |")
    if not all("served" in r for r in report["models"].values()):
        return "\n".join(lines) + "\n"
    lines += ["", f"Throughput through TorchServe by client concurrency (img/s, median of {report['rounds']} runs "
              "with the models taking turns; p95 ms):", "",
              "| model | " + " | ".join(report["concurrencies_label"]) + " |",
              "| --- | " + " | ".join("---" for _ in report["concurrencies_label"]) + " |"]
    for name, r in report["models"].items():
        cells = [f"{v['throughput_rps']:.1f}; {v['latency_ms']['p95']:.0f}" for v in r["served"]["by_concurrency"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    names = list(report["models"])
    if "afd_classifier" in names and "lite0_baseline" in names:
        ratio = (report["models"]["lite0_baseline"]["served"]["best_throughput_rps"]
                 / report["models"]["afd_classifier"]["served"]["best_throughput_rps"])
        lines += ["", f"Served throughput of lite0_baseline / afd_classifier: {ratio:.2f}x."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    names = list(report["models"])
    sizes = [label for label, _, _ in SIZES]
    width = 0.8 / len(names)
    for m, name in enumerate(names):
        stages = report["models"][name]["in_process"]["stages_by_size"]
        bottom = [0.0] * len(sizes)
        for s, stage in enumerate(STAGES):
            values = [stages[size]["cpu_ms"][stage] for size in sizes]
            axes[0].bar([i + m * width for i in range(len(sizes))], values, width, bottom=bottom,
                        color=f"C{s}", label=stage if m == 0 else None, edgecolor="black", linewidth=0.3)
            bottom = [b + v for b, v in zip(bottom, values)]
    axes[0].set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(sizes))], sizes)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("CPU ms per image (log)")
    axes[0].set_title("stages by image size (bars: " + ", ".join(names) + ")", fontsize=9)
    axes[0].legend(fontsize=8)
    for name in names:
        if "served" not in report["models"][name]:
            continue
        levels = report["models"][name]["served"]["by_concurrency"]
        axes[1].plot([int(c) for c in levels], [v["throughput_rps"] for v in levels.values()], "o-", label=name)
        axes[1].axhline(report["models"][name]["in_process"]["full_path_images_per_s"], ls="--", lw=0.8,
                        color=axes[1].lines[-1].get_color())
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("client concurrency")
    axes[1].set_ylabel("images/s through TorchServe (dashed: in-process)")
    axes[1].legend(fontsize=8)
    fig.suptitle(report["machine"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def restorer_served(client: TorchServeClient, model: str, requests: int) -> dict:
    """One request at a time (a restorer's worker is busy for seconds per photo): latency of the
    typical photo, per image and per megapixel."""
    label, w, h = next(size for size in RESTORER_SIZES if size[0] == RESTORER_TYPICAL)
    body = photo_jpeg(w, h, quality=20)
    _drive(client, Target(model), body, 1, 1)  # warm-up
    result = _drive(client, Target(model), body, 1, requests)
    result["image"] = label
    result["s_per_megapixel_p50"] = result["latency_ms"]["p50"] / 1000 / (w * h / 1e6)
    return result


def restorer_markdown(report: dict) -> str:
    lines = ["", "## Restorers", "",
             "Whole in-process path (decode, tiles, network, PNG), one image at a time, wall clock; served: "
             f"one request at a time through TorchServe, the {RESTORER_TYPICAL} photo.", "",
             "| model | precision | multiply-adds per pixel | image | in-process s | s per megapixel | GMAC/s "
             "| served p50 s (s per megapixel) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in report["restorers"].items():
        ip, sv = r["in_process"], r.get("served")
        for label, row in ip["by_size"].items():
            served_cell = ""
            if sv is not None and label == sv["image"]:
                served_cell = f"{sv['latency_ms']['p50'] / 1000:.2f} ({sv['s_per_megapixel_p50']:.2f})"
            macs = f"{ip['macs_per_pixel'] / 1e3:.0f}K" if ip["macs_per_pixel"] else "not recorded"
            rate = f"{row['gmacs_per_s']:.1f}" if row["gmacs_per_s"] else ""
            lines.append(f"| {name} | {ip['precision']} | {macs} | {label} | {row['s_per_image']:.2f} "
                         f"| {row['s_per_megapixel']:.2f} | {rate} | {served_cell} |")
    return "\n".join(lines) + "\n"


def cmd_bench(args) -> int:
    from importlib.metadata import version

    torch.set_num_threads(args.threads)
    if args.device != "cpu" and not args.no_served:
        raise SystemExit("--device cuda measures in-process only: add --no-served (TorchServe places "
                         "workers on GPUs itself)")
    prepare_worker_process()  # as the served workers do
    models = {m: served_archives(args.model_store, m)[:1] for m in args.models.split(",")}
    missing = [m for m, files in models.items() if not files]
    if missing:
        raise SystemExit(f"no archive for {', '.join(missing)} in {args.model_store}: afdserve build")
    configs = {m: model_config(args.model_store / files[0]) for m, files in models.items()}
    restorers = {m: f for m, f in models.items() if ArchiveSettings.from_dict(configs[m]["afdserve"]).is_restorer}
    classifiers = {m: f for m, f in models.items() if m not in restorers}
    bodies = {label: photo_jpeg(w, h) for label, w, h in SIZES}
    batch = int(configs[next(iter(classifiers))]["batchSize"]) if classifiers else 0
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.device != "cpu":
        machine += f", {torch.cuda.get_device_name(torch.device(args.device))}"
    report = {"machine": machine, "device": args.device,
              "torch": torch.__version__, "torchserve": version("torchserve") if not args.no_served else "-",
              "threads": torch.get_num_threads(), "batch": batch, "rounds": args.rounds,
              "concurrencies_label": [str(c) for c in concurrencies],
              "models": {}, "restorers": {}}
    for model, files in classifiers.items():
        report["models"][model] = {"archive": files[0],
                                   "in_process": in_process(args.model_store / files[0], bodies, batch, args.repeats,
                                                            args.device)}
        print(model, "in-process done", flush=True)
    for model, files in restorers.items():
        report["restorers"][model] = {"archive": files[0], "in_process": restorer_in_process(
            args.model_store / files[0], args.repeats, args.device)}
        print(model, "in-process done", flush=True)
    if not args.no_served:
        with tempfile.TemporaryDirectory() as tmp:
            with LocalTorchServe(args.model_store, models, Path(tmp), config_file=REPO_CONFIG,
                                 ports=tuple(free_ports(3)), tmpdir=Path(tmp) / "tmp") as server:
                report["startup_seconds"] = server.startup_seconds
                if classifiers:
                    for model, result in served(server, list(classifiers), bodies[TYPICAL], concurrencies,
                                                args.requests, args.rounds).items():
                        report["models"][model]["served"] = result
                client = TorchServeClient(server.inference_url, key_file=server.key_file, timeout=300)
                for model in restorers:
                    report["restorers"][model]["served"] = restorer_served(client, model, max(3, args.rounds))
        for r in report["models"].values():
            r["served_vs_in_process"] = r["served"]["best_throughput_rps"] / r["in_process"]["full_path_images_per_s"]
    text = (markdown(report) if classifiers else f"# Serving benchmark ({machine})\n") + (
        restorer_markdown(report) if restorers else "")
    write_report(args.out, "bench", report, text, plot if classifiers else None)
    if "startup_seconds" in report:
        print(f"TorchServe start-up to every model READY: {report['startup_seconds']:.1f} s")
    print(f"wrote {args.out}/bench.md, bench.json" + (", bench.png" if classifiers else ""))
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("bench", help="where the serving time goes: in-process by stage and through TorchServe")
    p.add_argument("--model-store", type=Path, default=Path("model_store"))
    p.add_argument("--models", default="afd_classifier,lite0_baseline")
    p.add_argument("--requests", type=int, default=48, help="requests per concurrency level (default: %(default)s)")
    p.add_argument("--concurrency", default="1,2,4,8,16", help="client concurrencies (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="served runs per concurrency and model, the models taking turns; the median is "
                        "reported (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=16, help="timed repetitions in-process (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the in-process runs")
    p.add_argument("--out", type=Path, default=Path("results") / "bench")
    p.add_argument("--device", default="cpu", help="device of the in-process runs: cpu, or cuda with --no-served")
    p.add_argument("--no-served", action="store_true", help="in-process figures only (no TorchServe started)")
    p.set_defaults(func=cmd_bench)
