"""The AFD module (adaptive feature de-drifting, Peng et al., IEEE TMM 2024), as we build it.

FDE-Net reads the image's block DCT coefficients (and optionally its estimated JPEG quality) and
estimates where, and how much, the backbone's early features drift: a gate in (0, 1).
FE-Net, a small U-Net of RepConv blocks, computes a correction of those features. The module
returns ``features + gate * correction``; FE-Net's last block starts at exactly zero, so an
untrained module leaves the backbone's output unchanged.
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from afdserve.models.repconv import RepConv

DCT_CHANNELS = 192  # 64 zig-zag coefficients for each of Y, Cb, Cr
DCT_SOURCES = ("file-grid", "resized")


@dataclass(frozen=True)
class AFDConfig:
    channels: int = 32  # feature channels at the insertion point (Lite0's stem: 32)
    width: int = 8  # FE-Net's base width; the U-Net runs at width, 2x and 4x
    gate: str = "spatial"  # "spatial": a drift map per position; "global": one gate per channel
    use_quality: bool = True  # feed the quality estimated from the quantization tables
    insert_after: str = "stem"  # "stem" or "blocks.N" of the backbone
    # Where FDE-Net's coefficients come from: the file's own 8x8 grid ("file-grid"), or the
    # resized 224x224 model input ("resized", as the public AFD code does). Serving must match.
    dct_source: str = "file-grid"
    # 1: FE-Net runs at the features' resolution (112x112 after the stem); 2: on their 2x2 means,
    # with the gated correction upsampled back, for a quarter of FE-Net's cost. Its narrow 3x3
    # convolutions at 112x112 were most of the module's served cost.
    fe_downscale: int = 1

    def __post_init__(self):
        if self.gate not in ("spatial", "global"):
            raise ValueError(f"gate must be 'spatial' or 'global', not {self.gate!r}")
        if self.dct_source not in DCT_SOURCES:
            raise ValueError(f"dct_source must be one of {DCT_SOURCES}, not {self.dct_source!r}")
        if self.fe_downscale not in (1, 2):
            raise ValueError(f"fe_downscale must be 1 or 2, not {self.fe_downscale!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AFDConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown AFD config keys: {sorted(unknown)}")
        return cls(**values)

    @classmethod
    def from_record(cls, record: dict) -> "AFDConfig":
        """The config a training record (``afd_module.json`` of ``afdserve train``) describes."""
        values = dict(record["afd_config"])
        values.setdefault("dct_source", record.get("dct_source", "file-grid"))
        return cls.from_dict(values)


class FDENet(nn.Module):
    """DCT coefficients (N, 192, h, w) -> drift gate (N, C, h, w) or (N, C, 1, 1)."""

    def __init__(self, config: AFDConfig):
        super().__init__()
        self.config = config
        in_channels = DCT_CHANNELS + (1 if config.use_quality else 0)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 128, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 64, 1),
            nn.ReLU(inplace=True),
        )
        self.to_gate = nn.Conv2d(64, config.channels, 1)

    def forward(self, dct: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        if self.config.use_quality:
            # A constant plane of quality/100; images that are not JPEGs count as quality 100.
            q = torch.ones(dct.shape[0], device=dct.device, dtype=dct.dtype) if quality is None else quality
            plane = (q.to(dct.dtype) / 100.0).view(-1, 1, 1, 1).expand(-1, 1, *dct.shape[-2:])
            dct = torch.cat([dct, plane], dim=1)
        h = self.body(dct)
        if self.config.gate == "global":
            h = h.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.to_gate(h))


class FENet(nn.Module):
    """A two-level U-Net of RepConv blocks: features (N, C, H, W) -> correction of the same shape."""

    def __init__(self, channels: int, width: int, deploy: bool = False):
        super().__init__()
        w = width
        self.inc = RepConv(channels, w, deploy=deploy)
        self.down1 = RepConv(w, 2 * w, deploy=deploy)
        self.down2 = RepConv(2 * w, 4 * w, deploy=deploy)
        self.up1 = RepConv(4 * w + 2 * w, 2 * w, deploy=deploy)
        self.up2 = RepConv(2 * w + w, w, deploy=deploy)
        self.out = RepConv(w, channels, act=False, deploy=deploy)
        if not deploy:
            self.out.zero_output_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.inc(x)
        s2 = self.down1(F.max_pool2d(s1, 2))
        h = self.down2(F.max_pool2d(s2, 2))
        # Upsample to the skip's own size, so odd feature sizes (inputs not a multiple of 32) work.
        h = self.up1(torch.cat([F.interpolate(h, size=s2.shape[-2:], mode="nearest"), s2], 1))
        h = self.up2(torch.cat([F.interpolate(h, size=s1.shape[-2:], mode="nearest"), s1], 1))
        return self.out(h)


class AFDModule(nn.Module):
    def __init__(self, config: AFDConfig, deploy: bool = False):
        super().__init__()
        self.config = config
        self.fde = FDENet(config)
        self.fe = FENet(config.channels, config.width, deploy=deploy)

    def forward(self, features: torch.Tensor, dct: torch.Tensor, quality: torch.Tensor | None = None):
        gate = self.fde(dct, quality)
        if self.config.fe_downscale == 1:
            # One fused op: written as features + gate * correction, the product's 4 MB-per-image
            # temporary made this line cost as much as FE-Net itself on CPU.
            return torch.addcmul(features, _resized(gate, features), self.fe(features))
        # ceil_mode keeps odd sizes' last row and column; upsampling goes back to the exact size.
        small = F.avg_pool2d(features, self.config.fe_downscale, ceil_mode=True)
        correction = self.fe(small) * _resized(gate, small)
        return features + _resized(correction, features)


def _resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # A global gate (N, C, 1, 1) broadcasts as it is; maps are resized bilinearly to ``like``'s size.
    if x.shape[-1] == 1 or x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
