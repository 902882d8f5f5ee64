"""JPEG re-encoding the way users' compressed files are mostly made (Pillow, IJG tables), and the
qualities to do it at as the commands take them ("original,10,30")."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from afdserve.imaging.decode import decode_image


def encode_jpeg(image: Image.Image | np.ndarray, quality: int) -> bytes:
    """A Pillow JPEG of a PIL image or an HxW (gray) / HxWx3 uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def jpeg_bytes(path: Path, quality: int | None) -> bytes:
    """The file as stored (quality None) or re-encoded by Pillow at ``quality``."""
    raw = Path(path).read_bytes()
    if quality is None:
        return raw
    with Image.open(io.BytesIO(raw)) as im:
        return encode_jpeg(im.convert("RGB"), quality)


def jpeg_roundtrip(array: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """Pillow JPEG of an HxW (gray) or HxWx3 uint8 array, and the file decoded by the server's
    decoder (RGB)."""
    data = encode_jpeg(array, quality)
    return data, np.asarray(decode_image(data).image)


def parse_qualities(text: str) -> list[int | None]:
    """"original,10,30" -> [None, 10, 30]: None is the file as stored."""
    return [None if q.strip() == "original" else int(q) for q in text.split(",")]
