"""8x8 block DCT of images, laid out the way a JPEG codec sees them.

Coefficient (u, v) of a block has vertical frequency u (rows) and horizontal frequency v
(columns); its natural index is ``u * 8 + v``, the layout of a JPEG quantization table.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


__all__ = ["ZIGZAG_ORDER", "block_dct", "dct_matrix", "pooled_block_dct", "rgb_to_ycbcr"]

BLOCK = 8


def dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """Orthonormal DCT-II basis D (n, n), float32: ``D @ x`` is the DCT of a column vector x."""
    return _dct_matrix64(n).to(torch.float32)


@functools.lru_cache(maxsize=4)
def _dct_matrix64(n: int) -> torch.Tensor:
    # Built in float64 so float64 inputs get a float64-exact transform (cached: do not mutate).
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)  # frequency
    x = torch.arange(n, dtype=torch.float64).unsqueeze(0)  # sample position
    d = torch.cos((2 * x + 1) * k * math.pi / (2 * n))
    d[0] *= math.sqrt(1.0 / n)
    d[1:] *= math.sqrt(2.0 / n)
    return d


def _zigzag_order(n: int = BLOCK) -> torch.Tensor:
    # Walk the anti-diagonals s = u + v; odd diagonals run top-right -> bottom-left (u rising),
    # even ones bottom-left -> top-right, as in ITU-T T.81 Figure A.6.
    order = []
    for s in range(2 * n - 1):
        cells = [(u, s - u) for u in range(n) if 0 <= s - u < n]
        if s % 2 == 0:
            cells.reverse()
        order.extend(u * n + v for u, v in cells)
    return torch.tensor(order, dtype=torch.long)


ZIGZAG_ORDER: torch.Tensor = _zigzag_order()
"""(64,) long: position k in zig-zag order -> natural row-major index."""


@functools.lru_cache(maxsize=8)
def _zigzag_basis(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(64, 1, 8, 8) DCT basis images in zig-zag order: filter k at (y, x) is D[u, y] * D[v, x],
    so correlating a block with it gives coefficient (u, v) of ``D X D^T`` (cached: do not mutate)."""
    d = _dct_matrix64(BLOCK)
    basis = torch.einsum("uy,vx->uvyx", d, d).reshape(BLOCK * BLOCK, BLOCK, BLOCK)[ZIGZAG_ORDER]
    return basis.unsqueeze(1).to(device=device, dtype=dtype)


# JFIF (ITU-T T.871) full-range RGB -> YCbCr; chroma is offset by 128 below.
_YCBCR_MATRIX = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=torch.float64,
)
_YCBCR_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 255] -> JFIF full-range YCbCr in [0, 255], same shape."""
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got {tuple(rgb.shape)}")
    if not rgb.is_floating_point():
        rgb = rgb.to(torch.float32)
    m = _YCBCR_MATRIX.to(device=rgb.device, dtype=rgb.dtype)
    off = _YCBCR_OFFSET.to(device=rgb.device, dtype=rgb.dtype)
    return torch.einsum("oc,...chw->...ohw", m, rgb) + off[:, None, None]


def block_dct(planes: torch.Tensor, grid_offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Blockwise 8x8 DCT of (..., C, H, W) planes in [0, 255] on the grid starting at (dy, dx).

    Values are level-shifted and scaled to ``(v - 128) / 128``. Blocks cut by the image border
    (top/left when the grid is offset, bottom/right when the size is not a multiple of 8) are
    completed by edge replication, as encoders pad. Returns (..., C * 64, Hb, Wb) where channel
    ``c * 64 + k`` holds plane c's k-th coefficient in zig-zag order.
    """
    if planes.dim() < 3:
        raise ValueError(f"expected (..., C, H, W), got {tuple(planes.shape)}")
    dy, dx = (int(v) for v in grid_offset)
    if not (0 <= dy < BLOCK and 0 <= dx < BLOCK):
        raise ValueError(f"grid_offset must be in 0..7, got {grid_offset}")
    *lead, c, h, w = planes.shape
    if h == 0 or w == 0:
        raise ValueError(f"empty planes {tuple(planes.shape)}")
    if not planes.is_floating_point():
        planes = planes.to(torch.float32)

    x = (planes.reshape(-1, c, h, w) - 128.0) / 128.0
    # A grid starting at dy > 0 leaves a partial block of dy rows above it: pad it to 8.
    top, left = (BLOCK - dy) % BLOCK, (BLOCK - dx) % BLOCK
    bottom, right = -(h + top) % BLOCK, -(w + left) % BLOCK
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), mode="replicate")
    n = x.shape[0]
    hb, wb = x.shape[-2] // BLOCK, x.shape[-1] // BLOCK
    # One strided convolution with the 64 basis images does every block's transform at once
    # (several times faster on CPU than the same product written as an einsum over blocks).
    basis = _zigzag_basis(x.device, x.dtype)
    out = F.conv2d(x.reshape(n * c, 1, x.shape[-2], x.shape[-1]), basis, stride=BLOCK)
    return out.reshape(*lead, c * BLOCK * BLOCK, hb, wb)


# Each zig-zag coefficient as a row over a block's 64 pixels (k, y * 8 + x), and JFIF's colour
# matrix with the level shift's 1/128 folded in: the pooled transform below is two small products.
_ZIGZAG_KERNEL = _zigzag_basis(torch.device("cpu"), torch.float64).reshape(
    BLOCK * BLOCK, BLOCK * BLOCK).numpy().astype(np.float32)
_YCBCR_SCALED = (_YCBCR_MATRIX.numpy() / 128.0).astype(np.float32)
# (v - 128) / 128 of a flat block only moves its DC coefficient, by 8 x the plane's mean shift:
# 8 * (0 - 128) / 128 for Y, and 0 for Cb and Cr, whose +128 offset cancels the level shift.
_LUMA_DC_SHIFT = 8.0 * (0.0 - 128.0) / 128.0


def pooled_block_dct(pixels: np.ndarray, grid_offset: tuple[int, int], size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (192, size, size): ``block_dct`` of its YCbCr planes, average-pooled
    over blocks with ``adaptive_avg_pool2d`` to size x size, without transforming every block.

    Colour conversion, level shift and DCT are affine, so the mean of a bin's block DCTs is the DCT
    of the bin's mean block. Averaging blocks costs a few additions per pixel where a transform per
    block costs ~100 multiply-adds, and it runs one strip of block rows at a time, so a 40 MP photo
    never needs a float copy of itself (the whole-image transform took 0.8 s and GBs at 12 MP).
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"empty pixels {pixels.shape}")
    dy, dx = (int(v) for v in grid_offset)
    if not (0 <= dy < BLOCK and 0 <= dx < BLOCK):
        raise ValueError(f"grid_offset must be in 0..7, got {grid_offset}")
    # Complete the blocks cut by the border by edge replication, as block_dct does.
    top, left = (BLOCK - dy) % BLOCK, (BLOCK - dx) % BLOCK
    bottom, right = -(h + top) % BLOCK, -(w + left) % BLOCK
    if top or bottom or left or right:
        pixels = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    hb, wb = pixels.shape[0] // BLOCK, pixels.shape[1] // BLOCK

    # Rows first, one bin of block rows at a time: (size, 8, W, 3) summed rows of each bin.
    row_bins = _adaptive_bins(hb, size)
    rows = np.empty((size, BLOCK, pixels.shape[1], 3), dtype=np.float32)
    for i, (start, end) in enumerate(row_bins):
        strip = pixels[start * BLOCK:end * BLOCK].reshape(end - start, BLOCK, -1, 3)
        # add.reduce into float32 is several times faster than .mean(dtype=float32) on uint8.
        np.add.reduce(strip, axis=0, dtype=np.float32, out=rows[i])
    # Then the column bins' means, as one product with the (size, wb) averaging matrix (a loop of
    # reductions over the middle axis took longer than everything else here together).
    column_means = np.zeros((size, wb), dtype=np.float32)
    for j, (start, end) in enumerate(_adaptive_bins(wb, size)):
        column_means[j, start:end] = 1.0 / (end - start)
    sums = np.tensordot(column_means, rows.reshape(size * BLOCK, wb, BLOCK * 3), axes=([1], [1]))
    # (column bin, row bin, y, x, colour) -> (colour, y * 8 + x, row bin * size + column bin)
    blocks = sums.reshape(size, size, BLOCK * BLOCK, 3).transpose(3, 2, 1, 0)
    coeffs = np.matmul(_ZIGZAG_KERNEL, np.ascontiguousarray(blocks).reshape(3, BLOCK * BLOCK, size * size))
    coeffs *= np.repeat(1.0 / np.array([end - start for start, end in row_bins], dtype=np.float32), size)
    # The transform acts within each plane and the colour matrix across planes, so they commute.
    ycbcr = _YCBCR_SCALED @ coeffs.reshape(3, -1)  # (plane, coefficient * row * column)
    ycbcr[0, :size * size] += _LUMA_DC_SHIFT
    return torch.from_numpy(ycbcr).reshape(3 * BLOCK * BLOCK, size, size)


def _adaptive_bins(n: int, size: int) -> list[tuple[int, int]]:
    # The index ranges adaptive_avg_pool uses: bins overlap, or repeat, when n is not a multiple.
    return [((i * n) // size, -((-(i + 1) * n) // size)) for i in range(size)]
