"""The one preprocessing path from a decoded image to model inputs. Serving, evaluation and
training all call ``prepare``, so what is measured is what is served.

Geometry (what EfficientNet-Lite0's weights were measured with): shorter side resized to 256
(bilinear), centre crop 224, pixels scaled to [-1, 1]. The DCT coefficients for the drift map are
taken on the file's own 8x8 grid, over the blocks that cover the crop, and pooled to 28x28 (the
input's 1/8 geometry) so a batch stacks into fixed shapes.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from afdserve.imaging.dct import block_dct, pooled_block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import DecodedImage

RESIZE_SHORTER = 256
INPUT_SIZE = 224
BLOCK = 8
DCT_SIZE = INPUT_SIZE // BLOCK
# Models without a drift map may have large JPEGs decoded at 1/2..1/8 scale, down to this shorter
# side: twice the resize target keeps the model input within 0.002 (mean, [-1, 1] units) of a full
# decode, and top-1 agreeing on 99.1% of 700 photos (results/reduced-decode/check.md).
REDUCED_DECODE_SHORTER_SIDE = 2 * RESIZE_SHORTER


@dataclass
class ModelInput:
    image: torch.Tensor  # (3, 224, 224) in [-1, 1]
    dct: torch.Tensor | None  # (192, 28, 28), or None for models without an AFD module
    quality: float | None  # estimated IJG quality; None when the image is not a JPEG


def resize_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of 'resize shorter side to 256, crop 224'."""
    scale = RESIZE_SHORTER / min(width, height)
    resized_w, resized_h = max(1, round(width * scale)), max(1, round(height * scale))
    return resized_w, resized_h, (resized_w - INPUT_SIZE) // 2, (resized_h - INPUT_SIZE) // 2


def crop_box(width: int, height: int, offset: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    """The crop, in source pixels, of 'resize shorter side to 256, crop 224': the centre one, or
    the one at ``offset`` = (left, top) in the resized image (training's random crops).

    An image already at the input size is taken whole: a client that cropped to 224 itself (as
    ImageNet-C's JPEG protocol does before compressing) gets its pixels, and its file's blocks,
    fed as they are rather than upscaled and cropped again."""
    if (width, height) == (INPUT_SIZE, INPUT_SIZE):
        return (0.0, 0.0, float(INPUT_SIZE), float(INPUT_SIZE))
    resized_w, resized_h, left, top = resize_geometry(width, height)
    if offset is not None:
        left, top = offset
    sx, sy = width / resized_w, height / resized_h
    return (left * sx, top * sy, (left + INPUT_SIZE) * sx, (top + INPUT_SIZE) * sy)


def input_crop(image: Image.Image, box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """RGB PIL image -> the 224x224 RGB image the model sees (``box``: from ``crop_box``, the
    centre crop when None)."""
    # Resizing only the crop box gives the same pixels as resizing everything and cropping,
    # without ever holding a huge resized image (e.g. a 1x10000 strip resized to 256 high).
    box = crop_box(*image.size) if box is None else box
    return image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, box=box)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, 224, 224) float in [-1, 1]."""
    # Scaled in numpy: torch would spread these 150K-element ops over its threads, whose
    # spin-waits then cost more CPU than the arithmetic. The (3, H, W) view is channels-last.
    x = np.asarray(input_crop(image), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(x).permute(2, 0, 1)


def model_range(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) float image in [0, 1] (a restorer's) -> the model's input scaling, [-1, 1]:
    what ``image_tensor`` gives for the same pixels times 255. Differentiable, so a restorer can
    be trained through the classifier."""
    return image * 2.0 - 1.0


def dct_tensor(decoded: DecodedImage) -> torch.Tensor:
    """(192, 28, 28) block DCT coefficients of the blocks covering the crop, on the file's grid."""
    if decoded.reduction != 1:
        raise ValueError("the drift map needs a full-size decode: the file's blocks are lost at reduced scale")
    image = decoded.image
    (left, top, right, bottom), offset = dct_region(image.width, image.height, decoded.grid_offset)
    region = np.asarray(image.crop((left, top, right, bottom)))
    # Blocks averaged into the input's 1/8 geometry (or repeated, for images smaller than that).
    return pooled_block_dct(region, offset, DCT_SIZE)


def dct_region(width: int, height: int, grid_offset: tuple[int, int]):
    """((left, top, right, bottom), grid offset inside it): the crop widened to whole blocks of the
    file's grid (blocks start at offset + 8k), as far as the image reaches."""
    x0, y0, x1, y1 = crop_box(width, height)
    dy, dx = grid_offset
    left = max(0, dx + BLOCK * math.floor((x0 - dx) / BLOCK))
    top = max(0, dy + BLOCK * math.floor((y0 - dy) / BLOCK))
    right = min(width, dx + BLOCK * math.ceil((x1 - dx) / BLOCK))
    bottom = min(height, dy + BLOCK * math.ceil((y1 - dy) / BLOCK))
    box = (left, top, max(right, left + 1), max(bottom, top + 1))
    return box, ((dy - top) % BLOCK, (dx - left) % BLOCK)


def resized_dct_tensor(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, 224, 224) model input in [-1, 1] -> (..., 192, 28, 28): the block DCT of the
    resized input on its own grid, which the JPEG's blocks no longer line up with (the public AFD
    code's choice; kept as an ablation against ``dct_tensor``)."""
    return block_dct(rgb_to_ycbcr((image.float() + 1.0) * 127.5))


def prepare(decoded: DecodedImage, with_dct: bool = True, dct_source: str = "file-grid") -> ModelInput:
    image = image_tensor(decoded.image)
    dct = None
    if with_dct:
        dct = dct_tensor(decoded) if dct_source == "file-grid" else resized_dct_tensor(image)
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
