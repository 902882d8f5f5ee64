"""Labelled image folders: ``labels.csv`` (columns ``file`` and ``class_index``) beside an
``images/`` folder, as in the ImageNet samples, or any folder of images without labels."""

import csv
from dataclasses import dataclass
from pathlib import Path

# The ImageNet samples, beside this checkout (../shared/data/imagenet-samples).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-samples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class LabelledImage:
    path: Path
    label: int | None  # None: a photo without a label (label-free training)


def load_labelled_folder(data_dir: Path) -> list[LabelledImage]:
    """Images and labels from ``labels.csv`` beside ``images/``."""
    data_dir = Path(data_dir)
    with open(data_dir / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [LabelledImage(data_dir / "images" / r["file"], int(r["class_index"])) for r in rows]


def load_images(folder: Path) -> list[tuple[Path, int | None]]:
    """(path, label) from a labelled folder, or every image in the folder without labels."""
    folder = Path(folder)
    if (folder / "labels.csv").is_file():
        return [(item.path, item.label) for item in load_labelled_folder(folder)]
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no labels.csv and no images in {folder}")
    return [(p, None) for p in paths]
