"""Restoring a whole image with a restorer network, in overlapping tiles.

The one path from a decoded image to a restored one: the restorer handler, ``afdserve
evaluate-restorer``, the restorer's training validation and restore-then-classify all call
:func:`restore`. Tiling keeps memory bounded by the tile size whatever the photo's size (a
SwinIR's attention costs grow with the number of windows, its activations with the pixels), and
the output always has exactly the input's size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from afdserve.imaging.budget import CpuBudget
from afdserve.serving.settings import DEFAULT_RESTORE_BUDGET_S

__all__ = ["RestoreCost", "TileSpec", "restore", "restore_tensor", "tile_starts", "to_tensor", "to_uint8"]


@dataclass(frozen=True)
class TileSpec:
    """Images of at most ``whole`` pixels (or no larger than a tile) are restored in one pass;
    larger ones in tiles of ``size`` pixels a side overlapping by ``overlap``, ``batch`` tiles per
    forward.

    The overlap hides seams: every tile's border pixels see only part of their neighbourhood, so
    overlapping tiles are blended with weights that fall off towards each tile's edge.
    Multiples of 8 keep tiles on the JPEG block grid (a tile starting at a multiple of 8 sees the
    blocks the way the whole image does).

    The defaults are measured (compact SwinIR v1, 2 cores, scripts/profile_restorer.py): a
    forward costs 7 us per pixel at 256x256 but 15 at 512x512, where its activations no longer
    fit the caches, so large images go in 256-pixel tiles, one per forward (four at once are as
    slow as one 512x512 image). Up to 512x512, one pass beats tiles, which cover a 500x500 image
    2.4 times over: 3.1 s against 5.6 s."""

    size: int = 256
    overlap: int = 32
    batch: int = 1
    whole: int = 512 * 512

    def fits_whole(self, height: int, width: int) -> bool:
        return height * width <= self.whole or (height <= self.size and width <= self.size)

    def __post_init__(self):
        if self.size < 16 or self.size % 8:
            raise ValueError(f"tile size must be a multiple of 8 and at least 16, got {self.size}")
        if not 0 <= self.overlap < self.size // 2 or self.overlap % 8:
            raise ValueError(f"tile overlap must be a multiple of 8 below half the tile, got {self.overlap}")
        if self.batch < 1 or self.whole < 0:
            raise ValueError(f"tile batch must be positive and the one-pass pixel count not negative: {self}")


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``size`` overlapping by at least
    ``overlap``; starts are multiples of 8 except possibly the last (flush with the far edge)."""
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def tile_boxes(height: int, width: int, tiles: TileSpec) -> tuple[int, int, list[tuple[int, int]]]:
    """(tile height, tile width, top-left corners) of the tiles covering a height x width image."""
    th, tw = min(tiles.size, height), min(tiles.size, width)
    ys, xs = tile_starts(height, th, tiles.overlap), tile_starts(width, tw, tiles.overlap)
    return th, tw, [(y, x) for y in ys for x in xs]


def _blend_ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weights: linear ramps over ``overlap`` pixels at inner edges, 1 elsewhere."""
    w = torch.ones(length, dtype=torch.float32)
    if overlap:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


@torch.no_grad()
def restore_tensor(model: torch.nn.Module, image: torch.Tensor, tiles: TileSpec = TileSpec(),
                   budget: CpuBudget | None = None) -> torch.Tensor:
    """``image``: 1 x C x H x W float in [0, 1] on the model's device -> restored, same shape,
    clamped to [0, 1]. Images that fit ``TileSpec.whole`` go through in one piece. With ``budget``,
    tiling stops with BudgetExceeded as soon as the tiles done so far say the rest would overrun it."""
    _, channels, height, width = image.shape
    if tiles.fits_whole(height, width):
        return model(image).clamp_(0, 1)
    th, tw, boxes = tile_boxes(height, width, tiles)
    out = torch.zeros_like(image)
    weight = torch.zeros((1, 1, height, width), dtype=image.dtype, device=image.device)
    for i in range(0, len(boxes), tiles.batch):
        chunk = boxes[i:i + tiles.batch]
        batch = torch.cat([image[:, :, y:y + th, x:x + tw] for y, x in chunk])
        restored = model(batch)
        for (y, x), tile in zip(chunk, restored):
            wy = _blend_ramp(th, tiles.overlap, y == 0, y + th == height)
            wx = _blend_ramp(tw, tiles.overlap, x == 0, x + tw == width)
            w = (wy[:, None] * wx[None, :]).to(image)
            out[:, :, y:y + th, x:x + tw] += tile * w
            weight[:, :, y:y + th, x:x + tw] += w
        if budget is not None:
            done = i + len(chunk)
            budget.check_estimate("restoring the image", budget.spent() * len(boxes) / done)
            budget.check("restoring the image")
    return (out / weight).clamp_(0, 1)


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB or gray PIL image / HxW(xC) uint8 array -> 1 x C x H x W float in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    # A copy: the decoded array may be a read-only view (torch warns on those).
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C")).float().div_(255).unsqueeze(0)


def to_uint8(restored: torch.Tensor) -> np.ndarray:
    """1 x C x H x W in [0, 1] -> H x W x C uint8, rounded (as the published metrics are)."""
    return restored[0].mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def restore(model: torch.nn.Module, image: Image.Image | np.ndarray, tiles: TileSpec = TileSpec(),
            device: torch.device | str = "cpu") -> np.ndarray:
    """Restore an RGB image (PIL or HxWx3 uint8) -> H x W x 3 uint8."""
    x = to_tensor(image).to(device)
    return to_uint8(restore_tensor(model, x, tiles))


class RestoreCost:
    """Restoring served images within a CPU budget each. An image larger than a tile is refused
    before any work when the rate of the last such image says it would overrun the budget (an
    attacker's large images then cost nothing), and stopped between tile batches otherwise. Images
    restored in one pass (``TileSpec.whole``) cost at most one forward of that size and are not
    budgeted.

    The rate is CPU seconds per pixel of the tiles the network runs on, not of the image: tiles
    overlap, so a small image costs more per image pixel than a large one."""

    def __init__(self, tiles: TileSpec, budget_s: float = DEFAULT_RESTORE_BUDGET_S):
        self.tiles = tiles
        self.budget_s = budget_s
        self.s_per_tile_pixel: float | None = None  # of the last tiled image

    def tile_pixels(self, height: int, width: int) -> int:
        th, tw, boxes = tile_boxes(height, width, self.tiles)
        return len(boxes) * th * tw

    def restore_tensor(self, model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if self.tiles.fits_whole(height, width):
            return restore_tensor(model, image, self.tiles)
        budget = CpuBudget(self.budget_s, clock=time.process_time)
        work = self.tile_pixels(height, width)
        if self.s_per_tile_pixel is not None:
            budget.check_estimate("restoring the image", self.s_per_tile_pixel * work)
        restored = restore_tensor(model, image, self.tiles, budget)
        self.s_per_tile_pixel = budget.spent() / work
        return restored

    def restore(self, model: torch.nn.Module, image: Image.Image | np.ndarray,
                device: torch.device | str = "cpu") -> np.ndarray:
        return to_uint8(self.restore_tensor(model, to_tensor(image).to(device)))
