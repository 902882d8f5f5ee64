"""The one preprocessing path from a decoded image to model inputs. Serving, evaluation and
training all call ``prepare``, so what is measured is what is served.

Geometry, from the backbone's spec (``InputSpec``; a ``models.backbones.BackboneSpec`` has the
same fields): shorter side resized to ``resize_shorter`` (bilinear), centre crop ``input_size``,
pixels normalised by ``mean``/``std``. EfficientNet-Lite0 (the default): 256, 224, [-1, 1]. The DCT
coefficients for the drift map are taken on the file's own 8x8 grid, over the blocks that cover
the crop, and pooled to the input's 1/8 geometry, ceil(input_size / 8) (28x28 for 224, 33x33 for
Lite2's 260, whose last block is cut by the crop as a 260-pixel JPEG's own is), so a batch
stacks into fixed shapes.
"""

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from afdserve.imaging.dct import block_dct, pooled_block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import DecodedImage

BLOCK = 8


class InputGeometry(Protocol):
    """What preprocessing reads from a backbone's spec."""

    input_size: int
    resize_shorter: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class InputSpec:
    input_size: int = 224
    resize_shorter: int = 256
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


# EfficientNet-Lite0's (models.backbones.LITE0 has the same values): the default everywhere.
LITE0_INPUT = InputSpec()
RESIZE_SHORTER = LITE0_INPUT.resize_shorter
INPUT_SIZE = LITE0_INPUT.input_size
DCT_SIZE = INPUT_SIZE // BLOCK
# Models without a drift map may have large JPEGs decoded at 1/2..1/8 scale, down to this shorter
# side: twice the resize target keeps the model input within 0.002 (mean, [-1, 1] units) of a full
# decode, and top-1 agreeing on 99.1% of 700 photos (results/reduced-decode/check.md).
REDUCED_DECODE_SHORTER_SIDE = 2 * RESIZE_SHORTER


def reduced_decode_shorter_side(spec: InputGeometry = LITE0_INPUT) -> int:
    return 2 * spec.resize_shorter


def dct_size(spec: InputGeometry = LITE0_INPUT) -> int:
    """The drift map's side: one cell per 8x8 block of the input, a cut last block counted."""
    return -(-spec.input_size // BLOCK)


@dataclass
class ModelInput:
    image: torch.Tensor  # (3, S, S) normalised, S the backbone's input size (224 for Lite0, in [-1, 1])
    dct: torch.Tensor | None  # (192, S/8, S/8) rounded up, or None for models without an AFD module
    quality: float | None  # estimated IJG quality; None when the image is not a JPEG


def resize_geometry(width: int, height: int, spec: InputGeometry = LITE0_INPUT) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of 'resize shorter side to 256, crop 224'
    (Lite0's sizes; the spec's)."""
    size = spec.input_size
    scale = spec.resize_shorter / min(width, height)
    resized_w, resized_h = max(1, round(width * scale)), max(1, round(height * scale))
    return resized_w, resized_h, (resized_w - size) // 2, (resized_h - size) // 2


def crop_box(width: int, height: int, offset: tuple[int, int] | None = None,
             spec: InputGeometry = LITE0_INPUT) -> tuple[float, float, float, float]:
    """The crop, in source pixels, of 'resize shorter side to 256, crop 224': the centre one, or
    the one at ``offset`` = (left, top) in the resized image (training's random crops).

    An image already at the input size is taken whole: a client that cropped to 224 itself (as
    ImageNet-C's JPEG protocol does before compressing) gets its pixels, and its file's blocks,
    fed as they are rather than upscaled and cropped again."""
    size = spec.input_size
    if (width, height) == (size, size):
        return (0.0, 0.0, float(size), float(size))
    resized_w, resized_h, left, top = resize_geometry(width, height, spec)
    if offset is not None:
        left, top = offset
    sx, sy = width / resized_w, height / resized_h
    return (left * sx, top * sy, (left + size) * sx, (top + size) * sy)


def input_crop(image: Image.Image, box: tuple[float, float, float, float] | None = None,
               spec: InputGeometry = LITE0_INPUT) -> Image.Image:
    """RGB PIL image -> the 224x224 (input size) RGB image the model sees (``box``: from
    ``crop_box``, the centre crop when None)."""
    # Resizing only the crop box gives the same pixels as resizing everything and cropping,
    # without ever holding a huge resized image (e.g. a 1x10000 strip resized to 256 high).
    box = crop_box(*image.size, spec=spec) if box is None else box
    return image.resize((spec.input_size, spec.input_size), Image.Resampling.BILINEAR, box=box)


def scale_and_offset(spec: InputGeometry = LITE0_INPUT) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per channel, (pixel / 255 - mean) / std written as pixel / scale - offset. For Lite0's 0.5
    and 0.5 that is pixel / 127.5 - 1, exactly the arithmetic this path has always done, so every
    normalisation below is one formula for every backbone."""
    return tuple(255.0 * s for s in spec.std), tuple(m / s for m, s in zip(spec.mean, spec.std))


def _channels(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def normalise(pixels: np.ndarray, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised as the spec says."""
    scale, offset = (np.array(v, dtype=np.float32) for v in scale_and_offset(spec))
    # Scaled in numpy: torch would spread these 150K-element ops over its threads, whose
    # spin-waits then cost more CPU than the arithmetic. The (3, H, W) view is channels-last.
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / scale - offset).permute(2, 0, 1)


def image_tensor(image: Image.Image, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """RGB PIL image -> (3, 224, 224) float in [-1, 1] (the spec's size and normalisation)."""
    return normalise(input_crop(image, spec=spec), spec)


def model_range(image: torch.Tensor, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """(..., 3, H, W) float image in [0, 1] (a restorer's) -> the model's input scaling ([-1, 1]
    for Lite0): what ``image_tensor`` gives for the same pixels times 255. Differentiable, so a
    restorer can be trained through the classifier."""
    scale, offset = scale_and_offset(spec)
    return image * _channels([255.0 / s for s in scale], image) - _channels(offset, image)


def pixel_range(image: torch.Tensor, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """The inverse of the normalisation: (..., 3, H, W) model input -> pixel values in [0, 255]."""
    image = image.float()
    scale, offset = scale_and_offset(spec)
    return (image + _channels(offset, image)) * _channels(scale, image)


def dct_tensor(decoded: DecodedImage, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """(192, 28, 28) block DCT coefficients of the blocks covering the crop, on the file's grid
    (the spec's ``dct_size``)."""
    if decoded.reduction != 1:
        raise ValueError("the drift map needs a full-size decode: the file's blocks are lost at reduced scale")
    image = decoded.image
    (left, top, right, bottom), offset = dct_region(image.width, image.height, decoded.grid_offset, spec)
    region = np.asarray(image.crop((left, top, right, bottom)))
    # Blocks averaged into the input's 1/8 geometry (or repeated, for images smaller than that).
    return pooled_block_dct(region, offset, dct_size(spec))


def dct_region(width: int, height: int, grid_offset: tuple[int, int], spec: InputGeometry = LITE0_INPUT):
    """((left, top, right, bottom), grid offset inside it): the crop widened to whole blocks of the
    file's grid (blocks start at offset + 8k), as far as the image reaches."""
    x0, y0, x1, y1 = crop_box(width, height, spec=spec)
    dy, dx = grid_offset
    left = max(0, dx + BLOCK * math.floor((x0 - dx) / BLOCK))
    top = max(0, dy + BLOCK * math.floor((y0 - dy) / BLOCK))
    right = min(width, dx + BLOCK * math.ceil((x1 - dx) / BLOCK))
    bottom = min(height, dy + BLOCK * math.ceil((y1 - dy) / BLOCK))
    box = (left, top, max(right, left + 1), max(bottom, top + 1))
    return box, ((dy - top) % BLOCK, (dx - left) % BLOCK)


def resized_dct_tensor(image: torch.Tensor, spec: InputGeometry = LITE0_INPUT) -> torch.Tensor:
    """(..., 3, 224, 224) model input in [-1, 1] -> (..., 192, 28, 28): the block DCT of the
    resized input on its own grid, which the JPEG's blocks no longer line up with (the public AFD
    code's choice; kept as an ablation against ``dct_tensor``). Other specs: their size and
    normalisation."""
    return block_dct(rgb_to_ycbcr(pixel_range(image, spec)))


def prepare(decoded: DecodedImage, with_dct: bool = True, dct_source: str = "file-grid",
            spec: InputGeometry = LITE0_INPUT) -> ModelInput:
    image = image_tensor(decoded.image, spec)
    dct = None
    if with_dct:
        dct = dct_tensor(decoded, spec) if dct_source == "file-grid" else resized_dct_tensor(image, spec)
    return ModelInput(image=image, dct=dct, quality=decoded.quality)


def collate(inputs: list[ModelInput]) -> dict[str, torch.Tensor | None]:
    """Stack ModelInputs into the keyword arguments of ``Classifier.forward``."""
    with_dct = inputs[0].dct is not None
    return {
        "image": torch.stack([i.image for i in inputs]),
        "dct": torch.stack([i.dct for i in inputs]) if with_dct else None,
        # Non-JPEG inputs carry no compression: they count as quality 100.
        "quality": torch.tensor([100.0 if i.quality is None else float(i.quality) for i in inputs]),
    }
