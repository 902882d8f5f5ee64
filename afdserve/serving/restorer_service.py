"""JPEG artefact removal as a service, without TorchServe: request bodies in, (status, image bytes
or JSON error) out. The restorer handler is a thin adapter over ``RestorerService``.

Output: PNG by default (lossless: the restored pixels as they are); JPEG when the caller asks with
the ``X-Output-Format: jpeg`` header (or a ``format=jpeg`` field of a multipart upload), at the
quality given by ``X-JPEG-Quality`` / ``quality`` (default 95). TorchServe 0.12 does not pass URL
query parameters to handlers, so those cannot choose it.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from afdserve.imaging.decode import ImageDecodeError, decode_image
from afdserve.models.swinir import SwinIRConfig, load_swinir_checkpoint
from afdserve.serving.restoration import TileSpec, restore_tensor, to_tensor, to_uint8
from afdserve.serving.classifier_service import BadRequest, request_bytes

log = logging.getLogger(__name__)

# A restorer costs ~10^5-10^7 multiply-adds per pixel (the classifier's cost does not grow with
# the photo): 4 megapixels take tens of seconds on a CPU, so the limit is far below the
# classifier's 40 MP. Configurable per archive (model-config.yaml, afdserve.max_pixels).
DEFAULT_RESTORER_MAX_PIXELS = 4_000_000
DEFAULT_JPEG_QUALITY = 95


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    jpeg_quality: int | None = None  # of the request's file (None: PNG/WebP or an error)

    @classmethod
    def error(cls, status: int, message: str) -> "Reply":
        return cls(status, json.dumps({"error": message}).encode(), "application/json")


@dataclass(frozen=True)
class OutputFormat:
    format: str = "png"  # "png" or "jpeg"
    quality: int = DEFAULT_JPEG_QUALITY


def _first(*values):
    return next((v for v in values if v not in (None, b"", "")), None)


def _text(value) -> str | None:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    return None if value is None else str(value).strip()


def output_format(row, headers: dict | None) -> OutputFormat:
    """The caller's choice of output encoding, from a header or a multipart form field."""
    headers = {str(k).lower(): v for k, v in (headers or {}).items()}
    params = row if isinstance(row, dict) else {}
    fmt = _text(_first(headers.get("x-output-format"), params.get("format"))) or "png"
    fmt = fmt.lower()
    if fmt in ("jpg", "image/jpeg"):
        fmt = "jpeg"
    if fmt == "image/png":
        fmt = "png"
    if fmt not in ("png", "jpeg"):
        raise BadRequest(f"output format must be png or jpeg, got {fmt!r}")
    quality_text = _text(_first(headers.get("x-jpeg-quality"), params.get("quality")))
    quality = DEFAULT_JPEG_QUALITY
    if quality_text is not None:
        if fmt != "jpeg":
            raise BadRequest("a JPEG quality was given but the output format is png: add format=jpeg")
        try:
            quality = int(quality_text)
        except ValueError:
            raise BadRequest(f"JPEG quality must be an integer 1-100, got {quality_text!r}") from None
        if not 1 <= quality <= 100:
            raise BadRequest(f"JPEG quality must be 1-100, got {quality}")
    return OutputFormat(fmt, quality)


def encode(rgb: np.ndarray, out: OutputFormat) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if out.format == "jpeg":
        Image.fromarray(rgb).save(buf, format="JPEG", quality=out.quality)
        return buf.getvalue(), "image/jpeg"
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)  # speed over a few % of size
    return buf.getvalue(), "image/png"


@dataclass
class _Job:
    idx: int
    image: torch.Tensor  # 1 x 3 x H x W in [0, 1]
    out: OutputFormat
    jpeg_quality: int | None


def load_restorer(model_dir, settings: dict) -> torch.nn.Module:
    """The SwinIR of an unpacked archive; ``settings``: weights file name and SwinIR config."""
    config = SwinIRConfig.from_record(settings["swinir"]) if settings.get("swinir") else None
    return load_swinir_checkpoint(Path(model_dir) / settings.get("weights", "model.pt"), config)


class RestorerService:
    def __init__(self, model: torch.nn.Module, model_name: str, version: str, device="cpu",
                 max_pixels: int = DEFAULT_RESTORER_MAX_PIXELS, tiles: TileSpec = TileSpec()):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.model_name, self.version = model_name, version
        self.max_pixels = max_pixels
        self.tiles = tiles

    @classmethod
    def from_model_dir(cls, model_dir, settings: dict, model_name: str, version: str,
                       device="cpu") -> "RestorerService":
        """Load from an unpacked archive; ``settings`` is the ``afdserve`` section of its
        model-config.yaml (weights file, SwinIR config, tiles, limits)."""
        model = load_restorer(model_dir, settings)
        tiles = TileSpec(**settings.get("tiles", {}))
        return cls(model, model_name, version, device,
                   max_pixels=int(settings.get("max_pixels", DEFAULT_RESTORER_MAX_PIXELS)), tiles=tiles)

    def prepare(self, row, headers: dict | None) -> tuple[torch.Tensor, OutputFormat, int | None]:
        out = output_format(row, headers)
        decoded = decode_image(request_bytes(row), max_pixels=self.max_pixels)
        return to_tensor(decoded.image), out, decoded.quality

    @torch.inference_mode()
    def restore_batch(self, images: list[torch.Tensor]) -> list[np.ndarray]:
        """Images no larger than a tile and of one size go through in one forward pass; larger
        ones are restored alone, their tiles batched."""
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            if h <= self.tiles.size and w <= self.tiles.size:
                groups.setdefault((h, w), []).append(i)
            else:
                results[i] = to_uint8(restore_tensor(self.model, image.to(self.device), self.tiles))
        for members in groups.values():
            for start in range(0, len(members), self.tiles.batch):
                chunk = members[start:start + self.tiles.batch]
                batch = torch.cat([images[i] for i in chunk]).to(self.device)
                restored = self.model(batch).clamp_(0, 1)
                for i, one in zip(chunk, restored):
                    results[i] = to_uint8(one[None])
        return results

    def handle(self, rows: list, headers: list[dict] | None = None) -> list[Reply]:
        """Answer every request of a batch; a bad one gets its own 4xx, the others 200."""
        headers = headers or [{}] * len(rows)
        replies: list[Reply | None] = [None] * len(rows)
        jobs: list[_Job] = []
        for idx, row in enumerate(rows):
            try:
                jobs.append(_Job(idx, *self.prepare(row, headers[idx])))
            except (BadRequest, ImageDecodeError) as err:
                replies[idx] = Reply.error(err.status, str(err))
            except Exception:  # our bug, not the caller's: fail this request alone
                log.exception("preparing request %d failed", idx)
                replies[idx] = Reply.error(500, "internal error while preparing the image")
        if jobs:
            try:
                restored = self.restore_batch([job.image for job in jobs])
            except Exception:
                # Our bug, not the callers': find the request it belongs to, fail it alone.
                log.exception("restoring a batch of %d failed; retrying one by one", len(jobs))
                restored = []
                for job in jobs:
                    try:
                        restored.extend(self.restore_batch([job.image]))
                    except Exception:
                        log.exception("restoring request %d failed", job.idx)
                        restored.append(None)
            for job, rgb in zip(jobs, restored):
                if rgb is None:
                    replies[job.idx] = Reply.error(500, "internal error while restoring the image")
                    continue
                body, content_type = encode(rgb, job.out)
                replies[job.idx] = Reply(200, body, content_type, job.jpeg_quality)
        return replies
