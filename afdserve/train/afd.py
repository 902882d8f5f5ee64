"""Training the AFD module on the fly from clean images: the backbone stays frozen and is its own
teacher, so no labels are needed.

Each training sample is a pair made from one clean image of the training split: a random crop
(random area and aspect) and flip, resized so its shorter side is random in [224, 448] (or, for a
share of pairs, straight to a 224x224 crop; for other backbones their input size S and [S, 2S]),
then

* student: JPEG-compressed with Pillow at a random quality, then ``prepare(decode_image(...))``,
  exactly the serving path (the file's own 8x8 grid, the quality estimated from its tables);
* teacher: the same clean crop through ``image_tensor``, so both see the same geometry.

The loss pulls the student towards the teacher: ``kd`` (KL divergence of the output
distributions), ``feature`` (MSE of the features right after the AFD module against the clean
features there) or ``both``.

The backbone is EfficientNet-Lite0 unless ``--backbone`` names another (``efficientnet_lite2``, or
``timm:ARCH`` with ``--backbone-weights FILE`` for a user's own timm CNN); its spec
(``afdserve.models.backbones``) gives the input size, resize and normalisation every image is
prepared with, and is written into the run's record for the archive builder.

``afdserve train --steps 1800`` (or ``python -m afdserve.train.afd``) writes into ``runs/afd-<name>``:
``afd_module.pt`` (the AFD state dict, unfused, plain tensors), ``afd_module.json`` (the recipe and
results), ``afd_module.md``, ``split.json``, ``train_log.jsonl`` and ``checkpoint.pt`` (for
``--resume``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from afdserve.data.folders import LabelledImage
from afdserve.data.jpeg import encode_jpeg, jpeg_bytes, parse_qualities
from afdserve.data.splits import SPLIT_RULE, training_set
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import collate, image_tensor, prepare
from afdserve.models.afd import DCT_SOURCES, AFDConfig, AFDModule
from afdserve.models.backbones import (DEFAULT_BACKBONE, LITE0, BackboneSpec, add_backbone_arguments,
                                       backbone_from_args, insertion_module)
from afdserve.models.classifier import Classifier, build_classifier
from afdserve.train import loop
from afdserve.util.files import atomic_write_text

LOSSES = ("kd", "feature", "both")
WEIGHTS = "afd_module.pt"
RECORD = "afd_module.json"
SUMMARY = "afd_module.md"
SPLIT = "split.json"



# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PairRecipe:
    """How a clean image becomes a (student, teacher) training pair."""

    quality_range: tuple[int, int] = (5, 50)
    quality_dist: str = "log-uniform"
    shorter_side: tuple[int, int] = (224, 448)  # Lite0's; the command line's default is [S, 2S]
    min_crop_area: float = 0.25
    dct_source: str = "file-grid"
    high_quality_share: float = 0.2
    high_quality_range: tuple[int, int] = (75, 95)
    # Share of pairs compressed as an exact input-sized crop (224x224), which serving takes as it is: the
    # ImageNet-C protocol (crop, then JPEG), where blocks are never rescaled before the model.
    input_sized_share: float = 0.0

    def draw_quality(self, rng: np.random.Generator) -> int:
        # Some nearly clean pairs teach the module to leave good images alone (the quality input
        # tells it which they are); drawn only when asked, so share 0 keeps the random streams.
        if self.high_quality_share > 0 and rng.random() < self.high_quality_share:
            return int(rng.integers(self.high_quality_range[0], self.high_quality_range[1] + 1))
        lo, hi = self.quality_range
        if self.quality_dist == "uniform":
            return int(rng.integers(lo, hi + 1))
        # Log-uniform: as many draws in 5-10 as in 25-50, where the drift is worst.
        return int(np.clip(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))), lo, hi))


def random_crop_box(width: int, height: int, rng: np.random.Generator, min_area: float):
    """A crop of random area (fraction of the image in [min_area, 1]) and aspect in [3/4, 4/3]."""
    for _ in range(10):
        area = width * height * rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if w <= width and h <= height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return (left, top, left + w, top + h)
    return (0.0, 0.0, float(width), float(height))


def make_pair(clean: Image.Image, rng: np.random.Generator, recipe: PairRecipe, spec: BackboneSpec = LITE0):
    """(student ModelInput from the JPEG, teacher image tensor of the clean crop, JPEG quality),
    both prepared for the backbone ``spec``."""
    box = random_crop_box(clean.width, clean.height, rng, recipe.min_crop_area)
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    if recipe.input_sized_share > 0 and rng.random() < recipe.input_sized_share:
        side = min(crop_w, crop_h)  # a square of the crop, straight to the model's input size
        box = (box[0], box[1], box[0] + side, box[1] + side)
        size = (spec.input_size, spec.input_size)
    else:
        shorter = int(rng.integers(recipe.shorter_side[0], recipe.shorter_side[1] + 1))
        scale = shorter / min(crop_w, crop_h)
        size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    crop = clean.resize(size, Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    quality = recipe.draw_quality(rng)
    # The serving path, byte for byte: decode, estimate quality from the tables, prepare.
    student = prepare(decode_image(encode_jpeg(crop, quality)), dct_source=recipe.dct_source, spec=spec)
    # Same size, no EXIF: image_tensor crops the clean image exactly as prepare cropped the JPEG.
    teacher = image_tensor(crop, spec)
    return student, teacher, quality


class CompressedPairs(Dataset):
    """Sample ``k`` of the run is a pure function of (seed, k): the image comes from a per-epoch
    permutation, the augmentation from its own random stream. So worker count, worker order and
    --resume never change what the model sees."""

    def __init__(self, images: list[LabelledImage], recipe: PairRecipe, seed: int, samples: int,
                 spec: BackboneSpec = LITE0):
        if not images:
            raise ValueError("no training images")
        self.paths = [i.path for i in images]
        self.recipe = recipe
        self.spec = spec
        self.seed = seed
        self.samples = samples

    def __len__(self) -> int:
        return self.samples

    def image_index(self, k: int) -> int:
        return loop.image_index(self.seed, k, len(self.paths))

    def __getitem__(self, k: int):
        path = self.paths[self.image_index(k)]
        clean = decode_image(path.read_bytes()).image
        return make_pair(clean, np.random.default_rng([self.seed, 1, k]), self.recipe, self.spec)


class _FromSample(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def collate_pairs(samples):
    students, teachers, qualities = zip(*samples)
    return {"student": collate(list(students)), "teacher": torch.stack(teachers),
            "jpeg_quality": torch.tensor(qualities, dtype=torch.float32)}


class _ValImages(Dataset):
    """Validation images, re-encoded at ``quality`` (None: the file as stored), through prepare."""

    def __init__(self, images: list[LabelledImage], quality: int | None, dct_source: str,
                 spec: BackboneSpec = LITE0):
        self.images, self.quality, self.dct_source, self.spec = images, quality, dct_source, spec

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        item = self.images[i]
        decoded = decode_image(jpeg_bytes(item.path, self.quality))
        return prepare(decoded, dct_source=self.dct_source, spec=self.spec), item.label


def _collate_val(samples):
    inputs, labels = zip(*samples)
    return collate(list(inputs)), torch.tensor(labels)


# ----------------------------------------------------------------------------- model and losses


def insertion_geometry(plain: Classifier, point: str) -> dict:
    """The layer the module follows, its channels and its stride (input size / feature size),
    found by running the backbone on one input of its size (stem: 32 channels at stride 2 for
    Lite0; blocks.0 16, blocks.1 24), so other backbones or points need no table."""
    module = insertion_module(plain.backbone, point)  # ValueError naming the candidates
    size = plain.spec.input_size
    with torch.no_grad():
        features = plain.features(torch.zeros(1, 3, size, size), stop_after=point)
    return {"insert_after": point, "module": module, "channels": features.shape[1],
            "stride": round(size / features.shape[-1], 2), "feature_size": list(features.shape[-2:])}


def insertion_channels(plain: Classifier, point: str) -> int:
    """Channels of the backbone's features at ``point``."""
    return insertion_geometry(plain, point)["channels"]


def forward_order(plain: Classifier, points: list[str]) -> list[str]:
    """``points`` in the order the backbone's forward pass reaches them."""
    order, handles = [], []
    backbone = plain.backbone
    for point in points:
        layer = backbone.get_submodule(insertion_module(backbone, point))
        handles.append(layer.register_forward_hook(lambda *_, p=point: order.append(p) if p not in order else None))
    size = plain.spec.input_size
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return order


def build_student_and_teacher(config_args, backbone: BackboneSpec = LITE0) -> tuple[Classifier, Classifier, AFDConfig]:
    """The student (backbone + AFD) and the teacher (the same backbone object, no AFD): one copy
    of the frozen weights in memory."""
    teacher = build_classifier(None, pretrained=True, backbone=backbone)
    config = AFDConfig(
        channels=insertion_channels(teacher, config_args.insert_after),
        width=config_args.width,
        gate=config_args.gate,
        use_quality=not config_args.no_quality,
        insert_after=config_args.insert_after,
        dct_source=config_args.dct_source,
        fe_downscale=config_args.fe_downscale,
    )
    student = Classifier(teacher.backbone, AFDModule(config), backbone)
    return student, teacher.eval(), config


def kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened distributions, times T^2 so gradients keep their
    scale whatever the temperature (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    log_target=True, reduction="batchmean") * (t * t)


@contextlib.contextmanager
def _capture_output(module: torch.nn.Module, into: dict):
    handle = module.register_forward_hook(lambda _m, _i, out: into.__setitem__("out", out))
    try:
        yield into
    finally:
        handle.remove()


def compute_losses(student: Classifier, teacher: Classifier, batch: dict, loss: str,
                   temperature: float, feature_weight: float, match_later: str | None = None) -> dict[str, torch.Tensor]:
    """``match_later``: also match the features at that later stage (``blocks.N``), where the
    drift the module left has spread through more of the network, with the same weight."""
    point = student.afd.config.insert_after
    inputs, clean = batch["student"], batch["teacher"]
    features = loss in ("feature", "both")
    later = match_later if features else None
    out = {}
    with torch.no_grad():
        teacher_logits = teacher(clean) if loss in ("kd", "both") else None
        teacher_features = teacher.features(clean, stop_after=point) if features else None
        teacher_later = teacher.features(clean, stop_after=later) if later else None
    later_stage = student.backbone.get_submodule(insertion_module(student.backbone, later)) if later else None
    with _capture_output(student.afd, {}) as captured, \
            (_capture_output(later_stage, {}) if later else contextlib.nullcontext({})) as captured_later:
        if loss == "feature":
            # Only the backbone up to the last matched stage runs: several times cheaper.
            student.features(**inputs, stop_after=later or point)
        else:
            out["kd"] = kd_loss(student(**inputs), teacher_logits, temperature)
    if features:
        out["feature"] = F.mse_loss(captured["out"], teacher_features)
    if later:
        out["feature_later"] = F.mse_loss(captured_later["out"], teacher_later)
    matched = out["feature"] + out.get("feature_later", 0.0) if features else None
    if loss == "kd":
        out["loss"] = out["kd"]
    elif loss == "feature":
        out["loss"] = matched
    else:
        out["loss"] = out["kd"] + feature_weight * matched
    return out


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(student: Classifier, teacher: Classifier, images: list[LabelledImage],
             qualities: list[int | None], dct_source: str, device: torch.device, batch_size: int = 32,
             workers: int = 0) -> list[dict]:
    """Top-1 of the plain backbone and of backbone + AFD on the same prepared inputs, per quality.

    Also the mean KL divergence from the plain backbone's prediction on the file as stored (the
    clean reference): a steadier figure than top-1 on a few hundred images.
    """
    student.eval()

    def logits_at(quality):
        loader = DataLoader(_ValImages(images, quality, dct_source, teacher.spec), batch_size=batch_size,
                            num_workers=workers, collate_fn=_collate_val)
        plain, afd, labels = [], [], []
        for inputs, y in loader:
            inputs = {k: v.to(device) for k, v in inputs.items()}
            plain.append(teacher(inputs["image"]).float().cpu())
            afd.append(student(**inputs).float().cpu())
            labels.append(y)
        return torch.cat(plain), torch.cat(afd), torch.cat(labels)

    reference = None
    by_quality = {}
    for quality in sorted(set(qualities), key=lambda q: q is not None):  # the stored files first
        by_quality[quality] = logits_at(quality)
        if quality is None:
            reference = by_quality[None][0]
    if reference is None:
        reference = logits_at(None)[0]
    ref_logp = F.log_softmax(reference, dim=1)

    results = []
    for quality in qualities:
        plain, afd, labels = by_quality[quality]
        row = {"quality": "original" if quality is None else quality, "images": len(labels)}
        for name, logits in (("plain", plain), ("afd", afd)):
            row[f"top1_{name}"] = (logits.argmax(1) == labels).float().mean().item()
            row[f"kl_to_clean_{name}"] = F.kl_div(F.log_softmax(logits, 1), ref_logp, log_target=True,
                                                  reduction="batchmean").item()
            row[f"agree_clean_{name}"] = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        results.append(row)
    return results


# ----------------------------------------------------------------------------- the run


def default_name(args) -> str:
    name = f"{args.loss}-{args.insert_after}-{args.gate}-w{args.width}"
    backbone = getattr(args, "backbone", None) or DEFAULT_BACKBONE
    if backbone != DEFAULT_BACKBONE:  # lite2-..., timm-resnet18-...
        name = backbone.replace("efficientnet_", "").replace(":", "-") + "-" + name
    if args.no_quality:
        name += "-noq"
    if args.dct_source != "file-grid":
        name += f"-{args.dct_source}"
    if args.fe_downscale != 1:
        name += f"-fe{args.fe_downscale}"
    if getattr(args, "match_later", None):
        name += f"-later{args.match_later.split('.')[1]}"
    return name


@dataclass
class TrainResult:
    out_dir: Path
    record: dict
    student: Classifier
    completed: bool  # all --steps done
    stopped: str | None = None  # "pause-at", "max-minutes" or "interrupted" when it ended early


def resolve_backbone(args) -> BackboneSpec:
    """The backbone the arguments name, with the arguments it decides filled in, so the record and
    a --resume see the values used: the insertion point (the backbone's default) and the shorter
    sides the crops are JPEG'd at ([S, 2S] for input size S: [224, 448] for Lite0)."""
    try:
        spec = backbone_from_args(args, insert_after=args.insert_after)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"--backbone {args.backbone}: {err}") from None
    if args.insert_after is None:
        args.insert_after = spec.insert_after
    if args.shorter_side is None:
        args.shorter_side = [spec.input_size, 2 * spec.input_size]
    return spec


def run_training(args) -> TrainResult:
    """Train (or resume) per ``args`` (the parsed ``train`` arguments); see the module docstring."""
    backbone = resolve_backbone(args)
    if args.out is None:
        args.out = Path("runs") / f"afd-{args.name or default_name(args)}"
    with loop.torch_threads(args.threads) as threads, loop.run_folder(args, Path(args.out)) as out_dir:
        return _run_training(args, backbone, out_dir, loop.pick_device(args.device), threads)


def _run_training(args, backbone: BackboneSpec, out_dir: Path, device: torch.device, threads: int) -> TrainResult:
    torch.manual_seed(args.seed)

    try:
        student, teacher, config = build_student_and_teacher(args, backbone)
        insertion = insertion_geometry(teacher, args.insert_after)
        if args.match_later and forward_order(teacher, [args.insert_after, args.match_later])[-1] != args.match_later:
            raise ValueError(f"--match-later {args.match_later} must come after the module (--insert-after "
                             f"{args.insert_after})")
    except (ValueError, RuntimeError) as err:  # a layer it lacks; a weights package not installed
        raise SystemExit(str(err)) from None
    train_images, val_images, sources = training_set(args.data, args.val_fraction, args.val)
    if not train_images:
        raise SystemExit(f"no training images in {args.data} with --val-fraction {args.val_fraction}")
    split = {"data": sources, "val_fraction": args.val_fraction, "rule": SPLIT_RULE,
             "validation": str(Path(args.val).resolve()) if args.val else "the first labelled folder's split",
             "train": [i.path.name for i in train_images], "val": [i.path.name for i in val_images]}
    atomic_write_text(out_dir / SPLIT, json.dumps(split, indent=1))

    student.to(device)
    params = list(student.afd.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: loop.lr_factor(s, args.steps, args.warmup))

    recipe = PairRecipe(quality_range=tuple(args.quality_range), quality_dist=args.quality_dist,
                        shorter_side=tuple(args.shorter_side), min_crop_area=args.min_crop_area,
                        dct_source=args.dct_source, high_quality_share=args.high_quality_share,
                        high_quality_range=tuple(args.high_quality_range),
                        input_sized_share=args.input_sized_share)
    dataset = CompressedPairs(train_images, recipe, args.seed, args.steps * args.batch_size, backbone)

    def batches(start: int, stop: int):
        return DataLoader(dataset, batch_size=args.batch_size,
                          sampler=_FromSample(start * args.batch_size, stop * args.batch_size),
                          num_workers=args.workers, collate_fn=collate_pairs,
                          pin_memory=device.type == "cuda", persistent_workers=False,
                          prefetch_factor=4 if args.workers else None)

    def losses(batch):
        batch = {"student": {k: v.to(device, non_blocking=True) for k, v in batch["student"].items()},
                 "teacher": batch["teacher"].to(device, non_blocking=True)}
        return compute_losses(student, teacher, batch, args.loss, args.temperature, args.feature_weight,
                               args.match_later)

    student.train()  # Classifier keeps the frozen backbone's batch norms in eval mode
    outcome = loop.train(loop.Run(
        args, out_dir, {"afd": student.afd}, optimizer, scheduler, losses, batches, params, clip=args.clip_grad,
        # steps may change on --resume: a long run can be cut short (or lengthened) part-way. The
        # validation folder and qualities only judge the run (training never sees the folder, and a
        # photo in both is refused, not dropped), so a run may continue where another set is at hand.
        resumable={"workers", "val_batch", "steps", "val", "val_qualities"},
        checkpoint_extra={"afd_config": config.to_dict(), "backbone": backbone.to_dict()},
        # Runs from before --backbone trained Lite0 with its own input.
        added_args={"backbone": DEFAULT_BACKBONE, "backbone_weights": None, "input_size": None, "resize_size": None,
                    "mean": None, "std": None}))
    step, stopped = outcome.step, outcome.stopped
    if outcome.to_be_continued:  # to be continued with --resume: no final artefacts
        return TrainResult(out_dir, {"step": step, "out": str(out_dir)}, student, False, stopped)

    weights = {k: v.detach().cpu().clone().contiguous() for k, v in student.afd.state_dict().items()}
    torch.save(weights, out_dir / WEIGHTS)

    validation = []
    if val_images and args.val_qualities:
        qualities = parse_qualities(args.val_qualities)
        print(f"validating on {len(val_images)} images at {args.val_qualities}", flush=True)
        validation = validate(student, teacher, val_images, qualities, args.dct_source, device,
                              batch_size=args.val_batch, workers=args.workers)

    final = outcome.mean_recent()
    record = {
        "afd_config": config.to_dict(),
        # The backbone trained on (with a user checkpoint's sha256): the archive builder builds it.
        "backbone": backbone.to_dict(),
        "insertion": insertion,
        "dct_source": config.dct_source,  # also in afd_config; serving must compute the same
        "weights": WEIGHTS,
        "weights_sha256": hashlib.sha256((out_dir / WEIGHTS).read_bytes()).hexdigest(),
        "parameters": sum(p.numel() for p in params),
        "completed": outcome.completed,
        "stopped": stopped,
        "steps": step,
        "steps_planned": args.steps,
        "images_seen": step * args.batch_size,
        "wall_time_s": round(outcome.elapsed_s, 1),
        "images_per_s_last_session": round(outcome.session_images / max(outcome.session_seconds, 1e-9), 2),
        "sittings": outcome.sittings,
        "final_losses_last_50_steps": final,
        "validation": validation,
        "data": sources,
        "split": {"val_fraction": args.val_fraction, "train_images": len(train_images),
                  "val_images": len(val_images), "validation": split["validation"], "rule": split["rule"],
                  "file": SPLIT, "train": split["train"], "val": split["val"]},
        **loop.provenance(args, device, threads),
    }
    loop.write_record(out_dir, record, RECORD, summary_markdown(record), SUMMARY)
    for row in validation:
        print(f"q={row['quality']}: top-1 plain {row['top1_plain']:.3f} -> AFD {row['top1_afd']:.3f}; "
              f"KL to clean {row['kl_to_clean_plain']:.3f} -> {row['kl_to_clean_afd']:.3f}", flush=True)
    print(f"wrote {out_dir / WEIGHTS} and {RECORD}", flush=True)
    return TrainResult(out_dir, record, student, outcome.completed, stopped)


def _sources(record: dict) -> list[dict]:
    """The run's training folders; records before several folders named one folder as a string."""
    data = record["data"]
    if isinstance(data, str):
        return [{"folder": data, "images": record["split"]["train_images"], "taken": "training split"}]
    return data


def _sittings_line(sittings: list[dict]) -> str:
    """A run trained in several invocations: the steps of each, where, and its schedule length."""
    def one(s):
        if s.get("recorded") is False:
            return f"steps {s['from_step']}-{s['to_step']} (not recorded)"
        threads = f"{s['threads']} thread" + ("s" if s["threads"] != 1 else "")
        return (f"steps {s['from_step']}-{s['to_step']} on {s['device']} ({threads}, "
                f"{s['seconds'] / 60:.0f} min, {s['schedule_steps']}-step schedule)")
    return f"- {len(sittings)} sittings: " + "; ".join(one(s) for s in sittings)


def summary_markdown(record: dict) -> str:
    a = record["args"]
    backbone = BackboneSpec.from_dict(record["backbone"]) if record.get("backbone") else LITE0
    lines = [
        f"# AFD module: {Path(a['out'] or '').name or 'run'}",
        "",
        f"- backbone `{backbone.name}` ({backbone.input_size} px, shorter side {backbone.resize_shorter}, mean "
        f"{list(backbone.mean)}, std {list(backbone.std)}), module after `{record['afd_config']['insert_after']}`"
        + (f" ({record['insertion']['channels']} channels at stride {record['insertion']['stride']:g})"
           if record.get("insertion") else ""),
        f"- config: `{json.dumps(record['afd_config'])}`, DCT source `{record['dct_source']}`, "
        f"{record['parameters']:,} parameters",
        f"- loss `{a['loss']}` (T={a['temperature']}, feature weight {a['feature_weight']}), "
        f"{record['steps']}/{record['steps_planned']} steps of batch {a['batch_size']}, AdamW lr "
        f"{a['lr']} cosine, JPEG quality {a['quality_range'][0]}-{a['quality_range'][1]} "
        f"({a['quality_dist']}"
        + (f"; {a['high_quality_share']:.0%} at {a['high_quality_range'][0]}-{a['high_quality_range'][1]}"
           if a.get("high_quality_share") else "")
        + f"), shorter side {a['shorter_side'][0]}-{a['shorter_side'][1]}"
        + (f" ({a['input_sized_share']:.0%} as exact {backbone.input_size}x{backbone.input_size} crops)"
           if a.get("input_sized_share") else ""),
        "- data: " + "; ".join(f"`{s['folder']}` {s['images']} ({s['taken']})" for s in _sources(record))
        + f"; {record['split']['train_images']} train / {record['split']['val_images']} validation images "
        f"({record['split'].get('validation', 'split by name hash')}, see {SPLIT})",
        f"- {record['wall_time_s'] / 60:.1f} min on {record['device']} ({record['threads']} threads), "
        f"{record['images_per_s_last_session']} images/s; seed {record['seed']}, "
        f"afdserve {record['library_version']}, torch {record['torch_version']}",
        *([_sittings_line(record["sittings"])] if len(record.get("sittings", [])) > 1 else []),
        "- final losses (mean of the last 50 steps): "
        + ", ".join(f"{k} {v:.4f}" for k, v in record["final_losses_last_50_steps"].items()),
    ]
    if record["dct_source"] != "file-grid":
        lines.append("- NOTE: trained on the DCT of the resized model input; serving must compute "
                     "the same (`prepare(..., dct_source=\"resized\")`), not the file-grid DCT.")
    if record["validation"]:
        lines += ["", "Quick validation (validation split, Pillow re-encode of the full image, then "
                  "`prepare`; KL to the plain backbone's prediction on the stored file):", "",
                  "| quality | images | top-1 plain | top-1 AFD | KL plain | KL AFD |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in record["validation"]:
            lines.append(f"| {r['quality']} | {r['images']} | {r['top1_plain']:.3f} | {r['top1_afd']:.3f} "
                         f"| {r['kl_to_clean_plain']:.3f} | {r['kl_to_clean_afd']:.3f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    loop.add_data_arguments(g, several=True)
    g.add_argument("--quality-range", type=int, nargs=2, default=[5, 50], metavar=("MIN", "MAX"),
                   help="JPEG qualities to train on (default 5 50)")
    g.add_argument("--quality-dist", choices=["log-uniform", "uniform"], default="log-uniform")
    # Trained on 5-50 only, the module also "corrects" good files: -4 points top-1 on the stored
    # validation files after 300 kd steps; a fifth of pairs at 75-95 cut that to -1.5.
    g.add_argument("--high-quality-share", type=float, default=0.2,
                   help="share of pairs compressed at --high-quality-range instead, so the module "
                        "learns to leave good images alone (default 0.2)")
    g.add_argument("--high-quality-range", type=int, nargs=2, default=[75, 100], metavar=("MIN", "MAX"))
    g.add_argument("--input-sized-share", type=float, default=0.3,
                   help="share of pairs compressed as exact input-sized crops, 224x224 for Lite0 "
                        "(ImageNet-C's protocol)")
    g.add_argument("--shorter-side", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="the crop's shorter side before JPEG: the input size = 'JPEG at the model's size', larger "
                        "= 'JPEG the full image, the server downscales' (default: input size and twice it, "
                        "224 448 for Lite0)")
    g.add_argument("--min-crop-area", type=float, default=0.25,
                   help="smallest random crop, as a fraction of the image's area (default 0.25)")
    g = p.add_argument_group("backbone (the frozen classifier the module is trained for)")
    add_backbone_arguments(g)
    g = p.add_argument_group("module (ablations)")
    # Early features: where JPEG drift lives.
    g.add_argument("--insert-after", default=None, metavar="LAYER",
                   help="the layer the module follows: stem, blocks.0 or blocks.1 for the Lite backbones, a module "
                        "name of a timm:ARCH (default: the backbone's: stem for Lite, timm's first feature module)")
    g.add_argument("--gate", choices=["spatial", "global"], default="spatial")
    g.add_argument("--no-quality", action="store_true", help="do not feed the estimated JPEG quality")
    # Width 8: at 16 the module cost 345M multiply-adds (the backbone: 385M) and +47% latency;
    # at 8 it stays inside the 25% latency budget.
    g.add_argument("--width", type=int, default=8, help="FE-Net base width (default 8)")
    g.add_argument("--fe-downscale", type=int, choices=[1, 2], default=1,
                   help="2: FE-Net on the features' 2x2 means, a quarter of its cost (default 1)")
    g.add_argument("--dct-source", choices=DCT_SOURCES, default="file-grid",
                   help="file-grid: DCT on the JPEG's own blocks (the serving path); resized: DCT of the "
                        "224x224 model input, as the public AFD code does (serving must match)")
    g = p.add_argument_group("optimisation")
    # Default "both": at 300 equal steps it matched kd on the drift figure (KL to the clean
    # prediction at q10: 0.291 vs 0.288, feature alone 0.341) with the best q10 top-1, while the
    # feature term, an anchor to the clean features, halved kd's damage on uncompressed files.
    g.add_argument("--loss", choices=LOSSES, default="both")
    g.add_argument("--temperature", type=float, default=1.0, help="KD temperature (default 1)")
    g.add_argument("--match-later", default=None, metavar="LAYER",
                   help="with feature matching: also match the features after this later layer, e.g. blocks.2 "
                        "(same weight)")
    g.add_argument("--feature-weight", type=float, default=1.0,
                   help="weight of the feature MSE in --loss both (default 1)")
    g.add_argument("--steps", type=int, default=1800,
                   help="optimiser steps; sets the LR schedule (default 1800: ~50 min on 2 CPU cores)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--warmup", type=int, default=50, help="linear warm-up steps before the cosine")
    g.add_argument("--clip-grad", type=float, default=1.0, help="gradient norm clip; 0: none")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("run")
    g.add_argument("--name", default=None, help="run name (default from the loss and module flags)")
    g.add_argument("--out", type=Path, default=None, help="run folder (default runs/afd-<name>)")
    loop.add_run_control_arguments(g)
    g.add_argument("--workers", type=int, default=1,
                   help="DataLoader workers making the JPEG pairs (default 1)")
    g.add_argument("--val-qualities", default="10,original",
                   help="qualities for the final check; 'original' = the files as stored; '' skips it")
    g.add_argument("--val-batch", type=int, default=32)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_train(args) -> int:
    result = run_training(args)
    return 130 if result.stopped == "interrupted" else 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("train", help="train an AFD module (frozen backbone as its own teacher)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
