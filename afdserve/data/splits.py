"""The train/validation split every model is trained and judged on, fixed by file names."""

import hashlib

from afdserve.data.folders import LabelledImage

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
