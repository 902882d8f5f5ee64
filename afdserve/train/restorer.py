"""``afdserve train-restorer``: a compact SwinIR that removes JPEG artefacts, trained from clean
images on the fly.

Each sample is a patch of one clean image of the training split (the AFD module's split, so the
classifier's validation images stay unseen by every model we evaluate on them): downscaled by a
random factor (the ImageNet files carry their own mild JPEG artefacts; downscaling hides most of
them and varies the content's scale), randomly cropped, flipped and rotated, then JPEG-compressed
by Pillow at a quality drawn from ``--quality-range`` and decoded by the serving decoder. The
restorer is blind: it sees only the decoded pixels. Loss: Charbonnier between the restored and
the clean patch (SwinIR's choice for JPEG artefact removal: an L1 that is smooth at zero).

With ``--task-loss kl`` or ``kl+ce`` the samples are 224x224 crops as the classifier sees them
and a task term through the frozen EfficientNet-Lite0 joins the loss (``task_restorer``); the
normal use fine-tunes a trained restorer (``--init-weights``).

Writes into ``runs/restorer-<name>``: ``restorer.pt`` (state dict in the official SwinIR layout),
``restorer.json`` (config, recipe, result), ``restorer.md``, ``train_log.jsonl`` and
``checkpoint.pt`` for ``--resume``.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from afdserve.data.jpeg import jpeg_roundtrip
from afdserve.data.splits import SPLIT_RULE, training_set
from afdserve.imaging.decode import decode_image
from afdserve.models.swinir import SwinIR, SwinIRConfig, count_macs, load_swinir_checkpoint
from afdserve.evaluation.restoration_metrics import psnr
from afdserve.serving.restoration import TileSpec, restore
from afdserve.train import loop
from afdserve.train.task_restorer import (ARGS_BEFORE_TASK_LOSS, TaskRecipe, TaskSampler, add_task_arguments,
                                          frozen_classifier, labelled_images, task_loss_of, task_terms,
                                          unit_tensor, validate_task)

WEIGHTS = "restorer.pt"
RECORD = "restorer.json"
SUMMARY = "restorer.md"


# ----------------------------------------------------------------------------- the compact model


def compact_config(args) -> SwinIRConfig:
    """The compact restorer. Window 8 (SwinIR-M uses 7): with the image starting on the JPEG
    grid, every attention window is exactly one or more whole 8x8 blocks. img_range 255 as the
    official models: a bare state dict cannot tell it, so loaders assume it."""
    return SwinIRConfig(in_chans=3, embed_dim=args.embed_dim, depths=list(args.depths),
                        num_heads=list(args.heads), window_size=args.window, mlp_ratio=args.mlp_ratio,
                        img_size=args.patch, img_range=255.0, resi_connection="1conv", upsampler="",
                        drop_path_rate=0.0)  # a small model trained briefly: no stochastic depth


# ----------------------------------------------------------------------------- training pairs


@dataclass(frozen=True)
class PatchRecipe:
    patch: int = 64
    quality_range: tuple[int, int] = (10, 40)
    scale_range: tuple[float, float] = (0.5, 1.0)


def make_patch_pair(clean: Image.Image, rng: np.random.Generator, recipe: PatchRecipe):
    """(JPEG-decoded patch, clean patch, quality): two 3 x P x P float tensors in [0, 1]."""
    p = recipe.patch
    smallest = max(p / clean.width, p / clean.height)  # never below one patch (upscales tiny images)
    scale = max(smallest, rng.uniform(*recipe.scale_range))
    if scale != 1.0:
        size = (max(p, round(clean.width * scale)), max(p, round(clean.height * scale)))
        clean = clean.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    left = int(rng.integers(0, clean.width - p + 1))
    top = int(rng.integers(0, clean.height - p + 1))
    patch = np.asarray(clean.crop((left, top, left + p, top + p)))
    patch = np.rot90(patch, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = np.ascontiguousarray(patch)
    quality = int(rng.integers(recipe.quality_range[0], recipe.quality_range[1] + 1))
    _, decoded = jpeg_roundtrip(patch, quality)  # decoded by the serving decoder

    return unit_tensor(decoded), unit_tensor(patch), quality


class PatchSampler(loop.StepBatches):
    """Sample ``k`` is a pure function of (seed, k), so --resume sees the same stream, and so does
    a run whose batches come from several loader workers (item ``step`` is that step's batch)."""

    def __init__(self, images: list[Image.Image], recipe: PatchRecipe, seed: int, batch_size: int = 8,
                 steps: int = 0):
        super().__init__(batch_size, steps)
        self.images, self.recipe, self.seed = images, recipe, seed

    def batch(self, step: int, size: int):
        pairs = []
        for k in range(step * size, (step + 1) * size):
            rng = np.random.default_rng([self.seed, 1, k])
            pairs.append(make_patch_pair(self.images[loop.image_index(self.seed, k, len(self.images))], rng,
                                         self.recipe))
        jpeg, clean, quality = zip(*pairs)
        return torch.stack(jpeg), torch.stack(clean), list(quality)


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(model: SwinIR, images: list[Image.Image], qualities: list[int], device) -> list[dict]:
    """Mean PSNR (RGB) of the JPEG input and of the restored image on held-out images (a centre
    crop of 256x256 each, so the check is quick), per quality."""
    model.eval()
    rows = []
    for quality in qualities:
        before, after = [], []
        for im in images:
            w, h = im.size
            side = min(256, w, h) // 8 * 8
            left, top = (w - side) // 2 // 8 * 8, (h - side) // 2 // 8 * 8
            clean = np.asarray(im.crop((left, top, left + side, top + side)))
            _, jpeg = jpeg_roundtrip(clean, quality)
            restored = restore(model, jpeg, TileSpec(), device)
            before.append(psnr(jpeg, clean))
            after.append(psnr(restored, clean))
        rows.append({"quality": quality, "images": len(images), "psnr_jpeg": float(np.mean(before)),
                     "psnr_restored": float(np.mean(after)),
                     "gain_db": float(np.mean(after) - np.mean(before))})
    model.train()
    return rows


# ----------------------------------------------------------------------------- the run


def _load_images(items) -> list[Image.Image]:
    return [decode_image(i.path.read_bytes()).image for i in items]


def run(args) -> tuple[dict | None, str | None]:
    """Train (or resume) per ``args``: (the record, or None when paused or interrupted; why it
    stopped early, if it did)."""
    with loop.torch_threads(args.threads) as threads, loop.run_folder(args, Path(args.out)) as out_dir:
        return _run(args, out_dir, loop.pick_device(args.device), threads)


def _run(args, out_dir: Path, device: torch.device, threads: int) -> tuple[dict | None, str | None]:
    torch.manual_seed(args.seed)

    train_items, val_items, sources = training_set(args.data, args.val_fraction, args.val)
    task = task_loss_of(args)
    if task.kind == "kl+ce" and all(i.label is None for i in train_items):
        raise SystemExit("--task-loss kl+ce needs a labelled training folder (labels.csv); kl needs none")
    classifier = frozen_classifier(device) if task.enabled else None
    if task.enabled:
        recipe = TaskRecipe(quality_range=tuple(args.quality_range), high_quality_share=args.high_quality_share,
                            high_quality_range=tuple(args.high_quality_range))
        sampler = TaskSampler(*labelled_images(train_items), recipe, args.seed, args.batch_size, args.steps)
    else:
        recipe = PatchRecipe(patch=args.patch, quality_range=tuple(args.quality_range),
                             scale_range=tuple(args.scale_range))
        sampler = PatchSampler(_load_images(train_items), recipe, args.seed, args.batch_size, args.steps)

    config = compact_config(args)
    model = SwinIR(config).to(device)
    if args.init_weights is not None:
        # Fine-tuning: start from a trained restorer of the same architecture.
        model.load_state_dict(load_swinir_checkpoint(args.init_weights, config).state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: loop.lr_factor(s, args.steps, args.warmup))

    def batches(start: int, stop: int):
        # Making a patch (resize, crop, JPEG round trip) costs about what a CPU step of the model
        # does; on a GPU it is the whole cost, so --workers make them in parallel.
        loader = torch.utils.data.DataLoader(
            sampler, batch_size=None, sampler=range(start, stop), num_workers=args.workers,
            pin_memory=device.type == "cuda", prefetch_factor=4 if args.workers else None)
        for jpeg, clean, _, *labels in loader:  # task samples carry labels
            yield [t.to(device, non_blocking=True) for t in (jpeg, clean, *labels)]

    def losses(batch):
        jpeg, clean, *labels = batch
        restored = model(jpeg)
        pixel = charbonnier(restored, clean)
        if not task.enabled:
            return {"loss": pixel}
        terms = task_terms(classifier, restored, clean, labels[0], task)
        return {"loss": pixel + task.weight * terms["task"], "pixel": pixel, **terms}

    model.train()
    outcome = loop.train(loop.Run(args, out_dir, {"model": model}, optimizer, scheduler, losses, batches,
                                  list(model.parameters()), clip=1.0, unit="patch", rate_key="patches_per_s",
                                  resumable={"val_images", "workers"}, added_args=ARGS_BEFORE_TASK_LOSS))
    step, stopped = outcome.step, outcome.stopped
    if outcome.to_be_continued:  # continue with --resume
        return None, stopped

    weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(weights, out_dir / WEIGHTS)
    val_images = _load_images(val_items[:args.val_images])
    validation = validate(model, val_images, [10, 40], device) if val_images else []
    validation_task = []
    if task.enabled and val_images:
        validation_task = validate_task(model, classifier, val_images, [i.label for i in val_items[:args.val_images]],
                                        [None, 10, 40], device)
    macs = count_macs(model, 256, 256) / (256 * 256)
    record = {
        "swinir_config": config.to_record(),
        "weights": WEIGHTS,
        "weights_sha256": hashlib.sha256((out_dir / WEIGHTS).read_bytes()).hexdigest(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_per_pixel": round(macs),
        "recipe": {**(recipe.to_record() if task.enabled else asdict(recipe)),
                   "loss": "charbonnier + task_weight * task" if task.enabled else "charbonnier",
                   "encoder": f"Pillow {Image.__version__}"},
        "task_loss": task.to_record() if task.enabled else None,
        "init_weights": None if args.init_weights is None else {
            "path": str(args.init_weights), "sha256": hashlib.sha256(Path(args.init_weights).read_bytes()).hexdigest()},
        "completed": outcome.completed, "stopped": stopped, "steps": step, "steps_planned": args.steps,
        "patches_seen": step * args.batch_size,
        "wall_time_s": round(outcome.elapsed_s, 1),
        "sittings": outcome.sittings,
        "final_loss_last_50_steps": outcome.mean_recent().get("loss"),
        "validation": validation,
        "validation_task": validation_task,
        "data": sources,
        "split": {"val_fraction": args.val_fraction, "train_images": len(train_items),
                  "val_images": len(val_items), "rule": SPLIT_RULE},
        **loop.provenance(args, device, threads),
    }
    loop.write_record(out_dir, record, RECORD, summary_markdown(record), SUMMARY)
    for row in validation:
        print(f"q={row['quality']}: PSNR {row['psnr_jpeg']:.2f} (JPEG) -> {row['psnr_restored']:.2f} dB "
              f"({row['gain_db']:+.2f})", flush=True)
    for row in validation_task:
        print(f"{row['quality']}: top-1 {row['top1_jpeg']:.3f} (JPEG) -> {row['top1_restored']:.3f} (restored); "
              f"KL to clean {row['kl_to_clean_jpeg']:.3f} -> {row['kl_to_clean_restored']:.3f}", flush=True)
    print(f"wrote {out_dir / WEIGHTS} and {RECORD}", flush=True)
    return record, stopped


def summary_markdown(record: dict) -> str:
    c, r, task = record["swinir_config"], record["recipe"], record.get("task_loss")
    a = record["args"]
    quality = f"JPEG quality {r['quality_range'][0]}-{r['quality_range'][1]} (blind)"
    if r.get("high_quality_share"):
        quality += f", {r['high_quality_share']:.0%} at {r['high_quality_range'][0]}-{r['high_quality_range'][1]}"
    if task:
        samples = (f"{a['batch_size']} crops of {r['size']}x{r['size']} (shorter side 256, random crop, flip), "
                   f"{quality}; loss Charbonnier + {task['weight']} x task, task `{task['kind']}`: KL to the "
                   f"frozen Lite0's answer on the clean crop (T={task['temperature']})"
                   + (f" + {task['ce_weight']} x cross-entropy to the label" if task["kind"] == "kl+ce" else ""))
    else:
        samples = (f"{a['batch_size']} patches of {r['patch']}x{r['patch']}, {quality}, downscale "
                   f"{r['scale_range'][0]}-{r['scale_range'][1]}, Charbonnier loss")
    init = record.get("init_weights")
    lines = [
        f"# Compact SwinIR restorer: {Path(a['out']).name}",
        "",
        f"- SwinIR embed_dim {c['embed_dim']}, depths {c['depths']}, heads {c['num_heads']}, window "
        f"{c['window_size']}, mlp_ratio {c['mlp_ratio']}: {record['parameters']:,} parameters, "
        f"{record['macs_per_pixel']:,} multiply-adds per pixel",
        f"- {record['steps']}/{record['steps_planned']} steps of {samples}, Adam lr {a['lr']} cosine"
        + (f", from `{init['path']}` (sha256 {init['sha256'][:12]})" if init else ""),
        f"- {record['wall_time_s'] / 60:.1f} min on {record['device']} ({record['threads']} threads); "
        f"{record['split']['train_images']} training images; seed {record['seed']}",
    ]
    if record["validation"]:
        lines += ["", "Quick check on validation images (256x256 centre crops, RGB PSNR):", "",
                  "| quality | JPEG | restored | gain |", "| --- | --- | --- | --- |"]
        lines += [f"| {v['quality']} | {v['psnr_jpeg']:.2f} | {v['psnr_restored']:.2f} | {v['gain_db']:+.2f} |"
                  for v in record["validation"]]
    if record.get("validation_task"):
        lines += ["", "Frozen Lite0 on validation images (224x224 centre crops, JPEG at that size), top-1 and "
                  "KL to its answer on the clean crop:", "",
                  "| quality | images | top-1 JPEG | top-1 restored | KL JPEG | KL restored |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {v['quality']} | {v['images']} | {v['top1_jpeg']:.3f} | {v['top1_restored']:.3f} "
                  f"| {v['kl_to_clean_jpeg']:.3f} | {v['kl_to_clean_restored']:.3f} |"
                  for v in record["validation_task"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    loop.add_data_arguments(g, several=True)
    g.add_argument("--quality-range", type=int, nargs=2, default=[10, 40], metavar=("MIN", "MAX"))
    g.add_argument("--scale-range", type=float, nargs=2, default=[0.5, 1.0], metavar=("MIN", "MAX"),
                   help="random downscale of the clean image before cropping patches (default 0.5 1.0; "
                        "task samples are the classifier's crops instead)")
    g.add_argument("--patch", type=int, default=64,
                   help="patch side, a multiple of --window (default 64); also the model's img_size, the "
                        "size of its stored shift mask, so keep --init-weights' value (task samples are "
                        "224x224 whatever it is)")
    g = p.add_argument_group("model")
    g.add_argument("--embed-dim", type=int, default=48)
    # Two RSTBs of three Swin layers: 0.72 s per step of 8 patches on 2 CPU cores, against 1.9 s
    # for three of four, so the default run fits in under an hour.
    g.add_argument("--depths", type=int, nargs="+", default=[3, 3])
    g.add_argument("--heads", type=int, nargs="+", default=[4, 4])
    g.add_argument("--window", type=int, default=8)
    g.add_argument("--mlp-ratio", type=float, default=2.0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=4000)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--lr", type=float, default=5e-4)
    g.add_argument("--warmup", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--init-weights", type=Path, default=None,
                   help="start from these SwinIR weights (same architecture) instead of a fresh model, e.g. "
                        "afdserve/weights/swinir_compact_v1.pt to fine-tune it with --task-loss")
    add_task_arguments(p.add_argument_group("task loss (through the frozen classifier)"))
    g = p.add_argument_group("run")
    g.add_argument("--name", default="compact")
    g.add_argument("--out", type=Path, default=None, help="run folder (default runs/restorer-<name>)")
    loop.add_run_control_arguments(g)
    g.add_argument("--val-images", type=int, default=40, help="validation images for the final check")
    g.add_argument("--workers", type=int, default=0,
                   help="processes making training patches (default 0: in the training process)")
    g.add_argument("--no-progress", action="store_true")


def cmd_train_restorer(args) -> int:
    if args.patch % args.window:
        raise SystemExit("--patch must be a multiple of --window")
    if args.out is None:
        args.out = Path("runs") / f"restorer-{args.name}"
    _, stopped = run(args)
    return 130 if stopped == "interrupted" else 0  # as afdserve train


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("train-restorer", help="train a compact SwinIR JPEG artefact restorer")
    add_arguments(p)
    p.set_defaults(func=cmd_train_restorer)
