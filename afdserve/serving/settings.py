"""The settings an archive carries to its workers: the ``afdserve`` section of its
model-config.yaml, written by the builder (``afdserve.packaging.archive``) and read by the
services and the worker set-up. One typed class for both sides; no torch here, so the builder's
command line can check values without loading it.

Archives built before this class existed wrote the same keys: ``from_dict`` reads them unchanged,
and keys it does not know are kept (``extra``) rather than refused, so a newer archive still loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

PRECISIONS = ("float32", "float16", "bfloat16")
# CPU workers may also choose at load time: bfloat16 where the CPU has it in hardware, else
# float32 (afdserve.serving.precision).
AUTO_PRECISION = "auto"
CPU_PRECISIONS = PRECISIONS + (AUTO_PRECISION,)
DEFAULT_TOP_K = 5
# CPU seconds one request's decoding and preparation may take (afdserve.imaging.budget).
# Decoding and preparing the costliest legal photo measured here, a 40-megapixel progressive JPEG
# with 4:4:4 chroma at quality 85 (13.3 MiB, under the 16 MiB body limit), took 1.6 s of CPU
# (1.3 s decoding, 0.3 s resize and DCT); the default is three times that.
DEFAULT_DECODE_BUDGET_S = 5.0
# A restorer's CPU budget per image, counted over the worker's process (torch runs on every core).
# The compact SwinIR v1 took 87 s of CPU (44 s on the clock, 2 cores) for a 2000x2000 image, the
# largest the restorer's 4-megapixel limit admits; 120 s leave it room, and four such requests in
# one batch (about 60 s on the clock each) still finish within the restorer archive's 300 s
# response timeout, so TorchServe never declares the worker hung.
DEFAULT_RESTORE_BUDGET_S = 120.0


@dataclass(frozen=True)
class ArchiveSettings:
    model: str = ""
    description: str = ""
    # The network: weights file inside the archive; the backbone's spec (models.backbones; None:
    # EfficientNet-Lite0, as archives before it was recorded) and an AFD config (classifiers), or
    # a SwinIR config, tiles and source file (restorers).
    weights: str = "model.pt"
    backbone: dict | None = None
    afd: dict | None = None
    afd_release: str | None = None
    source_weights: str | None = None
    swinir: dict | None = None
    tiles: dict = field(default_factory=dict)
    # Restore-then-classify: the restorer's own weights, SwinIR config and tiles.
    restorer: ArchiveSettings | None = None
    restorer_release: str | None = None
    # Limits and answers. None: the service's default (40 MP classifiers, 4 MP restorers).
    max_pixels: int | None = None
    top_k: int = DEFAULT_TOP_K
    # The worker: torch threads (None: torch's default), threads preparing a batch, precision
    # per device type, GPU decoding; and why these values were chosen.
    threads: int | None = None
    prepare_threads: int = 1
    precision: dict = field(default_factory=dict)
    gpu_decode: bool = False
    # CPU seconds per request for decoding and preparing it, and for restoring it where a restorer
    # runs (afdserve.imaging.budget). None (older archives): the defaults above.
    decode_budget_s: float | None = None
    restore_budget_s: float | None = None
    serving_reason: str = ""
    library_version: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict | None) -> ArchiveSettings:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known and v is not None}
        if isinstance(kwargs.get("restorer"), dict):
            kwargs["restorer"] = cls.from_dict(kwargs["restorer"])
        for key in ("max_pixels", "top_k", "threads", "prepare_threads"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        for key in ("decode_budget_s", "restore_budget_s"):
            if key in kwargs:
                kwargs[key] = float(kwargs[key])
        if "gpu_decode" in kwargs:
            kwargs["gpu_decode"] = bool(kwargs["gpu_decode"])
        # Written as ``threads: null`` / ``prepare_threads: null`` by older builds: the defaults.
        return cls(**kwargs, extra={k: v for k, v in values.items() if k not in known})

    @classmethod
    def coerce(cls, settings: ArchiveSettings | dict | None) -> ArchiveSettings:
        return settings if isinstance(settings, cls) else cls.from_dict(settings)

    def to_dict(self, only_changed: bool = False) -> dict:
        """The model-config.yaml section: every setting that has a value (``only_changed``: those
        that differ from the defaults, as the nested restorer's are written)."""
        out = {}
        defaults = ArchiveSettings()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is None or (only_changed and value == getattr(defaults, f.name)):
                continue
            elif f.name == "restorer":
                out[f.name] = value.to_dict(only_changed=True)
            else:
                out[f.name] = value
        return out

    @property
    def is_restorer(self) -> bool:
        """A restorer archive (its network is a SwinIR), not a classifier."""
        return self.swinir is not None

    def precision_for(self, device_type: str) -> str:
        return self.precision.get(device_type, "float32")
