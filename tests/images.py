"""Test images generated in memory from scikit-image's bundled photos (no files on disk)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data as skdata

# EXIF orientation -> how to turn an upright image into what the camera would have stored.
# Inverse of the transposes Pillow's exif_transpose applies when reading.
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@functools.cache
def _photo_array(name: str) -> np.ndarray:
    return {"chelsea": skdata.chelsea, "coffee": skdata.coffee, "camera": skdata.camera}[name]()


def photo(name: str = "chelsea") -> Image.Image:
    """chelsea: RGB 451x300, coffee: RGB 600x400, camera: L 512x512."""
    return Image.fromarray(_photo_array(name))


def encode(im: Image.Image, fmt: str = "JPEG", **save_kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def exif_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def stored_for_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    op = STORE_FOR_ORIENTATION[orientation]
    return upright if op is None else upright.transpose(op)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(width: int, height: int) -> bytes:
    """A well-formed PNG header (valid CRCs) for a width x height RGB image with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the frame header (SOF0/SOF2) of a JPEG so it claims width x height."""
    out = bytearray(jpeg)
    i = 2
    while i + 4 <= len(out):
        if out[i] != 0xFF:
            raise ValueError("lost marker sync")
        marker = out[i + 1]
        length = struct.unpack(">H", out[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            # FFCn, length(2), precision(1), height(2), width(2)
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker")


def webp_vp8x_claiming_size(width: int, height: int) -> bytes:
    """RIFF/WEBP with just a VP8X header chunk announcing a width x height canvas."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flat_block_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Grey image made of constant 8x8 blocks on the grid starting at (0, 0), random levels."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, size=(-(-height // 8), -(-width // 8)), dtype=np.uint8)
    pixels = np.kron(levels, np.ones((8, 8), dtype=np.uint8))[:height, :width]
    return Image.fromarray(np.ascontiguousarray(pixels))
