"""How much of the JPEG accuracy loss a trained AFD module wins back, and what it costs.

For each run (a folder written by ``afdserve train``): the plain backbone and backbone + AFD (both
in deployment form, the backbone the run's record names) classify the run's validation images,
which training never saw, clean and at each JPEG quality under two protocols:
  P1  ImageNet-C style: resize shorter side to 256, centre crop 224 (the backbone's sizes), then JPEG;
  P2  JPEG the full image, then the serving preprocessing.
Per quality: top-1/top-5 of both, and the share of the clean->JPEG top-1 drop the module wins
back, with a paired bootstrap 95% interval (the same resampled images for both models).
"""

import hashlib
import io
import json
import math
import statistics
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from afdserve.data.folders import LabelledImage, load_labelled_folder
from afdserve.data.jpeg import encode_jpeg, jpeg_bytes, parse_qualities
from afdserve.evaluation.run_comparison import (bits_hits, compare_to_reference, comparison_markdown,
                                                comparison_plot, hit_bits)
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import collate, prepare
from afdserve.models.afd import AFDConfig
from afdserve.models.backbones import LITE0, BackboneSpec
from afdserve.models.classifier import Classifier, build_classifier, fuse_for_deployment

PROTOCOLS = {
    "P1": "resize shorter side to 256, centre crop 224 (the backbone's sizes), then JPEG (ImageNet-C style)",
    "P2": "JPEG the full image, then the serving preprocessing",
}
DEFAULT_QUALITIES = "original,5,7,10,15,18,20,25,30,40,50"


@dataclass
class AFDRun:
    name: str
    folder: Path
    config: AFDConfig
    weights: Path
    record: dict
    val_files: list[str]
    backbone: BackboneSpec = LITE0  # records from before backbones were recorded: Lite0


def _backbone(record: dict) -> BackboneSpec:
    return BackboneSpec.from_dict(record["backbone"]) if record.get("backbone") else LITE0


def load_run(folder: Path) -> AFDRun:
    """A training run's folder, or a release's record (``afdserve/weights/afd_v1.json``, its
    weights beside it with the same stem)."""
    folder = Path(folder)
    if folder.suffix == ".json":
        record = json.loads(folder.read_text())
        return AFDRun(folder.stem, folder.parent, AFDConfig.from_record(record), folder.with_suffix(".pt"),
                      record, list(record["split"]["val"]), _backbone(record))
    record = json.loads((folder / "afd_module.json").read_text())
    split = json.loads((folder / "split.json").read_text()) if (folder / "split.json").exists() else record["split"]
    return AFDRun(folder.name, folder, AFDConfig.from_record(record), folder / record.get("weights", "afd_module.pt"),
                  record, list(split["val"]), _backbone(record))


def deployed_pair(run: AFDRun) -> tuple[Classifier, Classifier]:
    """(plain backbone, backbone + the run's AFD module), both fused as they are served."""
    plain = fuse_for_deployment(build_classifier(None, backbone=run.backbone))
    afd = build_classifier(run.config, backbone=run.backbone)
    afd.afd.load_state_dict(torch.load(run.weights, map_location="cpu", weights_only=True))
    return plain, fuse_for_deployment(afd)


def centre_crop(image: Image.Image, spec: BackboneSpec = LITE0) -> Image.Image:
    """The backbone's resize and centre crop (Lite0: shorter side 256, centre 224), made the
    textbook way, resized whole then cropped, as P1's published numbers were."""
    w, h = image.size
    scale = spec.resize_shorter / min(w, h)
    resized = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    size = spec.input_size
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def protocol_bytes(path: Path, protocol: str, quality: int | None, spec: BackboneSpec = LITE0) -> bytes:
    """The request body a user would send under ``protocol``; quality None is the clean input."""
    if protocol == "P2":
        return jpeg_bytes(path, quality)
    crop = centre_crop(decode_image(path.read_bytes()).image, spec)
    if quality is not None:
        return encode_jpeg(crop, quality)
    out = io.BytesIO()
    crop.save(out, format="PNG")  # lossless: the clean reference
    return out.getvalue()


@torch.inference_mode()
def score(models: dict[str, Classifier], images: list[LabelledImage], protocol: str,
          quality: int | None, dct_source: str, batch_size: int = 16) -> dict[str, dict[str, np.ndarray]]:
    """Per-image top-1 and top-5 correctness of each model on the same prepared inputs (the
    models share a backbone: its spec prepares them)."""
    spec = next(iter(models.values())).spec
    hits = {name: {"top1": [], "top5": []} for name in models}
    label = "clean" if quality is None else f"q{quality}"
    for start in tqdm(range(0, len(images), batch_size), desc=f"{protocol} {label}", unit="batch", leave=False):
        chunk = images[start:start + batch_size]
        inputs = [prepare(decode_image(protocol_bytes(i.path, protocol, quality, spec)), dct_source=dct_source,
                          spec=spec) for i in chunk]
        batch = collate(inputs)
        labels = torch.tensor([i.label for i in chunk])
        for name, model in models.items():
            top5 = model(**batch).topk(5).indices
            hits[name]["top1"].append((top5[:, 0] == labels).numpy())
            hits[name]["top5"].append((top5 == labels[:, None]).any(1).numpy())
    return {name: {k: np.concatenate(v) for k, v in h.items()} for name, h in hits.items()}


def bootstrap_share(plain_clean, plain_q, afd_q, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """Share of the clean->JPEG top-1 drop that AFD wins back, and its paired 95% interval."""
    drop = plain_clean.mean() - plain_q.mean()
    point = (afd_q.mean() - plain_q.mean()) / drop if drop > 0 else math.nan
    idx = np.random.default_rng(seed).integers(0, len(plain_q), (resamples, len(plain_q)))
    drops = plain_clean[idx].mean(1) - plain_q[idx].mean(1)
    gains = afd_q[idx].mean(1) - plain_q[idx].mean(1)
    shares = np.where(drops > 0, gains / np.where(drops > 0, drops, 1), np.nan)
    if np.isnan(shares).all():
        return point, math.nan, math.nan
    lo, hi = np.nanpercentile(shares, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def forward_macs(model: Classifier, batch: dict) -> int:
    with FlopCounterMode(display=False) as counter:
        model(**batch)
    return counter.get_total_flops() // 2  # multiply-adds: one FLOP pair each


@torch.inference_mode()
def module_cost(plain: Classifier, afd: Classifier, sample: dict, repeats: int = 20) -> dict:
    """Parameters and multiply-adds of the module next to the backbone's, and the measured
    per-image latency of both (same batch, interleaved in the same run, median of ``repeats``)."""
    one = {k: v[:1] for k, v in sample.items()}
    backbone_macs, afd_macs = forward_macs(plain, one), forward_macs(afd, one)
    times = {"plain": [], "afd": []}
    for _ in range(3):
        plain(**sample), afd(**sample)
    for _ in range(repeats):
        for name, model in (("plain", plain), ("afd", afd)):
            t0 = time.perf_counter()
            model(**sample)
            times[name].append(1000 * (time.perf_counter() - t0) / len(sample["image"]))
    plain_ms, afd_ms = statistics.median(times["plain"]), statistics.median(times["afd"])
    return {
        "backbone_parameters": sum(p.numel() for p in plain.parameters()),
        "module_parameters": sum(p.numel() for p in afd.afd.parameters()),
        "backbone_macs": backbone_macs,
        "module_macs": afd_macs - backbone_macs,
        "batch_size": len(sample["image"]),
        "threads": torch.get_num_threads(),
        "plain_ms_per_image": plain_ms,
        "afd_ms_per_image": afd_ms,
        "latency_overhead": afd_ms / plain_ms - 1,
    }


def files_digest(images: list[LabelledImage]) -> str:
    """Names the photos a result was computed on, so a resumed evaluation can check it has the same."""
    return hashlib.sha256("\n".join(sorted(i.path.name for i in images)).encode()).hexdigest()


def earlier_rows(path: Path, run: AFDRun, images: list[LabelledImage]) -> dict | None:
    """The result at ``path`` when it is of this run on these photos (resumable), else None."""
    if not path.exists():
        return None
    earlier = json.loads(path.read_text())
    same_photos = earlier.get("files_sha256", files_digest(images)) == files_digest(images)
    if earlier.get("run") != run.name or not earlier["rows"] or earlier["rows"][0]["images"] != len(images) \
            or not same_photos:
        raise SystemExit(f"--resume: {path} is not run {run.name} on these {len(images)} photos; "
                         "give another --out")
    return earlier


def plain_key(spec: BackboneSpec, protocol: str, quality: int | None, images: list[LabelledImage]) -> str:
    """Names one condition of the plain backbone: its answers depend on nothing else (not on the
    module, nor on where the module's DCT comes from)."""
    condition = [spec.to_dict(), protocol, quality, [i.path.name for i in images]]
    return hashlib.sha256(json.dumps(condition, sort_keys=True).encode()).hexdigest()


def load_plain_hits(path: Path) -> dict:
    """The plain backbone's per-photo answers an earlier evaluation kept in ``path``."""
    if not path.exists():
        return {}
    return {key: {k: np.array(bits_hits(bits), dtype=bool) for k, bits in hits.items()}
            for key, hits in json.loads(path.read_text()).items()}


def save_plain_hits(path: Path, plain_hits: dict) -> None:
    path.write_text(json.dumps({key: {k: hit_bits(v) for k, v in hits.items()} for key, hits in plain_hits.items()}))


def evaluate_run(run: AFDRun, images: list[LabelledImage], qualities, protocols, resamples: int,
                 plain_hits: dict | None = None, earlier: dict | None = None) -> dict:
    """``plain_hits``: the plain backbone's answers by ``plain_key``, kept across runs evaluated on
    the same images, so a run costs only its own module's forwards; new answers are added to it.
    ``earlier``: a result of the same run on the same photos; its rows are kept and only the
    conditions it lacks are evaluated (the share won back pairs each photo's clean and JPEG
    answers: the plain backbone's clean answers come from ``plain_hits`` or are scored again)."""
    kept = {(r["protocol"], r["quality"]): r for r in (earlier or {}).get("rows", [])}
    plain, afd = deployed_pair(run)
    models = {"plain": plain, "afd": afd}
    plain_hits = {} if plain_hits is None else plain_hits

    def scored(protocol, quality, with_afd=True):
        key = plain_key(run.backbone, protocol, quality, images)
        hits = {"plain": plain_hits[key]} if key in plain_hits else {}
        todo = {name: model for name, model in models.items() if name not in hits and (with_afd or name == "plain")}
        if todo:
            hits.update(score(todo, images, protocol, quality, run.config.dct_source))
        plain_hits[key] = hits["plain"]
        return hits

    rows = list(kept.values())
    protocols = list(dict.fromkeys([*(r["protocol"] for r in rows), *protocols]))
    for protocol in protocols:
        wanted = [q for q in qualities if (protocol, "clean" if q is None else q) not in kept]
        clean = scored(protocol, None, with_afd=None in wanted) if wanted else None
        for quality in wanted:
            hits = clean if quality is None else scored(protocol, quality)
            row = {"protocol": protocol, "quality": "clean" if quality is None else quality, "images": len(images)}
            for name in models:
                row[f"{name}_top1"] = float(hits[name]["top1"].mean())
                row[f"{name}_top5"] = float(hits[name]["top5"].mean())
            # Each photo's hit, so runs evaluated apart can later be compared photo by photo.
            row["top1_hits"] = {name: hit_bits(hits[name]["top1"]) for name in models}
            if quality is not None:
                share, lo, hi = bootstrap_share(clean["plain"]["top1"], hits["plain"]["top1"],
                                                hits["afd"]["top1"], resamples)
                row.update(drop=float(clean["plain"]["top1"].mean()) - row["plain_top1"],
                           recovered_share=share, recovered_ci95=[lo, hi])
            rows.append(row)
    rows.sort(key=lambda r: (protocols.index(r["protocol"]), -1 if r["quality"] == "clean" else r["quality"]))
    if earlier is not None:  # the cost as first measured: a resumed run adds rows, not timings
        cost = earlier["cost"]
    else:
        sample_inputs = [prepare(decode_image(jpeg_bytes(i.path, 10)), dct_source=run.config.dct_source,
                                 spec=run.backbone) for i in images[:8]]
        cost = module_cost(plain, afd, collate(sample_inputs))
    return {"run": run.name, "backbone": run.backbone.name, "config": run.config.to_dict(),
            "protocols": {p: PROTOCOLS[p] for p in protocols}, "files_sha256": files_digest(images),
            "rows": rows, "cost": cost,
            "training": {k: run.record.get(k) for k in ("steps", "steps_planned", "completed", "images_seen",
                                                         "wall_time_s", "device", "threads")}}


def pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def markdown_table(result: dict) -> str:
    backbone = result.get("backbone", LITE0.name)
    title = result["run"] if backbone == LITE0.name else f"{result['run']} ({backbone})"
    training = result.get("training", {})
    if training.get("completed") is False:  # a run stopped early by --max-minutes: not its final weights
        title += f" (stopped at step {training['steps']} of {training['steps_planned']})"
    lines = [f"### {title}", "",
             "| protocol | quality | plain top-1 | AFD top-1 | plain top-5 | AFD top-5 | drop won back (95% CI) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        won = ""
        if "recovered_share" in r:
            lo, hi = r["recovered_ci95"]
            won = f"{pct(r['recovered_share'])}% ({pct(lo)} to {pct(hi)})"
        lines.append(f"| {r['protocol']} | {r['quality']} | {pct(r['plain_top1'])} | {pct(r['afd_top1'])} "
                     f"| {pct(r['plain_top5'])} | {pct(r['afd_top5'])} | {won} |")
    c = result["cost"]
    lines += ["", f"Cost: module {c['module_parameters']:,} parameters and {c['module_macs'] / 1e6:.1f}M "
              f"multiply-adds per image, next to the backbone's {c['backbone_parameters']:,} and "
              f"{c['backbone_macs'] / 1e6:.1f}M; latency {c['plain_ms_per_image']:.1f} -> "
              f"{c['afd_ms_per_image']:.1f} ms per image (+{100 * c['latency_overhead']:.0f}%, batch "
              f"{c['batch_size']}, {c['threads']} threads, model only, in-process)."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(result["protocols"])
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4.2), sharey=True, squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        rows = [r for r in result["rows"] if r["protocol"] == protocol]
        jpeg = [r for r in rows if r["quality"] != "clean"]
        clean = next((r for r in rows if r["quality"] == "clean"), None)
        q = [r["quality"] for r in jpeg]
        backbone = result.get("backbone", LITE0.name)
        for name, label, colour in (("plain", backbone, "tab:gray"), ("afd", f"{backbone} + AFD", "tab:blue")):
            ax.plot(q, [100 * r[f"{name}_top1"] for r in jpeg], "o-", color=colour, label=label)
            if clean:
                ax.axhline(100 * clean[f"{name}_top1"], color=colour, ls="--", lw=1,
                           label=f"{label}, clean")
        ax.set_title(textwrap.fill(f"{protocol}: {result['protocols'][protocol]}", 70), fontsize=9)
        ax.set_xlabel("JPEG quality")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"top-1 (%), {result['rows'][0]['images']} validation images")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"AFD run {result['run']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluation_images(run: AFDRun, all_images: dict, data: Path) -> list:
    """The run's validation photos where ``data`` is its validation folder; otherwise every photo
    of ``data`` (a set the run never saw, such as imagenet-val-1000), once it is checked that
    none of them is among the run's training files."""
    images = [all_images[name] for name in run.val_files if name in all_images]
    if images:
        return images
    split_file = run.folder / "split.json"
    trained_on = set(json.loads(split_file.read_text())["train"]) if split_file.exists() else set()
    trained_on |= set(run.record.get("split", {}).get("train", []))
    seen = sorted(trained_on & set(all_images))
    if seen:
        raise SystemExit(f"{data} holds {len(seen)} of run {run.name}'s training photos ({seen[0]}, ...)")
    return list(all_images.values())


def cmd_evaluate_runs(args) -> int:
    all_images = {i.path.name: i for i in load_labelled_folder(args.data)}
    qualities = parse_qualities(args.quality or DEFAULT_QUALITIES)
    protocols = args.protocols.split(",")
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise SystemExit(f"unknown protocol(s) {sorted(unknown)}; known: {list(PROTOCOLS)}")
    # The plain backbone's answers, kept beside the results so that a resumed evaluation (one more
    # ablation run, one more quality) scores only what is new.
    plain_cache = (args.out or Path("results")) / "plain_hits.json"
    results, plain_hits = [], load_plain_hits(plain_cache) if args.resume else {}
    # A folder named twice counts once, in its first place: `--run runs/ref runs/*` puts ref first.
    for folder in dict.fromkeys(Path(f) for f in args.run):
        run = load_run(folder)
        images = evaluation_images(run, all_images, args.data)
        if args.limit:
            images = images[: args.limit]
        out = args.out / run.name if args.out and len(args.run) > 1 else (args.out or Path("results") / run.name)
        out.mkdir(parents=True, exist_ok=True)
        earlier = earlier_rows(out / "eval.json", run, images) if args.resume else None
        result = evaluate_run(run, images, qualities, protocols, args.bootstrap, plain_hits, earlier)
        if plain_hits:
            save_plain_hits(plain_cache, plain_hits)
        (out / "eval.json").write_text(json.dumps(result, indent=2))
        (out / "eval.md").write_text(markdown_table(result))
        plot(result, out / "accuracy_vs_quality.png")
        print(markdown_table(result), flush=True)
        print(f"written: {out}/eval.md, eval.json, accuracy_vs_quality.png", flush=True)
        results.append(result)
    if len({r["files_sha256"] for r in results}) > 1:
        print("not compared photo by photo: the runs were evaluated on different photos", flush=True)
    elif len(results) > 1:  # an ablation: every run against the first, photo by photo
        comparison = compare_to_reference(results)
        out = args.out or Path("results")
        (out / "comparison.json").write_text(json.dumps(comparison, indent=2))
        if comparison["rows"]:
            (out / "comparison.md").write_text(comparison_markdown(comparison))
            comparison_plot(comparison, out / "comparison.png")
            print(comparison_markdown(comparison), flush=True)
            print(f"written: {out}/comparison.md, comparison.json, comparison.png", flush=True)
    return 0
