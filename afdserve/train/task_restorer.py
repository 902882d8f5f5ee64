"""Task-aware restorer training (``afdserve train-restorer --task-loss kl|kl+ce``): the compact
SwinIR fine-tuned through the frozen EfficientNet-Lite0 classifier, so that it restores what the
classifier needs and not only what PSNR rewards (the joint restoration-classification recipe).

Each sample is classifier-sized: the clean photo cropped the way the classifier sees it under P1
(shorter side resized to 256, a 224x224 crop; ``preprocess.crop_box`` and ``input_crop``, the
serving geometry, here at a random place of the resized image) and randomly flipped, then
JPEG-compressed by Pillow at a quality from ``--quality-range`` and decoded by the serving decoder.
The restorer sees the decoded image in [0, 1]; the classifier sees the restored image clamped to
[0, 1] (as served) and scaled by ``preprocess.model_range``, and the clean crop the same way.

Loss = Charbonnier(restored, clean) + task_weight * task, where task is the KL divergence from
the classifier's softened answer on the clean crop (the teacher; no labels needed) to its answer
on the restored one, and for ``kl+ce`` also ``ce_weight`` times the cross-entropy to the label,
over the samples whose folder has labels.

The classifier is frozen: its parameters require no gradient and are in no optimiser, and it stays
in eval mode (batch-norm statistics fixed); gradients flow through it into the restorer only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from afdserve.data.folders import LabelledImage
from afdserve.data.jpeg import jpeg_roundtrip
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import INPUT_SIZE, crop_box, input_crop, model_range, resize_geometry
from afdserve.models.classifier import Classifier, build_classifier
from afdserve.serving.restoration import to_tensor
from afdserve.train import loop
from afdserve.train.afd import kd_loss

TASK_LOSSES = ("none", "kl", "kl+ce")
IGNORE_LABEL = -100  # an unlabelled sample's label: cross-entropy leaves it out (F.cross_entropy's default)


@dataclass(frozen=True)
class TaskLoss:
    """The task term and its weight; ``kind`` "none" is plain Charbonnier training."""

    kind: str = "none"
    weight: float = 0.1
    temperature: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self):
        if self.kind not in TASK_LOSSES:
            raise ValueError(f"task loss must be one of {TASK_LOSSES}, got {self.kind!r}")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def to_record(self) -> dict:
        return {**asdict(self), "classifier": "EfficientNet-Lite0 (ImageNet weights), frozen, eval mode",
                "teacher": "the classifier on the clean crop"}


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class TaskRecipe:
    quality_range: tuple[int, int] = (10, 40)
    flip: bool = True
    # Restore-then-classify runs the restorer on every photo, good JPEGs too, where the PSNR-trained
    # one costs the classifier points: a share of nearly clean samples teaches it to leave them alone.
    high_quality_share: float = 0.0
    high_quality_range: tuple[int, int] = (75, 95)

    def draw_quality(self, rng: np.random.Generator) -> int:
        # Drawn only when asked, so share 0 keeps the random streams of earlier runs.
        if self.high_quality_share > 0 and rng.random() < self.high_quality_share:
            return int(rng.integers(self.high_quality_range[0], self.high_quality_range[1] + 1))
        return int(rng.integers(self.quality_range[0], self.quality_range[1] + 1))

    def to_record(self) -> dict:
        return {**asdict(self), "size": INPUT_SIZE,
                "crop": "shorter side 256, random 224x224 crop (crop_box/input_crop, bilinear)"}


def make_task_sample(clean: Image.Image, rng: np.random.Generator, recipe: TaskRecipe):
    """(JPEG-decoded crop, clean crop, quality): two 3 x 224 x 224 float tensors in [0, 1]."""
    resized_w, resized_h, _, _ = resize_geometry(clean.width, clean.height)
    offset = (int(rng.integers(0, resized_w - INPUT_SIZE + 1)), int(rng.integers(0, resized_h - INPUT_SIZE + 1)))
    crop = input_crop(clean, crop_box(clean.width, clean.height, offset))
    if recipe.flip and rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(crop)
    quality = recipe.draw_quality(rng)
    _, decoded = jpeg_roundtrip(pixels, quality)  # decoded by the serving decoder
    return unit_tensor(decoded), unit_tensor(pixels), quality


def unit_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float in [0, 1], the restorer's input, as served."""
    return to_tensor(pixels)[0]


class TaskSampler(loop.StepBatches):
    """Item ``step`` is that step's batch: (JPEG crops, clean crops, qualities, labels), labels a
    long tensor with ``IGNORE_LABEL`` where the image has none. Sample k is a pure function of
    (seed, k) (``loop.image_index``), so --resume and --workers see the same stream."""

    def __init__(self, images: list[Image.Image], labels: list[int | None], recipe: TaskRecipe, seed: int,
                 batch_size: int = 4, steps: int = 0):
        if len(images) != len(labels):
            raise ValueError("one label (or None) per image")
        super().__init__(batch_size, steps)
        self.images, self.labels, self.recipe, self.seed = images, labels, recipe, seed

    def batch(self, step: int, size: int):
        samples, labels = [], []
        for k in range(step * size, (step + 1) * size):
            i = loop.image_index(self.seed, k, len(self.images))
            samples.append(make_task_sample(self.images[i], np.random.default_rng([self.seed, 1, k]), self.recipe))
            labels.append(IGNORE_LABEL if self.labels[i] is None else self.labels[i])
        jpeg, clean, quality = zip(*samples)
        return torch.stack(jpeg), torch.stack(clean), list(quality), torch.tensor(labels, dtype=torch.long)


# ----------------------------------------------------------------------------- the loss


def frozen_classifier(device: torch.device | str = "cpu") -> Classifier:
    """EfficientNet-Lite0 with its ImageNet weights (no AFD module), frozen and in eval mode."""
    classifier = build_classifier(None, pretrained=True).to(device).eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    return classifier


def task_terms(classifier: Classifier, restored: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor | None,
               settings: TaskLoss) -> dict[str, torch.Tensor]:
    """{"kl", ["ce"], "task"} for restored and clean images in [0, 1]; differentiable in
    ``restored`` only. ``labels``: IGNORE_LABEL where unknown; a batch without any gives ce 0."""
    with torch.no_grad():
        teacher = classifier(model_range(clean))
    # Clamped as the served restorer's output is: the classifier never sees values outside [0, 1].
    logits = classifier(model_range(restored.clamp(0.0, 1.0)))
    out = {"kl": kd_loss(logits, teacher, settings.temperature)}
    task = out["kl"]
    if settings.kind == "kl+ce":
        known = labels != IGNORE_LABEL
        out["ce"] = F.cross_entropy(logits[known], labels[known]) if known.any() else logits.new_zeros(())
        task = task + settings.ce_weight * out["ce"]
    out["task"] = task
    return out


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate_task(restorer: torch.nn.Module, classifier: Classifier, images: list[Image.Image], labels: list[int],
                  qualities: list[int | None], device, batch_size: int = 8) -> list[dict]:
    """Top-1 of the classifier on the JPEG centre crop and on its restoration, and each one's KL
    divergence from the classifier's answer on the clean crop, per quality (None: the clean crop
    itself, which the restorer should leave alone). The crops are the training samples' (JPEG at
    224x224, ImageNet-C's protocol), so the check is quick; ``evaluate-restorer --classify``
    measures P1."""
    restorer.eval()
    crops = np.stack([np.asarray(input_crop(im)) for im in images])
    y = torch.tensor(labels)
    clean = torch.stack([unit_tensor(c) for c in crops])

    def logits_of(x: torch.Tensor, restore: bool) -> torch.Tensor:
        parts = []
        for batch in x.split(batch_size):
            batch = batch.to(device)
            if restore:
                batch = restorer(batch).clamp(0.0, 1.0)
            parts.append(classifier(model_range(batch)).float().cpu())
        return torch.cat(parts)

    reference = F.log_softmax(logits_of(clean, restore=False), dim=1)
    rows = []
    for quality in qualities:
        x = clean if quality is None else torch.stack([unit_tensor(jpeg_roundtrip(c, quality)[1]) for c in crops])
        row = {"quality": "clean" if quality is None else quality, "images": len(images)}
        for name, restore in (("jpeg", False), ("restored", True)):
            logits = logits_of(x, restore)
            row[f"top1_{name}"] = (logits.argmax(1) == y).float().mean().item()
            row[f"kl_to_clean_{name}"] = F.kl_div(F.log_softmax(logits, 1), reference, log_target=True,
                                                  reduction="batchmean").item()
        rows.append(row)
    restorer.train()
    return rows


def labelled_images(items: list[LabelledImage]) -> tuple[list[Image.Image], list[int | None]]:
    return [decode_image(i.path.read_bytes()).image for i in items], [i.label for i in items]


# ----------------------------------------------------------------------------- command line


def add_task_arguments(g) -> None:
    g.add_argument("--task-loss", choices=TASK_LOSSES, default="none",
                   help="train through the frozen Lite0 classifier on 224x224 samples: kl (to its answer "
                        "on the clean image; no labels needed) or kl+ce (plus cross-entropy to the label "
                        "where the folder has labels.csv); none: Charbonnier on patches (default)")
    # 0.1: the KL at quality 10 (about 0.4 for the plain classifier, afd_v1's record) then weighs
    # about what the Charbonnier does (0.025 after training); not yet tuned.
    g.add_argument("--task-weight", type=float, default=TaskLoss.weight,
                   help=f"weight of the task term beside the Charbonnier (default {TaskLoss.weight})")
    g.add_argument("--high-quality-share", type=float, default=TaskRecipe.high_quality_share,
                   help="task samples only: share compressed at --high-quality-range instead, so the "
                        "restorer learns to leave good JPEGs alone (default 0)")
    g.add_argument("--high-quality-range", type=int, nargs=2, default=list(TaskRecipe.high_quality_range),
                   metavar=("MIN", "MAX"))
    g.add_argument("--temperature", type=float, default=TaskLoss.temperature,
                   help=f"softmax temperature of the KL term, which is scaled by T^2 (default {TaskLoss.temperature})")
    g.add_argument("--ce-weight", type=float, default=TaskLoss.ce_weight,
                   help=f"weight of the cross-entropy inside the task term, kl+ce (default {TaskLoss.ce_weight})")


def task_loss_of(args) -> TaskLoss:
    return TaskLoss(kind=args.task_loss, weight=args.task_weight, temperature=args.temperature,
                    ce_weight=args.ce_weight)


# What a restorer checkpoint written before --task-loss existed trained with.
ARGS_BEFORE_TASK_LOSS = {"task_loss": TaskLoss.kind, "task_weight": TaskLoss.weight,
                         "temperature": TaskLoss.temperature, "ce_weight": TaskLoss.ce_weight,
                         "high_quality_share": TaskRecipe.high_quality_share,
                         "high_quality_range": list(TaskRecipe.high_quality_range)}
