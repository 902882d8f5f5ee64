"""The device decode path (afdserve.imaging.on_device), run on the CPU: torchvision's JPEG decoder
and torch preprocessing against Pillow's. On a GPU the pixels may differ more (nvJPEG's IDCT);
scripts/check_device_decode.py measures that where a GPU is lent."""

import numpy as np
import pytest
import torch
from PIL import Image

from afdserve.imaging.decode import ImageDecodeError, decode_image
from afdserve.imaging.on_device import decode_jpeg_on_device, prepare_on_device
from afdserve.imaging.preprocess import prepare
from images import encode, exif_orientation, photo, stored_for_orientation

CPU = torch.device("cpu")


def _both(data: bytes):
    return decode_image(data), decode_jpeg_on_device(data, CPU)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_decode_gives_pillows_upright_pixels_and_grid(orientation):
    upright = photo("chelsea").crop((0, 0, 451, 299))  # odd sizes: the grid moves when flipped
    data = encode(stored_for_orientation(upright, orientation), quality=90, exif=exif_orientation(orientation))
    pillow, device = _both(data)
    assert device is not None
    assert device.grid_offset == pillow.grid_offset and device.quality == pillow.quality
    ours = device.pixels.permute(1, 2, 0).numpy().astype(np.int16)
    theirs = np.asarray(pillow.image).astype(np.int16)
    assert ours.shape == theirs.shape
    # Both are libjpeg-turbo on the CPU; allow a grey level for a different build's upsampling.
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("size", [(500, 375), (224, 224), (300, 1000), (37, 19)])
def test_device_preparation_matches_the_pillow_path(size):
    im = photo("coffee").resize(size, Image.Resampling.BICUBIC)
    data = encode(im, quality=30)
    pillow, device = _both(data)
    want, got = prepare(pillow), prepare_on_device(device)
    assert got.quality == want.quality
    # Resizing: torchvision's antialiased uint8 bilinear against Pillow's, off by a grey level at
    # most (measured: 1 level on at most ~8% of values).
    assert (got.image - want.image).abs().max() <= 1.01 / 127.5
    assert (got.image - want.image).abs().mean() < 0.1 / 127.5
    # The drift map: the same pixels through the per-block DCT and a pool, against the pooled one.
    assert torch.allclose(got.dct, want.dct, atol=1e-4)


def test_what_the_device_decoder_is_not_for_goes_to_pillow():
    grey = photo("camera")
    assert decode_jpeg_on_device(encode(grey, quality=80), CPU) is None  # grey JPEG
    assert decode_jpeg_on_device(encode(photo(), "PNG"), CPU) is None
    cut = encode(photo(), quality=80)
    assert decode_jpeg_on_device(cut[: len(cut) // 2], CPU) is None  # no end marker: Pillow refuses it
    with pytest.raises(ImageDecodeError):
        decode_jpeg_on_device(b"not an image at all", CPU)
