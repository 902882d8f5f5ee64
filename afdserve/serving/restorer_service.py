"""JPEG artefact removal as a service, without TorchServe: request bodies in, (status, image bytes
or JSON error) out. The restorer handler is a thin adapter over ``RestorerService``.

Output: PNG by default (lossless: the restored pixels as they are); JPEG when the caller asks with
the ``X-Output-Format: jpeg`` header (or a ``format=jpeg`` field of a multipart upload), at the
quality given by ``X-JPEG-Quality`` / ``quality`` (default 95). TorchServe 0.12 does not pass URL
query parameters to handlers, so those cannot choose it. The stages are the service contract's
(``afdserve.serving.service``): decode, batch, predict, encode.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from afdserve.imaging.budget import BudgetExceeded, CpuBudget
from afdserve.imaging.decode import decode_image
from afdserve.models.swinir import SwinIRConfig, load_swinir_checkpoint
from afdserve.serving.precision import torch_dtype
from afdserve.serving.requests import BadRequest, Reply, request_bytes
from afdserve.serving.restoration import RestoreCost, TileSpec, to_tensor, to_uint8
from afdserve.serving.service import Service
from afdserve.serving.settings import DEFAULT_DECODE_BUDGET_S, DEFAULT_RESTORE_BUDGET_S, ArchiveSettings

log = logging.getLogger(__name__)

# A restorer costs ~10^5-10^7 multiply-adds per pixel (the classifier's cost does not grow with
# the photo): 4 megapixels take tens of seconds on a CPU, so the limit is far below the
# classifier's 40 MP. Configurable per archive (model-config.yaml, afdserve.max_pixels).
DEFAULT_RESTORER_MAX_PIXELS = 4_000_000
DEFAULT_JPEG_QUALITY = 95


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


def encode_image(rgb: np.ndarray, out: OutputFormat) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if out.format == "jpeg":
        Image.fromarray(rgb).save(buf, format="JPEG", quality=out.quality)
        return buf.getvalue(), "image/jpeg"
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)  # speed over a few % of size
    return buf.getvalue(), "image/png"


@dataclass
class _Job:
    image: torch.Tensor  # 1 x 3 x H x W in [0, 1]
    out: OutputFormat
    jpeg_quality: int | None


def load_restorer(model_dir, settings: ArchiveSettings) -> torch.nn.Module:
    """The SwinIR of an unpacked archive; ``settings``: weights file name and SwinIR config."""
    config = SwinIRConfig.from_record(settings.swinir) if settings.swinir else None
    return load_swinir_checkpoint(Path(model_dir) / settings.weights, config)


class RestorerService(Service):
    """Each request has two CPU budgets: ``decode_budget_s`` for decoding it (on the handler's
    thread) and ``restore_budget_s`` for restoring it (the worker's process); past either it is
    answered 413 and the rest of the batch goes on."""

    PREDICT_FAILED = "internal error while restoring the image"

    def __init__(self, model: torch.nn.Module, model_name: str, version: str, device="cpu",
                 max_pixels: int = DEFAULT_RESTORER_MAX_PIXELS, tiles: TileSpec = TileSpec(),
                 decode_budget_s: float = DEFAULT_DECODE_BUDGET_S,
                 restore_budget_s: float = DEFAULT_RESTORE_BUDGET_S, precision: str = "float32"):
        self.dtype = torch_dtype(precision, device)  # one of settings.CPU_PRECISIONS
        self.model = model.to(device, dtype=self.dtype).eval()
        log.info("%s %s restores in %s on %s (archive's setting: %s)", model_name, version,
                 str(self.dtype).removeprefix("torch."), device, precision)
        self.device = torch.device(device)
        self.model_name, self.version = model_name, version
        self.max_pixels = max_pixels
        self.tiles = tiles
        self.decode_budget_s = decode_budget_s
        self.restore_cost = RestoreCost(tiles, restore_budget_s)

    @classmethod
    def from_model_dir(cls, model_dir, settings: ArchiveSettings | dict, model_name: str, version: str,
                       device="cpu") -> "RestorerService":
        """Load from an unpacked archive with its settings (weights file, SwinIR config, tiles,
        limits)."""
        settings = ArchiveSettings.coerce(settings)
        model = load_restorer(model_dir, settings)
        return cls(model, model_name, version, device,
                   max_pixels=settings.max_pixels or DEFAULT_RESTORER_MAX_PIXELS, tiles=TileSpec(**settings.tiles),
                   decode_budget_s=settings.decode_budget_s or DEFAULT_DECODE_BUDGET_S,
                   restore_budget_s=settings.restore_budget_s or DEFAULT_RESTORE_BUDGET_S,
                   precision=settings.precision_for(torch.device(device).type))

    def decode(self, row, headers: dict | None = None) -> _Job:
        out = output_format(row, headers)
        budget = CpuBudget(self.decode_budget_s)
        decoded = decode_image(request_bytes(row, headers), max_pixels=self.max_pixels, budget=budget)
        image = to_tensor(decoded.image)
        budget.check("decoding the image")
        return _Job(image, out, decoded.quality)

    def batch(self, jobs: list[_Job]) -> list[torch.Tensor]:
        return [job.image for job in jobs]

    @torch.inference_mode()
    def predict(self, images: list[torch.Tensor]) -> list[np.ndarray | BudgetExceeded]:
        """Images small enough for one pass (``TileSpec.whole``) and of one size go through
        together, up to that many pixels per forward; larger ones are restored alone in tiles,
        each within its CPU budget (an image that overruns it gets its BudgetExceeded in place of
        pixels)."""
        results: list[np.ndarray | BudgetExceeded | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            if self.tiles.fits_whole(h, w):
                groups.setdefault((h, w), []).append(i)
                continue
            try:
                results[i] = to_uint8(self.restore_cost.restore_tensor(self.model, image.to(self.device)))
            except BudgetExceeded as err:
                results[i] = err
        for (h, w), members in groups.items():
            per_forward = max(1, self.tiles.whole // (h * w))
            for start in range(0, len(members), per_forward):
                chunk = members[start:start + per_forward]
                batch = torch.cat([images[i] for i in chunk]).to(self.device)
                restored = self.model(batch).clamp_(0, 1)
                for i, one in zip(chunk, restored):
                    results[i] = to_uint8(one[None])
        return results

    def encode(self, job: _Job, rgb: np.ndarray | BudgetExceeded) -> Reply:
        if isinstance(rgb, BudgetExceeded):
            return Reply.error(rgb.status, str(rgb))
        body, content_type = encode_image(rgb, job.out)
        return Reply(200, body, content_type, job.jpeg_quality)
