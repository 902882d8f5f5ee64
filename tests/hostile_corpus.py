"""A corpus of odd and hostile request bodies for both handlers (tests/test_hostile_inputs.py).

Every body is made here, in memory, from seeded generators and the photos of tests/images.py:
no files on disk, the same bytes on every run. ``corpus()`` returns one :class:`Case` per body with
the status each handler must answer with:

* 200 for every image the service can use (JPEG, PNG, WebP, however unusual);
* 400 for bytes that are not an image, or a broken one (what ``decode_image`` and
  ``request_bytes`` say), 413 for images over the pixel limit (40 MP for the classifier, 4 MP for
  the restorer, both checked from the header), 415 for recognised but unsupported formats.

``says`` is a fragment the JSON ``error`` of a refused request must contain (case-insensitive),
so the error tells the client what was wrong, not only that something was.

How TorchServe 0.12 hands a request to the handler (ts/protocol/otf_message_handler.py, and the
frontend's parsing) is mirrored by :func:`torchserve_row`: a raw body is ``{"body": value}``
where ``value`` is the parsed JSON for ``application/json``, a str for ``text/*`` (bytes when it
is not UTF-8 / not JSON), bytes otherwise; a multipart upload gives one key per form field.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from afdserve.experiments.cost_bombs import cost_bombs, jpeg_after_soi, png_split_idat
from images import (
    encode,
    exif_orientation,
    jpeg_with_sof_size,
    photo,
    png_claiming_size,
    stored_for_orientation,
    webp_vp8x_claiming_size,
)

HANDLERS = ("classifier", "restorer")
CLASSIFIER_MAX_PIXELS = 40_000_000
RESTORER_MAX_PIXELS = 4_000_000
MULTIPART_BOUNDARY = "afdserve-hostile-7e1d2c"


@dataclass(frozen=True)
class Part:
    """One file field of a multipart/form-data upload."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    body: bytes
    content_type: str | None  # the request's Content-Type header; None: none sent
    valid: bool  # a usable image (for some handler): it must be answered, not refused
    expected: dict  # handler ("classifier" / "restorer") -> HTTP status
    says: str | dict = ""  # fragment of the JSON error of a refused request (or handler -> fragment)
    parts: tuple[Part, ...] = field(default=())  # the fields of a multipart body

    def expected_status(self, handler: str = "classifier") -> int:
        return self.expected[handler]

    def says_for(self, handler: str = "classifier") -> str:
        return self.says.get(handler, "") if isinstance(self.says, dict) else self.says

    def __repr__(self) -> str:  # keep pytest ids and failure messages short
        return f"Case({self.name!r}, {len(self.body)} bytes, {self.expected})"


def _both(status: int) -> dict:
    return {handler: status for handler in HANDLERS}


# ------------------------------------------------------------------------------ byte builders


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_bytes(n: int, seed: int) -> bytes:
    return _rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def small_photo(name: str = "chelsea", size: tuple[int, int] = (96, 64)) -> Image.Image:
    return photo(name).resize(size, Image.Resampling.BILINEAR)


def jpeg(im: Image.Image | None = None, **kwargs) -> bytes:
    kwargs.setdefault("quality", 80)
    return encode(small_photo() if im is None else im, "JPEG", **kwargs)


def smooth_noise(width: int, height: int, seed: int, grain: float = 6.0) -> Image.Image:
    """Photo-like content: low-frequency colour noise, upsampled, plus a little sensor grain."""
    rng = _rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 100), max(2, width // 100), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    base += rng.normal(0.0, grain, base.shape).astype(np.float32)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each header segment of a JPEG up to and including SOS."""
    out, i = [], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("lost marker sync")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((marker, i, i + 2 + length))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > 65533:
        raise ValueError("a JPEG segment holds at most 65533 bytes")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert_after_soi(data: bytes, segments: bytes) -> bytes:
    return data[:2] + segments + data[2:]


def jpeg_drop_segments(data: bytes, marker: int) -> bytes:
    out, last = bytearray(data[:2]), 2
    for m, start, end in jpeg_segments(data):
        out += data[last:start]
        if m != marker:
            out += data[start:end]
        last = end
    return bytes(out + data[last:])


def jpeg_cut_after(data: bytes, marker: int) -> bytes:
    """The file up to the end of the first ``marker`` segment (headers only, no scan data)."""
    for m, _, end in jpeg_segments(data):
        if m == marker:
            return data[:end]
    raise ValueError(f"no marker {marker:#x}")


def jpeg_patch_sof(data: bytes, offset: int, value: bytes) -> bytes:
    """Overwrite bytes of the SOF segment's payload (offset from the byte after the length)."""
    for m, start, _ in jpeg_segments(data):
        if m in (0xC0, 0xC1, 0xC2):
            out = bytearray(data)
            out[start + 4 + offset:start + 4 + offset + len(value)] = value
            return bytes(out)
    raise ValueError("no SOF")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_insert_after_ihdr(png: bytes, chunks: bytes) -> bytes:
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def png_deflate_bomb(width: int, height: int) -> bytes:
    """A real, complete greyscale PNG of zeros: tiny on the wire, width x height once decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    rows_per_piece = max(1, (1 << 20) // len(row))
    pieces = []
    for start in range(0, height, rows_per_piece):
        pieces.append(compressor.compress(row * min(rows_per_piece, height - start)))
    pieces.append(compressor.flush())
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(pieces)) + png_chunk(b"IEND", b"")


def multipart(parts: tuple[Part, ...]) -> tuple[bytes, str]:
    out = io.BytesIO()
    for part in parts:
        if MULTIPART_BOUNDARY.encode() in part.data:
            raise ValueError("the boundary occurs in the data")
        out.write(f"--{MULTIPART_BOUNDARY}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{part.name}"; filename="{part.filename}"\r\n'.encode())
        out.write(f"Content-Type: {part.content_type}\r\n\r\n".encode())
        out.write(part.data + b"\r\n")
    out.write(f"--{MULTIPART_BOUNDARY}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


def zip_archive(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def tar_archive(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def minimal_pdf() -> bytes:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def exif_blob(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0, tail: bytes = b"") -> bytes:
    """APP1 payload: 'Exif\\0\\0' + little-endian TIFF header + IFD0 with (tag, type, count, value)."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    ifd += struct.pack("<I", next_ifd)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + tail


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_body(obj) -> bytes:
    return json.dumps(obj).encode()


# ----------------------------------------------------------------------- how TorchServe hands it


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _ts_value(value: bytes, content_type: str | None):
    """What TorchServe's Python backend makes of one input's bytes, from its content type."""
    mime = _mime(content_type)
    if mime == "application/json":
        try:
            return json.loads(value.decode("utf-8"))
        except Exception:
            return value
    if mime.startswith("text"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def torchserve_row(case: Case) -> dict:
    """The request row a TorchServe 0.12 handler receives for ``case``."""
    if case.parts:
        return {part.name: _ts_value(part.data, part.content_type) for part in case.parts}
    return {"body": _ts_value(case.body, case.content_type)}


# ---------------------------------------------------------------------------------- the corpus


@functools.cache
def _corpus() -> tuple[Case, ...]:
    cases: list[Case] = []

    def add(name, category, body, expected, says="", content_type=None, valid=None, parts=()):
        expected = _both(expected) if isinstance(expected, int) else dict(expected)
        if valid is None:
            valid = any(status == 200 for status in expected.values())
        cases.append(Case(name, category, bytes(body), content_type, valid, expected, says, tuple(parts)))

    base = jpeg()  # 96x64 chelsea, q80, baseline
    progressive = jpeg(progressive=True)
    png = encode(small_photo(), "PNG")
    webp = encode(small_photo(), "WEBP", quality=80)

    # --- empty and random --------------------------------------------------------------------
    add("empty", "empty", b"", 400, "empty")
    add("one_byte", "empty", b"\xff", 400, "not an image")
    add("whitespace", "empty", b" \r\n\t ", 400, "not an image")
    add("random_4k", "random", random_bytes(4096, 1), 400, "not an image")
    add("random_1mib", "random", random_bytes(1 << 20, 2), 400, "not an image")
    add("random_after_jpeg_magic", "random", b"\xff\xd8\xff\xe0" + random_bytes(4000, 3), 400,
        "truncated or corrupt jpeg")
    add("random_after_png_signature", "random", PNG_SIGNATURE + random_bytes(4000, 4), 400,
        "truncated or corrupt png")
    add("random_after_riff_webp", "random", b"RIFF" + struct.pack("<I", 4004) + b"WEBP" + random_bytes(4000, 5),
        400, "truncated or corrupt webp")

    # --- text --------------------------------------------------------------------------------
    prose = b"This is not a picture of a cat.\nIt is a sentence about one.\n" * 8
    add("text_plain", "text", prose, 400, "text", content_type="text/plain")
    add("text_unlabelled", "text", prose, 400, "not an image")
    add("html_page", "text", b"<!DOCTYPE html>\n<html><body><img src='cat.jpg'></body></html>\n", 400,
        "text", content_type="text/html; charset=utf-8")
    add("base64_jpeg_as_text_plain", "text", b64(base).encode(), 200, content_type="text/plain")
    add("base64_jpeg_unlabelled", "text", b64(base).encode(), 400, "not an image")
    add("jpeg_labelled_text_plain", "text", base, 200, content_type="text/plain")  # not UTF-8: stays bytes

    # --- truncated and corrupt JPEGs ---------------------------------------------------------
    add("jpeg_truncated_half", "corrupt jpeg", base[: len(base) // 2], 400, "truncated or corrupt jpeg")
    add("jpeg_truncated_in_headers", "corrupt jpeg", base[:300], 400, "truncated or corrupt jpeg")
    add("progressive_truncated_half", "corrupt jpeg", progressive[: len(progressive) // 2], 400,
        "truncated or corrupt jpeg")
    add("jpeg_dqt_removed", "corrupt jpeg", jpeg_drop_segments(base, 0xDB), 400, "truncated or corrupt jpeg")
    add("jpeg_sof_zero_components", "corrupt jpeg", jpeg_patch_sof(base, 5, b"\x00"), 400, "corrupt jpeg")
    add("jpeg_sof_zero_width", "corrupt jpeg", jpeg_patch_sof(base, 3, b"\x00\x00"), 400, "corrupt jpeg")
    sos_end = jpeg_segments(base)[-1][2]
    flipped = bytearray(base)
    for pos in _rng(0).integers(sos_end, len(base) - 2, 20):
        flipped[pos] ^= 0x55
    # libjpeg resynchronises on damaged entropy-coded data: odd pixels, still an image.
    add("jpeg_scan_bytes_flipped", "corrupt jpeg", flipped, 200)
    add("jpeg_scan_random", "corrupt jpeg", base[:sos_end] + random_bytes(len(base) - sos_end - 2, 6) + b"\xff\xd9",
        400, "truncated or corrupt jpeg")
    add("jpeg_missing_eoi", "corrupt jpeg", base[:-2], 400, "truncated or corrupt jpeg")
    add("jpeg_leading_garbage", "corrupt jpeg", b"GARBAGE!" + base, 400, "not an image")

    # --- header-only files -------------------------------------------------------------------
    add("jpeg_soi_only", "header only", b"\xff\xd8", 400, "not an image")
    add("jpeg_headers_to_sof", "header only", jpeg_cut_after(base, 0xC0), 400, "truncated or corrupt jpeg")
    add("jpeg_headers_to_sos", "header only", jpeg_cut_after(base, 0xDA), 400, "truncated or corrupt jpeg")
    add("png_signature_only", "header only", PNG_SIGNATURE, 400, "truncated or corrupt png")
    add("png_ihdr_only", "header only", png[:33], 400, "truncated or corrupt png")
    add("webp_vp8x_only_64px", "header only", webp_vp8x_claiming_size(64, 64), 400, "truncated or corrupt webp")

    # --- decompression bombs -----------------------------------------------------------------
    add("png_claims_30000x30000", "bomb", png_claiming_size(30_000, 30_000), 413, "pixels")
    add("png_claims_8000x8000", "bomb", png_claiming_size(8_000, 8_000), 413, "8000x8000")
    add("png_claims_3000x2000", "bomb", png_claiming_size(3_000, 2_000),
        {"classifier": 400, "restorer": 413},  # under 40 MP: no pixel data -> corrupt; over 4 MP
        {"classifier": "truncated or corrupt png", "restorer": "3000x2000"})
    add("jpeg_claims_30000x30000", "bomb", jpeg_with_sof_size(base, 30_000, 30_000), 413, "pixels")
    add("jpeg_claims_7000x7000", "bomb", jpeg_with_sof_size(base, 7_000, 7_000), 413, "7000x7000")
    add("jpeg_claims_65500x65500", "bomb", jpeg_with_sof_size(base, 65_500, 65_500), 413, "pixels")
    add("webp_claims_16000x16000", "bomb", webp_vp8x_claiming_size(16_000, 16_000), 413, "16000x16000")
    add("png_zeros_10000x10000", "bomb", png_deflate_bomb(10_000, 10_000), 413, "10000x10000")

    # --- huge metadata -----------------------------------------------------------------------
    app_segments = b"".join(jpeg_segment(0xE3 + i % 10, random_bytes(65533, 100 + i)) for i in range(14))
    add("jpeg_14_full_app_segments", "metadata", jpeg_insert_after_soi(base, app_segments), 200)
    add("jpeg_garbage_exif_64k", "metadata",
        jpeg_insert_after_soi(base, jpeg_segment(0xE1, b"Exif\x00\x00" + random_bytes(65000, 7))), 200)
    loop = exif_blob([(0x0112, 3, 1, struct.pack("<H", 6)), (0x8769, 4, 1, struct.pack("<I", 8))], next_ifd=8)
    add("jpeg_exif_ifd_loop", "metadata", jpeg_insert_after_soi(base, jpeg_segment(0xE1, loop)), 200)
    many = exif_blob([(0x010E, 2, 0xFFFFFFFF, struct.pack("<I", 0x7FFFFFF0))] * 5000)[:65533]
    add("jpeg_exif_huge_counts", "metadata", jpeg_insert_after_soi(base, jpeg_segment(0xE1, many)), 200)
    icc = b"".join(jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([i + 1, 8]) + random_bytes(60000, 20 + i))
                   for i in range(8))
    add("jpeg_bogus_icc_480k", "metadata", jpeg_insert_after_soi(base, icc), 200)
    comments = b"".join(jpeg_segment(0xFE, b"A" * 65533) for _ in range(4))
    add("jpeg_comments_256k", "metadata", jpeg_insert_after_soi(base, comments), 200)
    text_chunks = b"".join(png_chunk(b"tEXt", b"Comment\x00" + b"x" * 400_000) for _ in range(3))
    add("png_text_chunks_1_2mb", "metadata", png_insert_after_ihdr(png, text_chunks), 200)
    # Pillow refuses, while opening, a text or ICC chunk that inflates past 1 MB (MAX_TEXT_CHUNK):
    # the pixels are fine, yet the request is a 400 "corrupt PNG".
    ztxt_bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (16 << 20), 9))
    add("png_ztxt_bomb_16mb", "metadata", png_insert_after_ihdr(png, ztxt_bomb), 400, "corrupt png")
    iccp_bomb = png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (16 << 20), 9))
    add("png_iccp_bomb_16mb", "metadata", png_insert_after_ihdr(png, iccp_bomb), 400, "corrupt png")

    # --- structure that costs far more than its pixels (afdserve.imaging.structure) -----------
    for bomb in cost_bombs():
        add(bomb.name, "cost", bomb.body, bomb.status, bomb.says)
    # Floods that cost little (measured): answered, not refused.
    sos_end = jpeg_segments(base)[-1][2]
    restarts = b"".join(bytes([0xFF, 0xD0 + i % 8]) for i in range(500_000))
    add("jpeg_500k_restart_markers_in_scan", "cost", base[:sos_end] + restarts + base[sos_end:], 200)
    webp_body = webp[12:] + b"ABCD\x00\x00\x00\x00" * 200_000
    add("webp_200k_unknown_chunks", "cost", b"RIFF" + struct.pack("<I", len(webp_body) + 4) + b"WEBP" + webp_body,
        200)
    many_frames = [Image.new("RGB", (8, 8), (i % 256, i // 256, 0)) for i in range(2000)]
    add("png_animated_2000_frames", "cost", encode(many_frames[0], "PNG", save_all=True,
                                                   append_images=many_frames[1:]), 415, "animated png")
    add("webp_animated_2000_frames", "cost", encode(many_frames[0], "WEBP", save_all=True,
                                                    append_images=many_frames[1:], lossless=True),
        415, "animated webp")
    # Rich but real structure, inside the limits: served.
    add("jpeg_progressive_cmyk_18_scans", "cost", jpeg(small_photo().convert("CMYK"), progressive=True), 200)
    add("jpeg_progressive_grey", "cost", jpeg(small_photo().convert("L"), progressive=True), 200)
    icc_chunks = b"".join(jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([i + 1, 255]) + b"\x00" * 64)
                          for i in range(255))
    add("jpeg_icc_in_255_segments", "cost", jpeg_after_soi(icc_chunks, small_photo()), 200)
    add("png_1400_small_idat_chunks", "cost", png_split_idat(200, 150, 64), 200)

    # --- animations --------------------------------------------------------------------------
    frames = [small_photo(size=(48, 32)), Image.new("RGB", (48, 32), (200, 20, 20))]
    add("gif_animated", "animation", encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                                            duration=100, loop=0), 415, "unsupported image format gif")
    add("gif_still", "animation", encode(frames[0], "GIF"), 415, "unsupported image format gif")
    add("png_animated_apng", "animation", encode(frames[0], "PNG", save_all=True, append_images=frames[1:],
                                                 duration=100), 415, "animated png")
    add("webp_animated", "animation", encode(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                                             duration=100, lossless=True), 415, "animated webp")

    # --- archives and documents --------------------------------------------------------------
    add("zip_holding_jpeg", "archive", zip_archive("cat.jpg", base), 415, "zip archive")
    add("gzip_of_jpeg", "archive", gzip.compress(base, mtime=0), 400, "not an image")
    add("tar_holding_jpeg", "archive", tar_archive("cat.jpg", base), 400, "not an image")
    add("pdf_document", "archive", minimal_pdf(), 415, "pdf document")

    # --- SVG ---------------------------------------------------------------------------------
    add("svg", "svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                      b'<circle cx="32" cy="32" r="30" fill="red"/></svg>\n', 415, "unsupported image format svg",
        content_type="image/svg+xml")
    add("svg_external_entity", "svg", b'<?xml version="1.0"?>\n<!DOCTYPE svg SYSTEM "file:///etc/passwd">\n'
                                      b'<svg xmlns="http://www.w3.org/2000/svg"/>\n', 415,
        "unsupported image format svg")
    laughs = (b'<?xml version="1.0"?>\n<!DOCTYPE svg [\n <!ENTITY a "lollollollol">\n'
              + b"".join(b' <!ENTITY %c "%s">\n' % (ord("b") + i, b"&%c;" % (ord("a") + i) * 10) for i in range(8))
              + b']>\n<svg xmlns="http://www.w3.org/2000/svg"><text>&i;</text></svg>\n')
    # The sniffer's DOCTYPE pattern stops at the first '>', so an internal subset hides the SVG.
    add("svg_billion_laughs", "svg", laughs, 400, "not an image")

    # --- JSON --------------------------------------------------------------------------------
    add("json_base64_jpeg", "json", json_body({"image": b64(base)}), 200, content_type="application/json")
    add("json_base64_png_under_data", "json", json_body({"data": b64(png)}), 200, content_type="application/json")
    add("json_charset_base64_webp", "json", json_body({"b64": b64(webp)}), 200,
        content_type="application/json; charset=utf-8")
    add("json_without_image", "json", json_body({"text": "hello", "url": "http://example.com/cat.jpg"}), 400,
        "base64", content_type="application/json")
    add("json_invalid_base64", "json", json_body({"image": "this is !!! not base64"}), 400, "base64",
        content_type="application/json")
    add("json_data_url", "json", json_body({"image": "data:image/jpeg;base64," + b64(base)}), 200,
        content_type="application/json")
    add("json_base64_text", "json", json_body({"image": b64(b"just some words, no picture")}), 400,
        "not an image", content_type="application/json")
    add("json_base64_truncated_jpeg", "json", json_body({"image": b64(base[:700])}), 400,
        "truncated or corrupt jpeg", content_type="application/json")
    add("json_base64_bomb", "json", json_body({"image": b64(png_claiming_size(30_000, 30_000))}), 413,
        "pixels", content_type="application/json")
    add("json_image_is_a_number", "json", json_body({"image": 12345}), 400, "base64",
        content_type="application/json")
    add("json_top_level_list", "json", json_body([b64(base)]), 400, "unrecognised", content_type="application/json")
    add("json_malformed", "json", b'{"image": "' + b64(base)[:200].encode(), 400, "not an image",
        content_type="application/json")

    # --- multipart uploads -------------------------------------------------------------------
    def form(name, parts, expected, says=""):
        body, content_type = multipart(tuple(parts))
        add(name, "multipart", body, expected, says, content_type=content_type, parts=parts)

    form("multipart_jpeg_as_file", [Part("file", "cat.jpg", "image/jpeg", base)], 200)
    form("multipart_png_as_data", [Part("data", "cat.png", "image/png", png)], 200)
    form("multipart_octet_stream_webp", [Part("upload", "cat.bin", "application/octet-stream", webp)], 200)
    form("multipart_empty_file", [Part("file", "empty.jpg", "image/jpeg", b"")], 400, "empty")
    # A text/plain part reaches the handler as a str.
    form("multipart_text_file", [Part("file", "notes.txt", "text/plain", prose)], 400, "text")
    form("multipart_zip", [Part("file", "cats.zip", "application/zip", zip_archive("cat.jpg", base))], 415,
         "zip archive")
    form("multipart_bomb", [Part("file", "big.png", "image/png", png_claiming_size(30_000, 30_000))], 413,
         "pixels")

    # --- valid but unusual -------------------------------------------------------------------
    add("jpeg_baseline", "valid", base, 200)
    add("jpeg_progressive", "valid", progressive, 200)
    add("jpeg_cmyk_adobe", "valid", jpeg(small_photo().convert("CMYK"), quality=90), 200)
    add("jpeg_grayscale", "valid", jpeg(small_photo("camera", (80, 80))), 200)
    add("jpeg_444_q100", "valid", jpeg(quality=100, subsampling=0), 200)
    add("jpeg_q1", "valid", jpeg(quality=1), 200)
    add("jpeg_1x1", "valid", jpeg(Image.new("RGB", (1, 1), (200, 30, 90))), 200)
    add("png_1x1", "valid", encode(Image.new("RGB", (1, 1), (10, 200, 90)), "PNG"), 200)
    add("jpeg_3000x2", "valid", jpeg(smooth_noise(3000, 2, seed=8)), 200)
    add("png_1x2500", "valid", encode(smooth_noise(1, 2500, seed=9), "PNG"), 200)
    add("jpeg_2400x16", "valid", jpeg(smooth_noise(2400, 16, seed=10)), 200)
    add("jpeg_4000x3000_photo", "valid", jpeg(smooth_noise(4000, 3000, seed=11), quality=80),
        {"classifier": 200, "restorer": 413}, {"restorer": "4000x3000"}, valid=True)
    for orientation in (3, 6, 8):
        upright = small_photo(size=(72, 48))
        add(f"jpeg_exif_orientation_{orientation}", "valid",
            jpeg(stored_for_orientation(upright, orientation), exif=exif_orientation(orientation)), 200)
    add("jpeg_exif_orientation_out_of_range", "valid", jpeg(exif=exif_orientation(99)), 200)
    add("jpeg_trailing_random_bytes", "valid", base + random_bytes(8192, 12), 200)
    add("jpeg_two_concatenated", "valid", base + jpeg(small_photo("coffee")), 200)
    add("mpo_two_frames", "valid", encode(small_photo(), "MPO", save_all=True,
                                          append_images=[small_photo("coffee")], quality=85), 200)
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 60, dtype=np.uint8)[None, :]
    add("png_rgba", "valid", encode(Image.fromarray(rgba), "PNG"), 200)
    add("png_16bit_grey", "valid", encode(Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 21)
                                                          .reshape(48, 64)), "PNG"), 200)
    add("png_palette_transparency", "valid", encode(small_photo().quantize(16), "PNG", transparency=0), 200)
    add("png_interlaced_adam7", "valid", _adam7_png(), 200)
    add("webp_lossy", "valid", webp, 200)
    add("webp_lossless_alpha", "valid", encode(Image.fromarray(rgba), "WEBP", lossless=True), 200)
    return tuple(cases)


def _adam7_png() -> bytes:
    """An interlaced (Adam7) 16x12 RGB PNG, built by hand (Pillow only writes non-interlaced)."""
    rgb = np.asarray(small_photo(size=(16, 12)))
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", 16, 12, 8, 2, 0, 0, 1)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def corpus() -> list[Case]:
    """The hostile and unusual request bodies, each with the status both handlers must answer."""
    return list(_corpus())
