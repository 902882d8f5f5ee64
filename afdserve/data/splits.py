"""The train/validation split every model is trained and judged on, fixed by file names."""

import hashlib
from pathlib import Path

from afdserve.data.folders import LabelledImage, load_images

SPLIT_RULE = "validation iff sha256(file name)[:8] / 2**64 < val_fraction"


def split_key(name: str) -> float:
    """A file's place in [0, 1), from the SHA-256 of its name: a file stays on its side of the
    split whatever other files the folder holds."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2.0**64


def split_images(images: list[LabelledImage], val_fraction: float):
    """(train, validation): validation holds the files whose key is below ``val_fraction``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train = [i for i in images if split_key(i.path.name) >= val_fraction]
    val = [i for i in images if split_key(i.path.name) < val_fraction]
    return train, val


# Folders that only ever judge a model: a training set that names one is refused.
EVALUATION_ONLY = ("imagenet-val-1000",)


def training_set(folders, val_fraction: float, validation=None):
    """The training images of several folders, and the validation images.

    A labelled folder (``labels.csv``) gives its training split only, by ``SPLIT_RULE``; a folder
    without labels gives every image (the frozen backbone on the clean photo is the teacher, so
    none are needed). Validation is the labelled folder ``validation`` whole, or else the
    validation split of the first labelled training folder. Returns (train, validation, sources):
    ``sources`` says per folder how many images it gave and how, for the run record. Refuses an
    evaluation-only folder, and any training photo whose bytes are also a validation photo's.
    """
    train, val, sources = [], [], []
    for folder in map(Path, folders):
        if folder.resolve().name in EVALUATION_ONLY:
            raise SystemExit(f"{folder} is for evaluation only: training never sees it")
        images = [LabelledImage(path, label) for path, label in load_images(folder)]
        labelled = images[0].label is not None
        if labelled:
            part, held_out = split_images(images, val_fraction)
            if validation is None and not val:
                val = held_out
        else:
            part = images
        train += part
        sources.append({"folder": str(folder.resolve()), "labelled": labelled, "images": len(part),
                        "taken": f"training split ({SPLIT_RULE}, val_fraction {val_fraction})" if labelled
                        else "every image"})
    if validation is not None:
        val = [LabelledImage(path, label) for path, label in load_images(Path(validation))]
        if any(item.label is None for item in val):
            raise SystemExit(f"{validation}: a validation folder needs labels.csv")
    _refuse_overlap(train, val)
    return train, val, sources


def _refuse_overlap(train: list, val: list) -> None:
    def digest(item) -> str:
        return hashlib.sha256(item.path.read_bytes()).hexdigest()

    seen = {digest(item): item.path for item in val}
    for item in train:
        twin = seen.get(digest(item))
        if twin is not None:
            raise SystemExit(f"{item.path} is also a validation photo ({twin}): training must not see it")
