"""Request bytes -> upright RGB image, plus what the JPEG file says about its own compression.

Everything a client can send goes through :func:`decode_image`; for bad bytes it raises only
:class:`ImageDecodeError`, whose ``status`` is the HTTP status the handler should answer with.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from afdserve.imaging.budget import READ_BLOCK, BudgetedReader, CpuBudget
from afdserve.imaging.errors import ImageDecodeError
from afdserve.imaging.structure import check_structure

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageDecodeError",
    "ImageHeader",
    "decode_image",
    "estimate_jpeg_quality",
    "exif_orientation",
    "jpeg_grid_offset",
    "read_header",
]

DEFAULT_MAX_PIXELS = 40_000_000

# Pillow plugin IDs we let Image.open try. MPO is not an ID of its own: the JPEG factory
# returns an MpoImageFile when the file carries a multi-picture header.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

# IJG / ITU-T T.81 Annex K example tables, natural row-major order (row = vertical frequency).
STD_LUMINANCE_QTABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
STD_CHROMINANCE_QTABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip

# EXIF orientation -> the transpose that makes the stored image upright (same as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB", upright (EXIF orientation applied), fully loaded
    format: str  # "JPEG", "PNG" or "WEBP" (Pillow's "MPO" counts as JPEG)
    quantization: dict[int, list[int]] | None  # 64 values per table, natural row-major 8x8; None if not JPEG
    quality: int | None  # estimated IJG quality 1..100; None if not JPEG
    grid_offset: tuple[int, int]  # (dy, dx): where the file's 8x8 block grid starts in the upright image
    # 1, or 2/4/8 when the decoder scaled the image down (``min_shorter_side``): then ``image``'s
    # pixels no longer sit on the file's 8x8 grid and carry no block DCT to compute.
    reduction: int = 1


@dataclass(frozen=True)
class ImageHeader:
    """What the file says before any pixel is decoded; ``image`` is Pillow's opened, unloaded file."""
    image: Image.Image
    format: str  # "JPEG", "PNG" or "WEBP"
    quantization: dict[int, list[int]] | None
    quality: int | None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_shorter_side: int | None = None, budget: CpuBudget | None = None) -> DecodedImage:
    """Decode a JPEG, PNG or WebP request body into an upright RGB image.

    Images over ``max_pixels`` are refused from their header, before any pixel memory is allocated.
    With ``min_shorter_side``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling,
    far less work than decoding every pixel) as long as its shorter side stays at least that long.
    Files whose structure costs far more than their pixels are refused before decoding
    (``afdserve.imaging.structure``), and decoding stops with a 413 once it has used ``budget``.
    """
    header = read_header(data, max_pixels, budget)
    im, fmt = header.image, header.format
    stored_w, stored_h = im.size
    reduction = 1
    try:
        if min_shorter_side and fmt == "JPEG":
            # Pillow picks the largest scale that keeps both sides >= the requested size.
            im.draft(None, (min_shorter_side, min_shorter_side))
            reduction = max(1, round(stored_w / im.size[0]))
        im.load()
        orientation = exif_orientation(im)
        rgb = _to_rgb(im)
        if orientation in _ORIENTATION_TRANSPOSE:
            rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    except ImageDecodeError:  # the budget, from inside Pillow's reads
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(e, max_pixels) from None
    except MemoryError:
        raise ImageDecodeError("image too large to decode", status=413) from None
    except Exception as e:  # OSError (truncated), SyntaxError, ValueError, struct.error, EOFError, ...
        raise ImageDecodeError(f"truncated or corrupt {fmt}: {e}") from None

    grid_offset = jpeg_grid_offset(orientation, stored_w, stored_h) if fmt == "JPEG" else (0, 0)
    return DecodedImage(
        image=rgb, format=fmt, quantization=header.quantization, quality=header.quality,
        grid_offset=grid_offset, reduction=reduction,
    )


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, budget: CpuBudget | None = None) -> ImageHeader:
    """Open a request body and check it as far as its header goes (format, size, animation,
    structure cost), and read a JPEG's quantization tables. Raises ImageDecodeError like
    ``decode_image``; ``budget`` is checked at every read, here and while the image loads."""
    if data is None or len(data) == 0:
        raise ImageDecodeError("empty request body")
    data = bytes(data)
    check_structure(data)

    # libwebp allocates the whole canvas while Pillow *opens* the file, so check its header first.
    webp_size = _webp_canvas_size(data)
    if webp_size is not None:
        _check_pixel_limit(webp_size, max_pixels)

    try:
        im = Image.open(BudgetedReader(data, budget), formats=_OPEN_FORMATS)
        # Smaller reads than Pillow's 64 KiB while loading: the budget is checked between them.
        im.decodermaxblock = READ_BLOCK
    except ImageDecodeError:  # the budget
        raise
    except UnidentifiedImageError:
        raise _unidentified_error(data) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(e, max_pixels) from None
    except MemoryError:
        raise ImageDecodeError("image too large to decode", status=413) from None
    except Exception as e:  # any header parser failure is the client's bad bytes
        name = _accepted_format_by_magic(data) or "image"
        raise ImageDecodeError(f"truncated or corrupt {name}: {e}") from None

    fmt = "JPEG" if im.format in _JPEG_FORMATS else im.format
    _check_pixel_limit(im.size, max_pixels)

    # An animation has no single image to classify; picking a frame would silently guess.
    # (MPO's extra frames are alternative views of the same scene, so MPO keeps frame 0.)
    if fmt != "JPEG" and getattr(im, "n_frames", 1) > 1:
        raise ImageDecodeError(
            f"animated {fmt} is not supported: send a still JPEG, PNG or WebP image", status=415
        )

    quantization = quality = None
    if fmt == "JPEG":
        try:
            quantization = _natural_qtables(getattr(im, "quantization", None)) or None
            quality = estimate_jpeg_quality(quantization) if quantization else None
        except ValueError:  # tables that are not 64 entries: say nothing rather than guess
            quantization = quality = None
    return ImageHeader(image=im, format=fmt, quantization=quantization, quality=quality)


def jpeg_grid_offset(orientation: int, width: int, height: int) -> tuple[int, int]:
    """(dy, dx) of the 8x8 block grid in the upright image, for a stored ``width`` x ``height`` JPEG.

    The encoder's grid starts at the stored image's top-left corner. A flip moves that corner to the
    far edge, so blocks then start at ``size % 8`` from the near edge; a transpose swaps the axes.
    """
    rw, rh = width % 8, height % 8
    return {
        1: (0, 0),
        2: (0, rw),  # mirror horizontally
        3: (rh, rw),  # rotate 180
        4: (rh, 0),  # mirror vertically
        5: (0, 0),  # transpose: upright rows are stored columns, both from the top-left
        6: (0, rh),  # rotate 90 CW: stored row 0 becomes the rightmost column
        7: (rw, rh),  # transverse
        8: (rw, 0),  # rotate 90 CCW: stored column 0 becomes the bottom row
    }.get(orientation, (0, 0))


def estimate_jpeg_quality(quantization: dict[int, list[int]]) -> int:
    """Estimate the IJG (libjpeg ``-quality``) setting that produced these quantization tables.

    Tries every quality 1..100 and keeps the one whose scaled Annex K tables are closest to the
    file's luma table (id 0, or the lowest id) and, when present, chroma table (the next id).
    Distances are taken in log space: quantisation error is relative, and it keeps the many
    entries clipped at 255 at low quality from outweighing the low frequencies.
    """
    if not quantization:
        raise ValueError("no quantization tables")
    ids = sorted(quantization)
    tables = [list(quantization[i]) for i in ids[:2]]
    for t in tables:
        if len(t) != 64:
            raise ValueError(f"quantization table has {len(t)} entries, expected 64")
    file_logs = np.log(np.maximum(np.asarray(tables, dtype=np.float64), 1.0))  # (T, 64), T = 1 or 2
    err = np.abs(_LOG_IJG_TABLES[:, : len(tables)] - file_logs).sum(axis=(1, 2))
    return int(np.argmin(err)) + 1  # argmin takes the first, i.e. lowest, quality on exact ties


def _ijg_scaled_table(std: tuple[int, ...], quality: int) -> list[int]:
    # jpeg_quality_scaling + jpeg_add_quant_table with force_baseline (what Pillow/libjpeg do).
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((v * scale + 50) // 100, 1), 255) for v in std]


# log of the scaled (luma, chroma) tables for quality 1..100: (100, 2, 64).
_LOG_IJG_TABLES = np.log(
    np.array(
        [
            [_ijg_scaled_table(STD_LUMINANCE_QTABLE, q), _ijg_scaled_table(STD_CHROMINANCE_QTABLE, q)]
            for q in range(1, 101)
        ],
        dtype=np.float64,
    )
)


def _natural_qtables(tables) -> dict[int, list[int]]:
    # Checked against Pillow 13: the DQT segment stores entries in zig-zag order, but
    # `im.quantization` already returns them in natural row-major order (a q=50 encode gives
    # 16, 11, 10, 16, 24, ... = Annex K row 0; a qtables=[1..64] encode reads back as 1..64
    # while the file's DQT bytes are 1, 2, 9, 17, 10, ...). So no reordering here.
    if not tables:
        return {}
    return {int(k): [int(v) for v in t] for k, t in dict(tables).items()}


def exif_orientation(im: Image.Image) -> int:
    # A broken EXIF block should not cost the user their request: treat it as "no rotation".
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
        value = int(value)
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey (PNG): Pillow's convert() clips to 255; keep the top byte instead.
        grey = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        # Composite on white rather than dropping alpha: transparent areas of product shots and
        # logos are meant to be seen on a white page, and the colour under alpha=0 is arbitrary.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, P, CMYK (Pillow already undoes Adobe's inverted CMYK when reading), YCbCr, ...
    return im.convert("RGB")


def _check_pixel_limit(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} pixels",
            status=413,
        )


def _bomb_error(e: Exception, max_pixels: int) -> ImageDecodeError:
    # Pillow refuses on its own above 2 * Image.MAX_IMAGE_PIXELS before we ever see the size;
    # its message carries the pixel count.
    return ImageDecodeError(
        f"image too large: {e} (the limit here is {max_pixels:,} pixels)", status=413
    )


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP header (VP8X, VP8 or VP8L first chunk), or None if not readable."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# Formats Pillow was not allowed to open, recognised by their magic so the user learns what
# they sent: (magic, offset, name).
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),
    (b"MM\x00+", 0, "TIFF"),
    (b"8BPS", 0, "PSD"),
    (b"qoif", 0, "QOI"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "JPEG XL"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x02\x00", 0, "CUR"),
)
_HEIF_BRANDS = {
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
    b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF",
}  # fmt: skip
_SVG_RE = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<svg[\s>]", re.S | re.I)
_ACCEPTED_HINT = "send JPEG, PNG or WebP"


def _accepted_format_by_magic(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _unidentified_error(data: bytes) -> ImageDecodeError:
    name = _accepted_format_by_magic(data)
    if name is not None:
        return ImageDecodeError(f"truncated or corrupt {name}: cannot read its header")

    head = data[:64]
    name = _sniff_unsupported(data)
    if name is not None:
        return ImageDecodeError(f"unsupported image format {name}: {_ACCEPTED_HINT}", status=415)
    if head.startswith(b"%PDF"):
        return ImageDecodeError(f"not an image (PDF document): {_ACCEPTED_HINT}", status=415)
    if head.startswith(b"PK\x03\x04"):
        return ImageDecodeError(f"not an image (ZIP archive): {_ACCEPTED_HINT}", status=415)
    return ImageDecodeError(f"not an image (unrecognised data): {_ACCEPTED_HINT}")


def _sniff_unsupported(data: bytes) -> str | None:
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    # BMP: "BM" is too common a prefix on its own, so also require a known DIB header size.
    if data[:2] == b"BM" and len(data) >= 18:
        if int.from_bytes(data[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124):
            return "BMP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    if _SVG_RE.match(data[:4096].lstrip(b"\xef\xbb\xbf")):
        return "SVG"
    return None
