"""Classification as a service, without TorchServe: request bodies in, (status, JSON) out.

The TorchServe handler is a thin adapter over ``ClassifierService``; tests and benchmarks call the
same object in-process, so the served answers are the in-process answers. The stages are the
service contract's (``afdserve.serving.service``): decode, batch, predict, encode.
"""

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

import torch

from afdserve.imaging.budget import CpuBudget
from afdserve.imaging.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from afdserve.imaging.on_device import decode_jpeg_on_device, prepare_on_device
from afdserve.imaging.preprocess import ModelInput, collate, prepare, reduced_decode_shorter_side
from afdserve.models.afd import AFDConfig
from afdserve.models.backbones import LITE0, BackboneSpec
from afdserve.models.classifier import Classifier, load_deployed
from afdserve.serving.precision import torch_dtype
from afdserve.serving.requests import Reply, request_bytes
from afdserve.serving.restoration import RestoreCost, TileSpec
from afdserve.serving.restorer_service import DEFAULT_RESTORER_MAX_PIXELS, load_restorer
from afdserve.serving.service import Service
from afdserve.serving.settings import DEFAULT_DECODE_BUDGET_S, DEFAULT_RESTORE_BUDGET_S, ArchiveSettings

log = logging.getLogger(__name__)


class ClassifierService(Service):
    """``restorer``: an optional restorer network every image goes through before the classifier
    (restore-then-classify), with its tiling and its own CPU budget per image (``restore_cost``).
    ``decode_budget_s``: the CPU seconds decoding and preparing one request may take (see
    afdserve.imaging.budget); past it that request is answered 413 and the batch goes on."""

    PREDICT_FAILED = "internal error while classifying the image"

    def __init__(self, model: Classifier, labels: dict, model_name: str, version: str,
                 device: str | torch.device = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS, top_k: int = 5,
                 restorer: torch.nn.Module | None = None, tiles=None, precision: str = "float32",
                 restorer_precision: str = "float32",
                 decode_on_device: bool = False, prepare_threads: int = 1,
                 decode_budget_s: float = DEFAULT_DECODE_BUDGET_S, restore_cost: RestoreCost | None = None):
        self.device = torch.device(device)
        self.dtype = torch_dtype(precision, self.device)  # one of afdserve.serving.settings.CPU_PRECISIONS
        # The model carries its backbone's spec (model.spec): input size, resize, normalisation.
        # Channels-last: the depthwise convolutions of Lite0 and AFD's U-Net run 1.2-1.7x faster in
        # it on CPU (scripts/bench_model_forms.py), with the same probabilities to 1e-6.
        self.model = model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last).eval()
        self.labels = labels
        self.model_name = model_name
        self.version = version
        self.max_pixels = max_pixels
        self.top_k = top_k
        # The restorer has a precision of its own: bfloat16 halves its time where the CPU has it,
        # while the classifier's top-1 moves by up to 0.7 points in it (archive.RESTORE_CLASSIFY_SERVING).
        self.restorer = None
        if restorer is not None:
            restorer_dtype = torch_dtype(restorer_precision, self.device)
            self.restorer = restorer.to(device, dtype=restorer_dtype).eval()
            log.info("%s %s restores in %s and classifies in %s on %s (archive's setting: %s)", model_name, version,
                     str(restorer_dtype).removeprefix("torch."), str(self.dtype).removeprefix("torch."), device,
                     restorer_precision)
        self.tiles = tiles
        self.decode_budget_s = decode_budget_s
        if restorer is not None and restore_cost is None:
            restore_cost = RestoreCost(tiles or TileSpec())
        self.restore_cost = restore_cost
        # Decode JPEGs and prepare them with torch on the model's device (nvJPEG on a GPU): see
        # afdserve.imaging.on_device. Restore-then-classify keeps Pillow: its restorer takes images.
        self.decode_on_device = decode_on_device and restorer is None
        self.prepare_threads = prepare_threads
        self._prepare_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_model_dir(cls, model_dir, settings: ArchiveSettings | dict, model_name: str, version: str,
                       device="cpu") -> "ClassifierService":
        """Load from an unpacked archive with its settings (weights file, backbone spec, AFD
        config, limits). Archives from before backbones were described hold Lite0."""
        model_dir = Path(model_dir)
        settings = ArchiveSettings.coerce(settings)
        afd = AFDConfig.from_dict(settings.afd) if settings.afd else None
        # Archives built before they recorded their backbone hold Lite0.
        backbone = BackboneSpec.from_dict(settings.backbone) if settings.backbone else LITE0
        model = load_deployed(afd, model_dir / settings.weights, backbone=backbone)
        labels = json.loads((model_dir / "index_to_name.json").read_text())
        device_type = torch.device(device).type
        restorer = tiles = restore_cost = None
        restorer_precision = "float32"
        max_pixels = DEFAULT_MAX_PIXELS
        if settings.restorer is not None:
            restorer = load_restorer(model_dir, settings.restorer)
            # Archives from before the restorer had a precision of its own say none: float32.
            restorer_precision = settings.restorer.precision_for(device_type)
            tiles = TileSpec(**settings.restorer.tiles)
            restore_cost = RestoreCost(tiles, settings.restore_budget_s or DEFAULT_RESTORE_BUDGET_S)
            max_pixels = DEFAULT_RESTORER_MAX_PIXELS  # the restorer's cost grows with the pixels
        return cls(model, labels, model_name, version, device,
                   max_pixels=settings.max_pixels or max_pixels, top_k=settings.top_k, restorer=restorer,
                   tiles=tiles, precision=settings.precision_for(device_type), restorer_precision=restorer_precision,
                   decode_on_device=settings.gpu_decode and device_type == "cuda",
                   prepare_threads=settings.prepare_threads,
                   decode_budget_s=settings.decode_budget_s or DEFAULT_DECODE_BUDGET_S, restore_cost=restore_cost)

    def read_image(self, body: bytes, budget: CpuBudget | None = None) -> DecodedImage:
        # Only the plain backbone can take a reduced decode: the drift map and the restorer both
        # need every pixel.
        full_size = self.model.afd is not None or self.restorer is not None
        reduced = None if full_size else reduced_decode_shorter_side(self.model.spec)
        return decode_image(body, max_pixels=self.max_pixels, min_shorter_side=reduced, budget=budget)

    def decode(self, row, headers: dict | None = None) -> ModelInput:
        """One request's model input, within its CPU budget (this thread's time: with
        ``prepare_threads`` each image is prepared on a thread of its own)."""
        budget = CpuBudget(self.decode_budget_s)
        body = request_bytes(row, headers)
        afd = self.model.afd
        if self.decode_on_device and (afd is None or afd.config.dct_source == "file-grid"):
            on_device = decode_jpeg_on_device(body, self.device, self.max_pixels)
            if on_device is not None:
                return prepare_on_device(on_device, with_dct=afd is not None, spec=self.model.spec)
        decoded = self.read_image(body, budget)
        budget.check("decoding the image")
        if self.restorer is not None:
            with torch.inference_mode():
                restored = self.restore_cost.restore(self.restorer, decoded.image, self.device)
            # The quality stays the file's own: it describes what the client sent.
            decoded = dataclasses.replace(decoded, image=Image.fromarray(restored))
            budget = CpuBudget(self.decode_budget_s)  # the restorer had a budget of its own
        prepared = prepare(decoded, with_dct=afd is not None,
                           dct_source=afd.config.dct_source if afd is not None else "file-grid", spec=self.model.spec)
        budget.check("preparing the image")
        return prepared

    def batch(self, inputs: list[ModelInput]) -> dict:
        """The model's keyword arguments for a batch, on its device in its precision. Inputs may
        come from both decoders (a GPU worker prepares a JPEG on the GPU and a PNG on the CPU),
        so each moves to the device before they are stacked."""
        inputs = [dataclasses.replace(i, image=i.image.to(self.device),
                                      dct=None if i.dct is None else i.dct.to(self.device)) for i in inputs]
        return {k: self._on_device(v) for k, v in collate(inputs).items()}

    @torch.inference_mode()
    def predict(self, batch: dict) -> torch.Tensor:
        """Class probabilities (N, 1000) for a batch, computed in one forward pass."""
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

    def encode(self, item: ModelInput, probabilities: torch.Tensor) -> Reply:
        return Reply.of_json(200, self.answer(probabilities, item.quality), item.quality)

    def decode_all(self, rows: list, headers: list[dict]) -> list:
        """Each row's ModelInput, or the Reply that refuses it. With ``prepare_threads`` > 1 the
        images of a batch are prepared side by side: decoding, resizing and the DCT are Pillow and
        numpy, which release the GIL. In-process on 2 idle cores that took a batch of four 500x375
        JPEGs from 1.9 to 1.3 ms per image (AFD); served on the same 2 cores, which TorchServe's
        frontend shares, it gained nothing (results/bench/prepare-threads), so it is opt-in. The
        restorer already runs torch on every core, and the device path queues work on the device:
        both prepare one image at a time."""
        threads = self.prepare_threads
        if len(rows) < 2 or threads < 2 or self.restorer is not None or self.decode_on_device:
            return super().decode_all(rows, headers)
        if self._prepare_pool is None:
            self._prepare_pool = ThreadPoolExecutor(threads, thread_name_prefix="prepare")
        return list(self._prepare_pool.map(self.decode_or_refuse, range(len(rows)), rows, headers))

