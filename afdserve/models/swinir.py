"""SwinIR (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021) for JPEG
compression-artefact reduction (CAR), written for this project.

Only the restoration-at-the-same-size variant is implemented (``upscale=1, upsampler=''``, the one
the paper uses for JPEG CAR and for denoising). The state dict has exactly the layout of the
official implementation (key names, order, shapes, and the persistent buffers
``relative_position_index`` and ``attn_mask``), so the official checkpoints
``006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg{10,20,30,40}.pth`` (and the gray ``006_CAR_...`` ones)
load with ``strict=True`` and compute the same function.

Structure, outermost first:
  shallow feature     conv_first (3x3, in_chans -> embed_dim)
  deep features       patch_embed.norm, then RSTBs (``layers.i``), then norm
    RSTB              residual_group.blocks (Swin blocks, alternating regular / shifted windows),
                      a 3x3 conv, and a residual around the whole group
    Swin block        LN -> window MSA with relative position bias (+ shift mask) -> residual,
                      LN -> MLP (GELU) -> residual
  reconstruction      conv_after_body + shallow feature, conv_last, plus the global image residual

Input: float N x C x H x W in [0, 1] (RGB for colour), any H, W >= window_size // 2 + 1. The output
is not clamped, like the official forward.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

# Per-channel RGB mean of DIV2K, which the official colour models subtract before scaling by
# img_range (gray models subtract nothing). It is not stored in checkpoints.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
# The official shift mask adds -100 (not -inf) to logits of token pairs that the cyclic shift
# brought together from non-adjacent image regions; -100 is kept so that results match exactly.
SHIFT_MASK_VALUE = -100.0
# Keys that only the super-resolution variants of SwinIR have (their upsampling tails).
_SR_TAIL_PREFIXES = ("conv_before_upsample.", "upsample.", "conv_up1.", "conv_up2.", "conv_hr.")


# ============================================================================== configuration


@dataclass(frozen=True)
class SwinIRConfig:
    """Constructor arguments of SwinIR; field names follow the official constructor.

    ``img_size`` is the training patch size. It does not limit the input size; it only fixes the
    shift mask that the model stores in its state dict (``attn_mask``, one per shifted block).
    """

    in_chans: int = 3
    embed_dim: int = 180
    depths: Tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: Tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    window_size: int = 7
    mlp_ratio: float = 2.0
    img_size: int = 126
    img_range: float = 255.0
    resi_connection: str = "1conv"
    upsampler: str = ""
    upscale: int = 1
    # Stochastic depth while training (official default); no effect in eval mode.
    drop_path_rate: float = 0.1

    def __post_init__(self):
        # Tuples, so that configs compare equal whether they came from lists (JSON) or tuples.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))  # official records say 2
        object.__setattr__(self, "img_range", float(self.img_range))
        if self.upsampler != "" or self.upscale != 1:
            raise ValueError(
                f"only the JPEG-CAR/denoising SwinIR (upscale=1, upsampler='') is implemented; got "
                f"upscale={self.upscale!r}, upsampler={self.upsampler!r} (a super-resolution model)"
            )
        if self.resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {self.resi_connection!r}")
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} need the same, non-zero length")
        if min(self.depths) < 1:
            raise ValueError(f"every RSTB needs at least one block, got depths {self.depths}")
        for heads in self.num_heads:
            if heads < 1 or self.embed_dim % heads:
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {heads}")
        if self.resi_connection == "3conv" and self.embed_dim % 4:
            raise ValueError("resi_connection '3conv' needs embed_dim divisible by 4")
        if self.in_chans < 1 or self.window_size < 2:
            raise ValueError(f"bad in_chans {self.in_chans} or window_size {self.window_size}")
        # The official blocks silently fall back to one unshifted window when img_size <=
        # window_size, which changes the parameter shapes; no released model does that, so refuse.
        if self.img_size <= self.window_size or self.img_size % self.window_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be a multiple of window_size ({self.window_size}) "
                "and larger than it"
            )

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)  # int() as in the official MLP

    def to_record(self) -> dict:
        """A JSON-ready dict (lists for the tuples)."""
        record = dataclasses.asdict(self)
        record["depths"] = list(self.depths)
        record["num_heads"] = list(self.num_heads)
        return record

    @classmethod
    def from_record(cls, record: Mapping) -> "SwinIRConfig":
        """Inverse of ``to_record``; also takes the official constructor's keyword dict."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"unknown SwinIR config keys: {unknown}")
        return cls(**dict(record))

    @classmethod
    def color_car(cls) -> "SwinIRConfig":
        """Official colour SwinIR-M for JPEG CAR (11,492,067 parameters)."""
        return cls(in_chans=3)

    @classmethod
    def gray_car(cls) -> "SwinIRConfig":
        """Official grayscale SwinIR-M for JPEG CAR (11,485,585 parameters)."""
        return cls(in_chans=1)


PRESETS = {
    "color_car_swinir_m": SwinIRConfig.color_car(),
    "gray_car_swinir_m": SwinIRConfig.gray_car(),
}


# ============================================================================== window helpers


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, window_size**2, C); windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def shift_attention_mask(height: int, width: int, window_size: int, shift: int,
                         device=None, dtype=torch.float32) -> torch.Tensor:
    """Additive mask (num_windows, N, N), N = window_size**2, for shifted-window attention.

    After rolling the feature map by -shift, the windows along the bottom and right edges hold
    tokens from opposite image borders. Label each pixel by the band it came from (3 bands per
    axis: [0, H-ws), [H-ws, H-shift), [H-shift, H)); tokens with different labels must not attend
    to each other.
    """

    def bands(size: int) -> torch.Tensor:
        label = torch.zeros(size, dtype=torch.long, device=device)
        label[size - window_size:size - shift] = 1
        label[size - shift:] = 2
        return label

    region = bands(height)[:, None] * 3 + bands(width)[None, :]  # (H, W)
    region = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # (nW, N)
    differs = region[:, None, :] != region[:, :, None]
    mask = torch.zeros(differs.shape, dtype=dtype, device=device)
    return mask.masked_fill_(differs, SHIFT_MASK_VALUE)


@functools.lru_cache(maxsize=64)
def window_order(height: int, width: int, window_size: int, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, inverse) over the H*W tokens of a row-major map: ``tokens[:, order]`` is the map
    rolled by -shift and cut into windows (``window_partition``'s order), ``[:, inverse]`` puts
    windows back. One gather each way instead of a roll and a permuted copy."""
    # Cached across calls, some of them under inference_mode: made as normal tensors, or a later
    # training forward could not keep them for its backward.
    with torch.inference_mode(False):
        grid = torch.arange(height * width).view(1, height, width, 1)
        if shift:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
        order = window_partition(grid, window_size).flatten()
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
    return order, inverse


def masked_window_index(height: int, width: int, window_size: int, device=None) -> torch.Tensor:
    """The windows (row-major, as ``window_partition`` orders them) whose shift mask is not all
    zero: only the last row and the last column of windows mix tokens from two borders."""
    grid = torch.arange((height // window_size) * (width // window_size), device=device)
    grid = grid.view(height // window_size, width // window_size)
    return torch.cat([grid[:, -1], grid[-1, :-1]])


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the (2*ws-1)**2-row bias table for every query/key pair of a window.

    The offset (dy, dx) between two tokens, each in [-(ws-1), ws-1], is shifted to be
    non-negative and flattened row-major: (dy + ws - 1) * (2*ws - 1) + (dx + ws - 1).
    """
    ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window_size - 1
    dx = xs[:, None] - xs[None, :] + window_size - 1
    return dy * (2 * window_size - 1) + dx


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per sample, rescale the kept ones."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


# ============================================================================== modules
# Attribute names (and their registration order) are those of the official model: they are the
# state-dict keys of the released checkpoints.


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent: the official checkpoints carry it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                masked_windows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) or None; ``masked_windows``: the indices of the
        windows whose mask is not all zero (see ``masked_window_index``), None for all of them.

        One fused attention (``scaled_dot_product_attention``) with the relative position bias as
        its additive mask, broadcast over windows rather than added to every window's scores. The
        shift mask is zero except in the last row and column of windows, so those few are
        computed again with bias + mask and written over the rest."""
        bw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1).to(q.dtype).contiguous()  # (heads, N, N)
        # As (1, heads, N, N), contiguous: torch's CPU kernel then takes its fused path and
        # broadcasts it over the windows (88 ms for 4096 windows here). A 3-dimensional mask fell
        # back to the unfused path (530 ms), and a non-contiguous one was first copied per window.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None], scale=self.scale)
        if mask is not None:
            nw = mask.shape[0]
            if masked_windows is None:
                masked_windows = torch.arange(nw, device=x.device)
            # Every image's masked windows: image b's window w is row b * nW + w.
            rows = (torch.arange(bw // nw, device=x.device)[:, None] * nw + masked_windows[None]).flatten()
            edge_mask = (mask[masked_windows][:, None] + bias[None]).repeat(bw // nw, 1, 1, 1)
            # Out of place: the fused attention's backward on a GPU keeps its output.
            edge = F.scaled_dot_product_attention(q[rows], k[rows], v[rows], attn_mask=edge_mask, scale=self.scale)
            out = out.index_put((rows,), edge)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention and MLP, each as a pre-norm residual branch on tokens (B, L, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_hidden: int, img_size: int, drop_path: float = 0.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.input_resolution = (img_size, img_size)
        self.drop_path = drop_path
        if shift_size > 0:
            # The mask for the training size lives in the state dict (registered before the
            # sub-modules, hence first among this block's keys, as in official checkpoints).
            self.register_buffer("attn_mask", shift_attention_mask(img_size, img_size, window_size, shift_size))
        else:
            self.attn_mask = None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int],
                size_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``size_mask``: the shift mask for ``x_size`` when it differs from the training size."""
        height, width = x_size
        b, length, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        if shift:
            mask = self.attn_mask if tuple(x_size) == self.input_resolution else size_mask
            if mask is None:  # called directly at a new size
                mask = shift_attention_mask(height, width, ws, shift, x.device, x.dtype)
            mask = mask.to(x.dtype)
        else:
            mask = None
        masked = masked_window_index(height, width, ws, x.device) if shift else None
        order, inverse = (t.to(x.device) for t in window_order(height, width, ws, shift))
        windows = self.norm1(x).index_select(1, order).view(-1, ws * ws, c)
        x = self.attn(windows, mask, masked).view(b, length, c).index_select(1, inverse)
        x = shortcut + _drop_path(x, self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class BasicLayer(nn.Module):
    """A stack of Swin blocks; odd blocks use windows shifted by half a window."""

    def __init__(self, cfg: SwinIRConfig, num_heads: int, depth: int, drop_paths: Sequence[float]):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(cfg.embed_dim, num_heads, cfg.window_size,
                                 0 if i % 2 == 0 else cfg.window_size // 2,
                                 cfg.mlp_hidden_dim, cfg.img_size, drop_paths[i])
            for i in range(depth))

    def forward(self, x, x_size, size_mask=None):
        for block in self.blocks:
            x = block(x, x_size, size_mask)
        return x


def _residual_conv(dim: int, kind: str) -> nn.Module:
    """The conv closing each RSTB (and conv_after_body): restores the inductive bias of convs."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    # '3conv' (official option, saves parameters): 3x3 bottleneck, 1x1, 3x3 back.
    return nn.Sequential(
        nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(dim // 4, dim, 3, 1, 1))


def _tokens_to_map(x: torch.Tensor, x_size: Tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x_size[0], x_size[1])


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a conv, and a residual around both."""

    def __init__(self, cfg: SwinIRConfig, num_heads: int, depth: int, drop_paths: Sequence[float]):
        super().__init__()
        self.residual_group = BasicLayer(cfg, num_heads, depth, drop_paths)
        self.conv = _residual_conv(cfg.embed_dim, cfg.resi_connection)

    def forward(self, x, x_size, size_mask=None):
        y = self.residual_group(x, x_size, size_mask)
        return _map_to_tokens(self.conv(_tokens_to_map(y, x_size))) + x


class PatchEmbed(nn.Module):
    """Feature map -> tokens with LayerNorm (patch size 1; only the norm has parameters)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_map_to_tokens(x))


class SwinIR(nn.Module):
    """SwinIR for JPEG compression-artefact reduction (and denoising): same-size restoration."""

    def __init__(self, config: Optional[SwinIRConfig] = None):
        super().__init__()
        cfg = config if config is not None else SwinIRConfig.color_car()
        self.config = cfg
        self.window_size = cfg.window_size
        self.img_range = cfg.img_range
        mean = DIV2K_RGB_MEAN if cfg.in_chans == 3 else (0.0,) * cfg.in_chans
        # Not persistent: official checkpoints do not carry it.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(cfg.in_chans, cfg.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        # Stochastic-depth rate grows linearly over all blocks of all RSTBs (plain Python, so
        # that the model can also be built under ``torch.device("meta")``).
        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths))]
        self.layers = nn.ModuleList(
            RSTB(cfg, heads, depth, rates[start:start + depth])
            for heads, depth, start in zip(cfg.num_heads, cfg.depths, starts))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.conv_after_body = _residual_conv(cfg.embed_dim, cfg.resi_connection)
        self.conv_last = nn.Conv2d(cfg.embed_dim, cfg.in_chans, 3, 1, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module):
        # Official initialisation of the transformer parts (convs keep PyTorch's default).
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def min_input_size(self) -> int:
        # Reflect padding needs pad < size, and the pad can reach window_size - size.
        return self.window_size // 2 + 1

    def pad_to_window(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right to a multiple of the window size (as the official forward)."""
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            # Reflect padding needs pad < size: a strip a few pixels thin (a 1x1 image, the edge
            # tile of a 3000x2 one) first gets its edge pixels repeated up to the window.
            x = F.pad(x, (0, max(0, self.window_size - width), 0, max(0, self.window_size - height)),
                      mode="replicate")
            height, width = x.shape[-2:]
        pad_h = (-height) % self.window_size
        pad_w = (-width) % self.window_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deep feature extraction on an already padded feature map (B, embed_dim, H, W)."""
        x_size = (x.shape[2], x.shape[3])
        size_mask = None
        if x_size != (self.config.img_size,) * 2:
            # The stored attn_mask only fits the training size: compute the mask for this size
            # once per forward and share it between all shifted blocks (they all use the same
            # window and shift).
            size_mask = shift_attention_mask(x_size[0], x_size[1], self.window_size,
                                             self.window_size // 2, x.device, x.dtype)
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, x_size, size_mask)
        return _tokens_to_map(self.norm(tokens), x_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x in_chans x H x W, float in [0, 1]. Returns the restored image, same size and
        dtype; the network computes in its parameters' dtype (``model.to(torch.bfloat16)``)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected N x {self.config.in_chans} x H x W input, got {tuple(x.shape)}")
        given = x.dtype
        x = x.to(self.conv_first.weight.dtype)
        height, width = x.shape[-2:]
        mean = self.mean.to(x.dtype)
        x = (self.pad_to_window(x) - mean) * self.img_range
        shallow = self.conv_first(x)
        deep = self.conv_after_body(self.forward_features(shallow)) + shallow
        # Global residual: the network predicts the correction of the compressed image.
        x = x + self.conv_last(deep)
        return (x / self.img_range + mean)[:, :, :height, :width].to(given)


# ============================================================================== checkpoints


def _layer_block_counts(state: Mapping[str, torch.Tensor]) -> list:
    pattern = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")
    blocks = {}
    for key in state:
        match = pattern.match(key)
        if match:
            layer, block = int(match.group(1)), int(match.group(2))
            blocks[layer] = max(blocks.get(layer, -1), block)
    if not blocks:
        raise ValueError("no SwinIR blocks (layers.<i>.residual_group.blocks.<j>.*) in the state dict")
    if sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f"SwinIR layers are not numbered 0..n-1: {sorted(blocks)}")
    return [blocks[i] + 1 for i in range(len(blocks))]


def infer_swinir_config(state: Mapping[str, torch.Tensor], img_range: float = 255.0) -> SwinIRConfig:
    """Read a CAR SwinIR config off the shapes of an (official-layout) state dict.

    ``img_range`` and the colour mean are not stored in checkpoints: the default is the CAR value
    255 (the official denoising models use 1.0 — pass it, or a whole config, for those).
    """
    sr_keys = sorted({k.split(".")[0] for k in state if k.startswith(_SR_TAIL_PREFIXES)})
    if sr_keys:
        raise ValueError(f"this is a super-resolution SwinIR (it has {sr_keys} upsampling layers); only "
                         "the JPEG-CAR/denoising model (upscale=1, upsampler='') is supported")
    if "absolute_pos_embed" in state:
        raise ValueError("SwinIR with absolute position embedding (ape=True) is not supported")
    needed = ["conv_first.weight", "patch_embed.norm.weight", "norm.weight", "conv_last.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"not a SwinIR state dict: missing {missing}")
    depths = _layer_block_counts(state)
    embed_dim, in_chans = state["conv_first.weight"].shape[:2]
    out_chans = state["conv_last.weight"].shape[0]
    if out_chans != in_chans:
        raise ValueError(f"conv_last gives {out_chans} channels for {in_chans} input channels: not a "
                         "same-size restoration (CAR) SwinIR")

    def block_key(layer: int, block: int, name: str) -> torch.Tensor:
        key = f"layers.{layer}.residual_group.blocks.{block}.{name}"
        if key not in state:
            raise ValueError(f"not a SwinIR state dict: missing {key}")
        return state[key]

    num_heads = [block_key(i, 0, "attn.relative_position_bias_table").shape[1] for i in range(len(depths))]
    table_rows = block_key(0, 0, "attn.relative_position_bias_table").shape[0]
    side = math.isqrt(table_rows)
    if side * side != table_rows or side % 2 == 0:
        raise ValueError(f"relative_position_bias_table with {table_rows} rows is not (2*window-1)**2")
    window_size = (side + 1) // 2
    mlp_ratio = block_key(0, 0, "mlp.fc1.weight").shape[0] / embed_dim
    if "layers.0.conv.weight" in state:
        resi_connection = "1conv"
    elif "layers.0.conv.0.weight" in state:
        resi_connection = "3conv"
    else:
        raise ValueError("not a SwinIR state dict: no RSTB conv (layers.0.conv.*)")
    # The stored mask of a shifted block has (img_size / window)**2 windows.
    mask_key = next((k for k in state if k.endswith(".attn_mask")), None)
    if mask_key is None:  # no shifted block (all depths 1): img_size changes nothing stored
        img_size = 2 * window_size
    else:
        windows = state[mask_key].shape[0]
        per_side = math.isqrt(windows)
        if per_side * per_side != windows:
            raise ValueError(f"{mask_key} has {windows} windows: not a square img_size; pass a config")
        img_size = per_side * window_size
    return SwinIRConfig(in_chans=int(in_chans), embed_dim=int(embed_dim), depths=tuple(depths),
                        num_heads=tuple(int(h) for h in num_heads), window_size=int(window_size),
                        mlp_ratio=float(mlp_ratio), img_size=int(img_size), img_range=img_range,
                        resi_connection=resi_connection)


def _select_state_dict(checkpoint, param_key: Optional[str]) -> Mapping[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a SwinIR checkpoint is a dict, got {type(checkpoint).__name__}")
    if param_key is not None:
        if param_key not in checkpoint:
            raise ValueError(f"checkpoint has no {param_key!r} entry (top-level keys: {sorted(checkpoint)[:10]})")
        state = checkpoint[param_key]
    elif "params" in checkpoint:
        # The official CAR test script reads 'params'; 'params_ema' is the fallback (used by the
        # GAN-trained real-SR releases).
        state = checkpoint["params"]
    elif "params_ema" in checkpoint:
        state = checkpoint["params_ema"]
    else:
        state = checkpoint
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError("not a state dict of tensors (expected 'params', 'params_ema' or a bare state dict)")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_swinir_checkpoint(path_or_state: Union[str, os.PathLike, Mapping],
                           config: Optional[SwinIRConfig] = None,
                           param_key: Optional[str] = None) -> SwinIR:
    """Build a SwinIR from an official checkpoint (file or already loaded dict), in eval mode.

    Takes the ``params`` entry, else ``params_ema``, else the dict itself (or ``param_key``);
    infers the config from the tensor shapes when ``config`` is None; loads with strict=True.
    Raises ValueError for anything that is not a same-size (CAR/denoising) SwinIR.
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        try:
            checkpoint = torch.load(path_or_state, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # unpickling errors come in many types
            raise ValueError(f"{os.fspath(path_or_state)} is not a readable PyTorch weights file: {err}") from err
    else:
        checkpoint = path_or_state
    state = _select_state_dict(checkpoint, param_key)
    if config is None:
        config = infer_swinir_config(state)
    model = SwinIR(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint does not fit SwinIR {config.to_record()}: {err}") from err
    return model.eval()


# ============================================================================== cost


def count_macs(model_or_config: Union[SwinIR, SwinIRConfig], height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass on one height x width image.

    Counts the convs and linear layers and the two attention matmuls (q k^T and attn v), on the
    padded size the network really computes on. LayerNorm, softmax, GELU, bias and residual
    additions are not multiply-adds and are left out (a few per cent of the total at most).
    """
    cfg = model_or_config.config if isinstance(model_or_config, SwinIR) else model_or_config
    ws, c = cfg.window_size, cfg.embed_dim
    pixels = (height + (-height) % ws) * (width + (-width) % ws)
    tokens_per_window = ws * ws
    conv3 = 9 * c * c if cfg.resi_connection == "1conv" else 9 * c * (c // 4) * 2 + (c // 4) ** 2
    per_block = (
        3 * c * c                          # qkv
        + 2 * tokens_per_window * c        # q k^T and attn v (all heads together)
        + c * c                            # proj
        + 2 * c * cfg.mlp_hidden_dim       # fc1, fc2
    )
    per_pixel = (
        9 * cfg.in_chans * c               # conv_first
        + sum(cfg.depths) * per_block
        + len(cfg.depths) * conv3          # RSTB convs
        + conv3                            # conv_after_body
        + 9 * c * cfg.in_chans             # conv_last
    )
    return per_pixel * pixels
