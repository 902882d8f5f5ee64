"""What a file's structure will cost to decode, read before any pixel is: the cost limits.

The pixel limit bounds how much memory an image takes, not how much work its file asks for. Some
structures multiply the work far beyond the pixels (CPU time on this project's 2-core machine,
Pillow 13: ``scripts/measure_cost_bombs.py``, ``results/cost-bombs/cost_bombs.md``):

* a progressive JPEG's scans: libjpeg decodes every scan over every block, so a 36-megapixel
  flat image whose last scan is repeated 2000 times (0.33 MB) took 48.9 s;
* marker segments before the first scan, which Pillow parses one by one in Python: 1.6 MB of
  empty comment segments took 1.6 s;
* PNG chunks, each parsed in Python by Pillow: 1.2 MB of empty private chunks took 0.6 s, and
  the cost grows with the body, up to 16 MiB.

:func:`check_structure` counts those from the bytes (a walk over the markers or chunks, the
entropy-coded data skipped with one regular-expression search per scan) and refuses a file over a
limit with a 413 that names what was too costly. What it does not need to bound, measured by hand:
restart-marker floods (8 MB of RST markers in a scan: 0.2 s, libjpeg resynchronises cheaply),
Huffman-table floods (8.6 MB of DHT segments: 0.1 s), WebP chunk floods (8 MB of unknown chunks:
0.1 s, libwebp's demuxer is C) and animation frame counts (an animated PNG or WebP is refused from
its header whatever its frame count). Whatever else costs more than its pixels is caught by the
CPU budget (``afdserve.imaging.budget``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from afdserve.imaging.errors import ImageDecodeError

__all__ = ["StructureLimits", "check_structure"]

# A marker inside entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart
# marker (RST0-7, part of the scan) or another 0xFF (fill bytes before a marker).
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}  # RSTn, TEM, SOI: no length
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pixel data, and an animation's frames (which the decoder refuses as animated, from its header).
_PNG_IMAGE_CHUNKS = frozenset({b"IDAT", b"fdAT", b"fcTL"})


@dataclass(frozen=True)
class StructureLimits:
    """How much structure a file may carry for its pixels; each default says where it comes from."""

    # libjpeg's progressive script (jpeg_simple_progression, what Pillow, ImageMagick and jpegtran
    # write) has 10 scans for colour, 6 for greyscale and 18 for CMYK; 100 is five times the most.
    # (libjpeg-turbo's own fuzzing targets stop at 500 scans, on images of at most 1 megapixel.)
    jpeg_scans: int = 100
    # Scans x pixels, the work libjpeg does: 18 scans of a 40-megapixel CMYK photo (7.2e8) pass with
    # room; at about 1.1 ns per scan-pixel here, the limit is about 1.1 s of decoding.
    jpeg_scan_pixels: int = 1_000_000_000
    # Marker segments outside the entropy-coded data (APPn, COM, DQT, DHT, SOF, SOS, DRI, ...). A
    # camera photo has about 10-20; an ICC profile split over its maximum of 255 APP2 segments,
    # or a long extended-XMP packet, a few hundred.
    jpeg_segments: int = 1000
    # PNG chunks in all: libpng writes IDAT chunks of 8 KB, so a 16 MiB PNG has about 2000 of them;
    # 20000 leaves room for encoders that write one IDAT per row (0.1 s of parsing here).
    png_chunks: int = 20_000
    # PNG chunks that are neither pixels nor animation frames (text, colour, time, private
    # chunks): a real file has a few.
    png_metadata_chunks: int = 1000


DEFAULT_LIMITS = StructureLimits()


def check_structure(data: bytes, limits: StructureLimits = DEFAULT_LIMITS) -> None:
    """Refuse (ImageDecodeError 413) a JPEG or PNG whose structure costs far more than its pixels.
    Other data, and files too broken to walk, pass: the decoder has its say on them."""
    if data[:2] == b"\xff\xd8":
        _check_jpeg(data, limits)
    elif data[:8] == _PNG_SIGNATURE:
        _check_png(data, limits)


def _too_costly(what: str) -> ImageDecodeError:
    return ImageDecodeError(f"image structure too costly to decode: {what}", status=413)


def _check_jpeg(data: bytes, limits: StructureLimits) -> None:
    scans = segments = 0
    pixels = 0
    i, end = 2, len(data)
    while i + 1 < end:
        if data[i] != 0xFF:
            return  # lost sync: a corrupt file, for the decoder to refuse
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker == 0xD9:  # EOI: the decoder stops here (an MPO's other frames follow)
            return
        segments += 1
        if segments > limits.jpeg_segments:
            raise _too_costly(f"JPEG has more than {limits.jpeg_segments} marker segments")
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if i + 4 > end:
            return
        length = struct.unpack_from(">H", data, i + 2)[0]
        if marker in _SOF_MARKERS and i + 9 <= end:
            height, width = struct.unpack_from(">HH", data, i + 5)
            pixels = width * height
        i += 2 + length
        if marker != 0xDA:  # SOS: its entropy-coded data follows
            continue
        scans += 1
        if scans > limits.jpeg_scans:
            raise _too_costly(f"progressive JPEG has more than {limits.jpeg_scans} scans "
                              f"(libjpeg's encoders write at most 18)")
        if scans * pixels > limits.jpeg_scan_pixels:
            raise _too_costly(f"progressive JPEG has {scans}+ scans of {pixels:,} pixels, over the limit of "
                              f"{limits.jpeg_scan_pixels:,} scan-pixels (scans x pixels)")
        found = _MARKER_IN_SCAN.search(data, i)
        if found is None:
            return
        i = found.start()


def _check_png(data: bytes, limits: StructureLimits) -> None:
    chunks = metadata = 0
    i, end = len(_PNG_SIGNATURE), len(data)
    while i + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, i)
        chunks += 1
        if chunks > limits.png_chunks:
            raise _too_costly(f"PNG has more than {limits.png_chunks} chunks")
        if kind not in _PNG_IMAGE_CHUNKS:
            metadata += 1
            if metadata > limits.png_metadata_chunks:
                raise _too_costly(f"PNG has more than {limits.png_metadata_chunks} metadata chunks (neither pixels nor frames)")
        if kind == b"IEND":
            return
        i += 12 + length
