"""Request bodies whose structure costs a decoder far more than their size or pixels suggest.

Used by the hostile corpus of the tests and by ``afdserve loadtest --attackers``. Each bomb is
small on the wire and built in memory in well under a second; without the structure limits of
``afdserve.imaging.structure`` each one held a worker for seconds (see that module for the
measured costs). ``status`` is what a server must answer, ``says`` a fragment of its error.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

__all__ = ["CostBomb", "cost_bombs"]


@dataclass(frozen=True)
class CostBomb:
    name: str
    body: bytes
    status: int
    says: str = ""


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **kwargs)
    return out.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _header_segments(data: bytes, marker: int) -> bytes:
    """Every ``marker`` segment of a JPEG's header (up to its first scan), concatenated."""
    out, i = b"", 2
    while data[i + 1] != 0xDA:
        length = struct.unpack_from(">H", data, i + 2)[0]
        if data[i + 1] == marker:
            out += data[i:i + 2 + length]
        i += 2 + length
    return out


def progressive_scan_flood(width: int, height: int, repeats: int) -> bytes:
    """A flat progressive JPEG whose last scan is sent ``repeats`` more times: libjpeg decodes
    every scan over every block, and a repeated refinement scan of a flat image is a few bytes."""
    data = _jpeg(Image.new("RGB", (width, height), (120, 130, 140)), quality=75, progressive=True)
    last_scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + last_scan * repeats + b"\xff\xd9"


def jpeg_after_soi(segments: bytes, image: Image.Image | None = None) -> bytes:
    data = _jpeg(image or Image.new("RGB", (64, 48), (90, 140, 40)), quality=80)
    return data[:2] + segments + data[2:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_with_chunks(before_idat: bytes = b"", after_idat: bytes = b"") -> bytes:
    data = _png(Image.new("RGB", (64, 48), (30, 60, 200)))
    ihdr_end = 8 + 8 + 13 + 4
    iend = len(data) - 12
    return data[:ihdr_end] + before_idat + data[ihdr_end:iend] + after_idat + data[iend:]


def png_split_idat(width: int, height: int, piece: int) -> bytes:
    """A real PNG of noise whose compressed pixels are cut into IDAT chunks of ``piece`` bytes."""
    noise = random.Random(width * height).randbytes
    compressed = zlib.compress(b"".join(b"\x00" + noise(width * 3) for _ in range(height)), 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idats = b"".join(_png_chunk(b"IDAT", compressed[i:i + piece]) for i in range(0, len(compressed), piece))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idats + _png_chunk(b"IEND", b"")


@functools.cache
def cost_bombs() -> tuple[CostBomb, ...]:
    """The bombs a server must refuse from their structure, cheaply, with a 413. Each is under
    2 MB; the floods cost in proportion to their size, so 16 MiB ones cost eight times more."""
    small = _jpeg(Image.new("RGB", (64, 48), (90, 140, 40)), quality=80)
    return (
        # The case: 36 MP of one colour, its last scan repeated 2000 times (49 s before).
        CostBomb("jpeg_progressive_2000_scans_36mp", progressive_scan_flood(6000, 6000, 2000), 413, "scans"),
        # Under the scan count, over the scan-pixels: 40 scans of 35 MP (about 1.6 s before).
        CostBomb("jpeg_progressive_40_scans_35mp", progressive_scan_flood(7000, 5000, 30), 413, "scan-pixels"),
        CostBomb("jpeg_400k_empty_comment_segments", jpeg_after_soi(b"\xff\xfe\x00\x02" * 400_000), 413,
                 "marker segments"),
        CostBomb("jpeg_20k_quantisation_tables", jpeg_after_soi(_header_segments(small, 0xDB) * 10_000), 413,
                 "marker segments"),
        CostBomb("jpeg_2k_huffman_tables", jpeg_after_soi(_header_segments(small, 0xC4) * 2_000), 413,
                 "marker segments"),
        CostBomb("png_100k_private_chunks", png_with_chunks(before_idat=_png_chunk(b"prVt", b"") * 100_000), 413,
                 "chunks"),
        CostBomb("png_100k_text_chunks", png_with_chunks(before_idat=_png_chunk(b"tEXt", b"k\x00v") * 100_000),
                 413, "chunks"),
        CostBomb("png_100k_chunks_after_idat", png_with_chunks(after_idat=_png_chunk(b"tEXt", b"k\x00v") * 100_000),
                 413, "chunks"),
        CostBomb("png_one_byte_idat_chunks", png_split_idat(100, 100, 1), 413, "chunks"),
    )
