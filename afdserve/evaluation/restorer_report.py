"""``afdserve evaluate-restorer``: what a SwinIR restorer does to JPEG images, and whether it earns
its cost in front of the classifier.

1. Restoration: LIVE1 colour (RGB) and classic5 (gray) at JPEG qualities 10/20/30/40, encoded by
   Pillow: PSNR, SSIM and PSNR-B of the JPEG input and of the restored image, per-image time, next
   to SwinIR-M's published figures. classic5 is gray: the JPEG is a one-channel file, the colour
   restorer sees it as three equal channels (as the server does) and the output's channel mean is
   measured.
2. Restore-then-classify: on the AFD module's validation images (never trained on by either
   model), top-1 of the plain backbone, of restorer + backbone and of backbone + AFD (the
   ``afd_v1`` release) under the protocols of ``afdserve evaluate --run``, with the share of the
   JPEG drop each wins back (paired bootstrap) and the cost per image.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from afdserve.evaluation.afd_report import (PROTOCOLS, bootstrap_share, deployed_pair, evaluation_images, load_run, pct,
                                            protocol_bytes)
from afdserve.data.folders import DEFAULT_DATA_DIR, load_labelled_folder
from afdserve.data.jpeg import jpeg_roundtrip, parse_qualities
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import collate, prepare
from afdserve.models.swinir import count_macs, load_swinir_checkpoint
from afdserve.serving.restoration import TileSpec, restore
from afdserve.serving.precision import resolve_precision
from afdserve.serving.settings import CPU_PRECISIONS
from afdserve.evaluation.restoration_metrics import measure

TESTSETS_DIR = DEFAULT_DATA_DIR.parent / "jpeg-car-testsets"
RELEASE_DIR = Path(__file__).resolve().parents[1] / "weights"

# SwinIR-M (Liang et al. 2021), one model per quality: ../shared/docs/method-notes.md.
PUBLISHED_SWINIR_M = {
    "LIVE1_color": {10: {"psnr": 28.06, "psnr_b": 27.76, "ssim": 0.8089},
                    20: {"psnr": 30.45, "psnr_b": 29.97, "ssim": 0.8741},
                    30: {"psnr": 31.82, "psnr_b": 31.24, "ssim": 0.9018},
                    40: {"psnr": 32.75, "psnr_b": 32.12, "ssim": 0.9174}},
    "classic5": {10: {"psnr": 30.27}, 20: {"psnr": 32.52}, 30: {"psnr": 33.73}, 40: {"psnr": 34.52}},
}


def gray(rgb: np.ndarray) -> np.ndarray:
    """Three equal channels in, one out; a restorer's output channels are averaged."""
    return np.round(rgb.astype(np.float64).mean(axis=2)).astype(np.uint8)


# ----------------------------------------------------------------------------- restoration


@torch.inference_mode()
def evaluate_testset(model, folder: Path, qualities: list[int], tiles: TileSpec) -> list[dict]:
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no PNG images in {folder}")
    rows = []
    for quality in qualities:
        jpeg_m, restored_m, seconds = [], [], []
        for path in tqdm(paths, desc=f"{folder.name} q{quality}", unit="img", leave=False):
            clean = np.asarray(Image.open(path))
            is_gray = clean.ndim == 2
            _, decoded = jpeg_roundtrip(clean, quality)
            t0 = time.perf_counter()
            restored = restore(model, decoded, tiles)
            seconds.append(time.perf_counter() - t0)
            if is_gray:
                decoded, restored = decoded[:, :, 0], gray(restored)
            jpeg_m.append(measure(decoded, clean))
            restored_m.append(measure(restored, clean))
        row = {"testset": folder.name, "quality": quality, "images": len(paths),
               "seconds_per_image": statistics.fmean(seconds),
               "megapixels_per_image": statistics.fmean(
                   Image.open(p).size[0] * Image.open(p).size[1] / 1e6 for p in paths)}
        for name, values in (("jpeg", jpeg_m), ("restored", restored_m)):
            for metric in values[0]:
                row[f"{name}_{metric}"] = float(np.mean([v[metric] for v in values]))
        row["never_worse"] = all(r["psnr"] >= j["psnr"] for r, j in zip(restored_m, jpeg_m))
        row["published_swinir_m"] = PUBLISHED_SWINIR_M.get(folder.name, {}).get(quality)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- restore-then-classify


@torch.inference_mode()
def classify_hits(models: dict, restorer, tiles: TileSpec, images, protocol: str, quality, dct_source: str):
    """Per-image top-1 hits of plain, AFD and restorer+plain on the same request bodies, and the
    restorer's seconds per image."""
    hits = {"plain": [], "afd": [], "restored": []}
    seconds = []
    label = "clean" if quality is None else f"q{quality}"
    for item in tqdm(images, desc=f"{protocol} {label}", unit="img", leave=False):
        decoded = decode_image(protocol_bytes(item.path, protocol, quality))
        t0 = time.perf_counter()
        restored = restore(restorer, decoded.image, tiles)
        seconds.append(time.perf_counter() - t0)
        as_served = collate([prepare(decoded, dct_source=dct_source)])
        after = collate([prepare(dataclasses.replace(decoded, image=Image.fromarray(restored)), with_dct=False)])
        hits["plain"].append(int(models["plain"](as_served["image"]).argmax(1)) == item.label)
        hits["afd"].append(int(models["afd"](**as_served).argmax(1)) == item.label)
        hits["restored"].append(int(models["plain"](after["image"]).argmax(1)) == item.label)
    return {k: np.array(v, dtype=float) for k, v in hits.items()}, statistics.fmean(seconds)


def evaluate_classification(restorer, tiles, afd_release: Path, data: Path, qualities, protocols,
                            limit: int, resamples: int, skip: int = 0) -> dict:
    run = load_run(afd_release)
    # The AFD module's validation photos, or all of a folder it never saw (imagenet-val-1000).
    # --skip and --limit split a long evaluation into parts that run side by side.
    images = evaluation_images(run, {i.path.name: i for i in load_labelled_folder(data)}, data)[skip:][: limit or None]
    plain, afd = deployed_pair(run)
    models = {"plain": plain.eval(), "afd": afd.eval()}
    rows = []
    for protocol in protocols:
        clean, clean_s = classify_hits(models, restorer, tiles, images, protocol, None, run.config.dct_source)
        for quality in qualities:
            hits, sec = (clean, clean_s) if quality is None else classify_hits(
                models, restorer, tiles, images, protocol, quality, run.config.dct_source)
            row = {"protocol": protocol, "quality": "clean" if quality is None else quality,
                   "images": len(images), "restore_seconds_per_image": sec,
                   **{f"{k}_top1": float(v.mean()) for k, v in hits.items()},
                   # Per image, in the order of "files": paired comparisons across restorers' reports.
                   "hits": {k: "".join(str(int(h)) for h in v) for k, v in hits.items()}}
            if quality is not None:
                for name in ("afd", "restored"):
                    share, lo, hi = bootstrap_share(clean["plain"], hits["plain"], hits[name], resamples)
                    row[f"{name}_recovered_share"], row[f"{name}_recovered_ci95"] = share, [lo, hi]
            rows.append(row)
            print(f"{protocol} {row['quality']}: plain {pct(row['plain_top1'])} AFD {pct(row['afd_top1'])} "
                  f"restore+plain {pct(row['restored_top1'])} ({sec:.2f} s/img restoring)", flush=True)
    return {"afd_release": run.name, "data": str(data), "images": len(images),
            "files": [i.path.name for i in images], "protocols": {p: PROTOCOLS[p] for p in protocols}, "rows": rows}


# ----------------------------------------------------------------------------- report


def macs_table(restorer) -> dict:
    from afdserve.models.swinir import SwinIR, SwinIRConfig

    with torch.device("meta"):  # shapes only: no memory, no time
        official = SwinIR(SwinIRConfig.color_car())
    side = 224
    ours, theirs = count_macs(restorer, side, side), count_macs(official.config, side, side)
    return {"restorer_macs_per_pixel": ours / side**2, "swinir_m_macs_per_pixel": theirs / side**2,
            "ratio": ours / theirs,
            "restorer_parameters": sum(p.numel() for p in restorer.parameters()),
            "swinir_m_parameters": sum(p.numel() for p in official.parameters())}


def markdown(result: dict) -> str:
    c = result["cost"]
    lines = [f"# Restorer `{result['weights']}`", "",
             f"{c['restorer_parameters']:,} parameters, {c['restorer_macs_per_pixel'] / 1e3:.0f}K multiply-adds "
             f"per pixel: {100 * c['ratio']:.1f}% of SwinIR-M's {c['swinir_m_macs_per_pixel'] / 1e6:.2f}M "
             f"({c['swinir_m_parameters']:,} parameters).", "",
             "## Restoration (Pillow JPEG; PSNR/PSNR-B in dB; colour on RGB)", "",
             "| test set | quality | JPEG PSNR / SSIM / PSNR-B | restored PSNR / SSIM / PSNR-B | gain | "
             "worse on no image | SwinIR-M published | s/image |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["restoration"]:
        pub = r["published_swinir_m"] or {}
        published = " / ".join(f"{pub[k]}" for k in ("psnr", "ssim", "psnr_b") if k in pub) or "n/a"
        lines.append(
            f"| {r['testset']} | {r['quality']} | {r['jpeg_psnr']:.2f} / {r['jpeg_ssim']:.4f} / {r['jpeg_psnr_b']:.2f} "
            f"| {r['restored_psnr']:.2f} / {r['restored_ssim']:.4f} / {r['restored_psnr_b']:.2f} "
            f"| {r['restored_psnr'] - r['jpeg_psnr']:+.2f} | {'yes' if r['never_worse'] else 'no'} "
            f"| {published} | {r['seconds_per_image']:.2f} ({r['megapixels_per_image']:.2f} MP) |")
    cls = result.get("classification")
    if cls:
        lines += ["", f"## Restore-then-classify ({cls['images']} validation images; top-1 %, share of "
                  "the JPEG drop won back with 95% CI)", "",
                  "| protocol | quality | Lite0 | Lite0 + AFD | restorer + Lite0 | AFD won back | restorer won back "
                  "| restoring s/image |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in cls["rows"]:
            def won(name):
                if f"{name}_recovered_share" not in r:
                    return ""
                lo, hi = r[f"{name}_recovered_ci95"]
                return f"{pct(r[f'{name}_recovered_share'])}% ({pct(lo)} to {pct(hi)})"
            lines.append(f"| {r['protocol']} | {r['quality']} | {pct(r['plain_top1'])} | {pct(r['afd_top1'])} "
                         f"| {pct(r['restored_top1'])} | {won('afd')} | {won('restored')} "
                         f"| {r['restore_seconds_per_image']:.2f} |")
    lines += ["", f"Threads: {result['threads']}; tiles {result['tiles']}."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["testset"] for r in result["restoration"]})
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        rows = [r for r in result["restoration"] if r["testset"] == name]
        q = [r["quality"] for r in rows]
        ax.plot(q, [r["jpeg_psnr"] for r in rows], "o-", color="tab:gray", label="JPEG input")
        ax.plot(q, [r["restored_psnr"] for r in rows], "o-", color="tab:green", label="compact SwinIR (ours)")
        pub = [(r["quality"], r["published_swinir_m"]["psnr"]) for r in rows if r["published_swinir_m"]]
        if pub:
            ax.plot(*zip(*pub), "s--", color="tab:orange", label="SwinIR-M, published")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("JPEG quality")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_evaluate_restorer(args) -> int:
    torch.set_num_threads(args.threads)
    if args.out is None:  # never the folder of a published result by accident
        args.out = Path("results") / "restorer-eval" / Path(args.weights).stem
    precision = resolve_precision(args.precision)  # as a CPU worker resolves "auto"
    restorer = load_swinir_checkpoint(args.weights).eval().to(getattr(torch, precision))
    tiles = TileSpec(size=args.tile, overlap=args.tile_overlap)
    result = {"weights": str(args.weights), "threads": args.threads, "precision": precision,
              "tiles": dataclasses.asdict(tiles), "cost": macs_table(restorer), "restoration": []}
    for name in args.testsets.split(","):
        if name:
            result["restoration"] += evaluate_testset(restorer, args.testsets_dir / name,
                                                      [int(q) for q in args.quality.split(",")], tiles)
    if args.classify:
        result["classification"] = evaluate_classification(
            restorer, tiles, args.afd_release, args.data, parse_qualities(args.classify_quality),
            args.protocols.split(","), args.limit, args.bootstrap, args.skip)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.json").write_text(json.dumps(result, indent=2))
    (args.out / "eval.md").write_text(markdown(result))
    if result["restoration"]:
        plot(result, args.out / "psnr_vs_quality.png")
    print(markdown(result))
    print(f"written: {args.out}/eval.md, eval.json, psnr_vs_quality.png", flush=True)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("evaluate-restorer",
                              help="PSNR/SSIM/PSNR-B of a SwinIR restorer, and restore-then-classify accuracy")
    p.add_argument("--weights", type=Path, default=RELEASE_DIR / "swinir_compact_v2.pt",
                   help="SwinIR checkpoint (ours or an official one; default: the packaged compact restorer)")
    p.add_argument("--testsets-dir", type=Path, default=TESTSETS_DIR)
    p.add_argument("--testsets", default="LIVE1_color,classic5", help="comma-separated; '' skips restoration")
    p.add_argument("--quality", default="10,20,30,40")
    p.add_argument("--classify", action="store_true", help="also restore-then-classify on ImageNet samples")
    p.add_argument("--afd-release", type=Path, default=RELEASE_DIR / "afd_v1.json",
                   help="the AFD module to compare with (its record names the validation images)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--classify-quality", default="original,5,10,20,40")
    p.add_argument("--protocols", default="P1,P2")
    p.add_argument("--limit", type=int, default=0, help="only the first N validation images")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N validation images (before --limit)")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--tile-overlap", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=CPU_PRECISIONS, default="float32",
                   help="the restorer's arithmetic (a served archive's --cpu-precision)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for eval.md/json and the plot (default: results/restorer-eval/WEIGHTS' stem)")
    p.set_defaults(func=cmd_evaluate_restorer)
