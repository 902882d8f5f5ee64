"""Decoding and preprocessing on the model's device (nvJPEG on a GPU), for workers whose archive
asks for it (``afdserve build --gpu-decode``).

It mirrors ``decode_image`` + ``prepare`` with torch ops: the same header checks (Pillow reads
the header, the quantization tables and the EXIF orientation, which it does without decoding),
the same geometry, and the same drift map (``block_dct`` then an adaptive average pool, which
``pooled_block_dct`` equals). What can differ is pixels: a GPU decoder's IDCT and chroma
upsampling are not libjpeg-turbo's, and torchvision's antialiased resize is not Pillow's to the
last grey level. ``scripts/check_device_decode.py`` measures how far the model's answers move.

Anything the device decoder is not for (PNG, WebP, grey or CMYK JPEGs, files without an end
marker) returns None, and the caller decodes it with Pillow, which also words the errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from afdserve.imaging.dct import block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import (
    DEFAULT_MAX_PIXELS,
    exif_orientation,
    jpeg_grid_offset,
    read_header,
)
from afdserve.imaging.preprocess import (LITE0_INPUT, InputGeometry, ModelInput, dct_region, dct_size,
                                         resize_geometry, scale_and_offset)

__all__ = ["DeviceImage", "decode_jpeg_on_device", "prepare_on_device"]

_END_OF_IMAGE = b"\xff\xd9"


@dataclass(frozen=True)
class DeviceImage:
    pixels: torch.Tensor  # (3, H, W) uint8 RGB, upright, on the device
    quality: int | None
    grid_offset: tuple[int, int]


def decode_jpeg_on_device(data: bytes, device: torch.device,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> DeviceImage | None:
    """A colour JPEG decoded on ``device``, or None when Pillow should decode this body. Bodies
    that fail the header checks raise ImageDecodeError, as ``decode_image`` does."""
    header = read_header(data, max_pixels)
    # Pillow opens 3-channel JPEGs as "RGB"; "L" and "CMYK" go the Pillow way. A file cut short
    # is refused by Pillow but grey-filled by libjpeg-style decoders: Pillow decides those too.
    if header.format != "JPEG" or header.image.mode != "RGB" or not bytes(data).rstrip(b"\0").endswith(_END_OF_IMAGE):
        return None
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                             device=device)
    except RuntimeError:  # what the device decoder cannot take, Pillow decodes or refuses in words
        return None
    orientation = exif_orientation(header.image)
    stored_h, stored_w = pixels.shape[-2:]
    return DeviceImage(pixels=_upright(pixels, orientation), quality=header.quality,
                       grid_offset=jpeg_grid_offset(orientation, stored_w, stored_h))


def _upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    # The EXIF orientations as tensor ops on (C, H, W), the same transposes decode_image applies.
    if orientation == 2:
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-2, -1)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:
        return pixels.transpose(-2, -1)
    if orientation == 6:  # stored rotated 90 degrees anticlockwise: turn it clockwise
        return pixels.rot90(-1, (-2, -1))
    if orientation == 7:
        return pixels.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return pixels.rot90(1, (-2, -1))
    return pixels


def prepare_on_device(image: DeviceImage, with_dct: bool = True, spec: InputGeometry = LITE0_INPUT) -> ModelInput:
    """``prepare`` for a DeviceImage: the model input and drift map, left on the image's device."""
    pixels = image.pixels
    height, width = pixels.shape[-2:]
    size = spec.input_size
    if (width, height) == (size, size):
        crop = pixels
    else:
        from torchvision.transforms.v2.functional import resize

        resized_w, resized_h, left, top = resize_geometry(width, height, spec)
        # Antialiased bilinear on uint8, rounded to uint8 as Pillow's resize is.
        resized = resize(pixels, [resized_h, resized_w], antialias=True)
        crop = resized[:, top:top + size, left:left + size]
    scale, offset = (torch.tensor(v, device=crop.device).view(3, 1, 1) for v in scale_and_offset(spec))
    model_image = crop.float() / scale - offset
    dct = None
    if with_dct:
        (left, top, right, bottom), offset = dct_region(width, height, image.grid_offset, spec)
        region = pixels[:, top:bottom, left:right].float()
        dct = F.adaptive_avg_pool2d(block_dct(rgb_to_ycbcr(region), offset), dct_size(spec))
    return ModelInput(image=model_image, dct=dct, quality=image.quality)
