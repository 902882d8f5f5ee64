"""Classification as a service, without TorchServe: request bodies in, (status, JSON) out.

The TorchServe handler is a thin adapter over ``ClassifierService``; tests and benchmarks call the
same object in-process, so the served answers are the in-process answers.
"""

import base64
import binascii
import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

import torch

from afdserve.imaging.decode import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, decode_image
from afdserve.imaging.on_device import decode_jpeg_on_device, prepare_on_device
from afdserve.imaging.preprocess import REDUCED_DECODE_SHORTER_SIDE, ModelInput, collate, prepare
from afdserve.models.afd import AFDConfig
from afdserve.models.classifier import AFDClassifier, load_deployed

log = logging.getLogger(__name__)

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Keys under which a JSON body may carry a base64-encoded image.
JSON_IMAGE_KEYS = ("image", "data", "b64")


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Answer:
    status: int
    body: dict

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def request_bytes(row) -> bytes:
    """The image bytes of one TorchServe request row (raw body, form field or JSON base64)."""
    value = row
    if isinstance(row, dict):
        # Raw bodies arrive as "body" (or "data"); a multipart form field under its own name.
        value = row.get("data") if row.get("data") is not None else row.get("body")
        if value is None:
            # Beside small option fields (the restorer's "format", "quality"), the file is the largest.
            value = max((v for v in row.values() if isinstance(v, (bytes, bytearray))), key=len, default=None)
        if value is None and any(isinstance(v, str) and len(v) > 8 for v in row.values()):
            # A form part sent as text/plain arrives decoded: say it is text, not "empty".
            raise BadRequest("the uploaded file is text, not an image: send the image file's bytes")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):  # a JSON body TorchServe already parsed
        encoded = next((value[k] for k in JSON_IMAGE_KEYS if isinstance(value.get(k), str)), None)
        if encoded is None:
            raise BadRequest(f"JSON body must carry a base64-encoded image under one of {list(JSON_IMAGE_KEYS)}")
        if encoded.startswith("data:") and ";base64," in encoded[:100]:
            encoded = encoded.split(",", 1)[1]  # a data URL, as browsers make them
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the JSON image field is not valid base64") from None
    if isinstance(value, str):
        # KServe's v1 envelope hands each instance's "data" over as the base64 text itself.
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the body is text, not an image: send the image file's bytes") from None
    if value is None:
        raise BadRequest("empty request body")
    raise BadRequest("unrecognised request body")


class ClassifierService:
    """``restorer``: an optional restorer network every image goes through before the classifier
    (restore-then-classify), with its tiling."""

    def __init__(self, model: AFDClassifier, labels: dict, model_name: str, version: str,
                 device: str | torch.device = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS, top_k: int = 5,
                 restorer: torch.nn.Module | None = None, tiles=None, precision: str = "float32",
                 decode_on_device: bool = False, prepare_threads: int = 1):
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        # Channels-last: the depthwise convolutions of Lite0 and AFD's U-Net run 1.2-1.7x faster in
        # it on CPU (scripts/bench_model_forms.py), with the same probabilities to 1e-6.
        self.model = model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last).eval()
        self.labels = labels
        self.model_name = model_name
        self.version = version
        self.max_pixels = max_pixels
        self.top_k = top_k
        self.restorer = restorer.to(device).eval() if restorer is not None else None
        self.tiles = tiles
        # Decode JPEGs and prepare them with torch on the model's device (nvJPEG on a GPU): see
        # afdserve.imaging.on_device. Restore-then-classify keeps Pillow: its restorer takes images.
        self.decode_on_device = decode_on_device and restorer is None
        self.prepare_threads = prepare_threads
        self._prepare_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_model_dir(cls, model_dir, settings: dict, model_name: str, version: str,
                       device="cpu") -> "ClassifierService":
        """Load from an unpacked archive: ``settings`` is the ``afdserve`` section of its
        model-config.yaml (weights file, AFD config, limits)."""
        model_dir = Path(model_dir)
        afd = AFDConfig.from_dict(settings["afd"]) if settings.get("afd") else None
        model = load_deployed(afd, model_dir / settings.get("weights", "model.pt"))
        labels = json.loads((model_dir / "index_to_name.json").read_text())
        restorer = tiles = None
        max_pixels = DEFAULT_MAX_PIXELS
        if settings.get("restorer"):
            from afdserve.serving.restoration import TileSpec
            from afdserve.serving.restorer_service import DEFAULT_RESTORER_MAX_PIXELS, load_restorer

            restorer = load_restorer(model_dir, settings["restorer"])
            tiles = TileSpec(**settings["restorer"].get("tiles", {}))
            max_pixels = DEFAULT_RESTORER_MAX_PIXELS  # the restorer's cost grows with the pixels
        device_type = torch.device(device).type
        precision = (settings.get("precision") or {}).get(device_type, "float32")
        return cls(model, labels, model_name, version, device,
                   max_pixels=int(settings.get("max_pixels", max_pixels)),
                   top_k=int(settings.get("top_k", 5)), restorer=restorer, tiles=tiles, precision=precision,
                   decode_on_device=bool(settings.get("gpu_decode")) and device_type == "cuda",
                   prepare_threads=int(settings.get("prepare_threads") or 1))

    def decode(self, body: bytes) -> DecodedImage:
        # Only the plain backbone can take a reduced decode: the drift map and the restorer both
        # need every pixel.
        full_size = self.model.afd is not None or self.restorer is not None
        return decode_image(body, max_pixels=self.max_pixels,
                            min_shorter_side=None if full_size else REDUCED_DECODE_SHORTER_SIDE)

    def prepare(self, row) -> ModelInput:
        body = request_bytes(row)
        afd = self.model.afd
        if self.decode_on_device and (afd is None or afd.config.dct_source == "file-grid"):
            on_device = decode_jpeg_on_device(body, self.device, self.max_pixels)
            if on_device is not None:
                return prepare_on_device(on_device, with_dct=afd is not None)
        decoded = self.decode(body)
        if self.restorer is not None:
            from afdserve.serving.restoration import restore

            with torch.inference_mode():
                restored = restore(self.restorer, decoded.image, self.tiles, self.device)
            # The quality stays the file's own: it describes what the client sent.
            decoded = dataclasses.replace(decoded, image=Image.fromarray(restored))
        return prepare(decoded, with_dct=afd is not None,
                       dct_source=afd.config.dct_source if afd is not None else "file-grid")

    @torch.inference_mode()
    def predict(self, inputs: list[ModelInput]) -> torch.Tensor:
        """Class probabilities (N, 1000) for a batch, computed in one forward pass."""
        batch = {k: self._on_device(v) for k, v in collate(inputs).items()}
        return self.model(**batch).float().softmax(dim=-1).cpu()

    def _on_device(self, value: torch.Tensor | None) -> torch.Tensor | None:
        if value is None:
            return None
        if value.dim() == 4:  # images and DCT maps: in the model's precision and memory layout
            return value.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        return value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)

    def answer(self, probabilities: torch.Tensor, quality: int | None) -> dict:
        top = probabilities.topk(self.top_k)
        return {
            "model": self.model_name,
            "version": self.version,
            "jpeg_quality": quality,
            "top_k": [
                {"index": i, "synset": self.labels[str(i)][0], "label": self.labels[str(i)][1],
                 "probability": round(p, 6)}
                for p, i in zip(top.values.tolist(), top.indices.tolist())
            ],
        }

    def handle(self, rows: list) -> list[Answer]:
        """Answer every request of a batch; a bad one gets its own 4xx, the others 200."""
        prepared = self._prepare_all(rows)
        good = [(idx, inp) for idx, inp in enumerate(prepared) if isinstance(inp, ModelInput)]
        answers: list = prepared
        if good:
            probabilities = self.predict([inp for _, inp in good])
            for (idx, inp), probs in zip(good, probabilities):
                answers[idx] = Answer(200, self.answer(probs, inp.quality))
        return answers

    def _prepare_all(self, rows: list) -> list:
        """Each row's ModelInput, or the Answer that refuses it. With ``prepare_threads`` > 1 the
        images of a batch are prepared side by side: decoding, resizing and the DCT are Pillow and
        numpy, which release the GIL. In-process on 2 idle cores that took a batch of four 500x375
        JPEGs from 1.9 to 1.3 ms per image (AFD); served on the same 2 cores, which TorchServe's
        frontend shares, it gained nothing (results/bench/prepare-threads), so it is opt-in. The
        restorer already runs torch on every core, and the device path queues work on the device:
        both prepare one image at a time."""
        threads = self.prepare_threads
        if len(rows) < 2 or threads < 2 or self.restorer is not None or self.decode_on_device:
            return [self._prepare_or_refuse(idx, row) for idx, row in enumerate(rows)]
        if self._prepare_pool is None:
            self._prepare_pool = ThreadPoolExecutor(threads, thread_name_prefix="prepare")
        return list(self._prepare_pool.map(self._prepare_or_refuse, range(len(rows)), rows))

    def _prepare_or_refuse(self, idx: int, row) -> "ModelInput | Answer":
        try:
            return self.prepare(row)
        except (BadRequest, ImageDecodeError) as err:
            return Answer(err.status, {"error": str(err)})
        except Exception:  # our bug, not the caller's: fail this request alone
            log.exception("preparing request %d failed", idx)
            return Answer(500, {"error": "internal error while preparing the image"})
