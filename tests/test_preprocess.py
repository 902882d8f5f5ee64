import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import (DCT_SIZE, INPUT_SIZE, collate, crop_box, dct_tensor,
                                         image_tensor, prepare)


def encoded(array, fmt="JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **kwargs)
    return out.getvalue()


def resize_then_crop(image: Image.Image) -> torch.Tensor:
    """The textbook geometry: shorter side to 256, then the centre 224."""
    w, h = image.size
    scale = 256 / min(w, h)
    resized = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    left, top = (resized.width - INPUT_SIZE) // 2, (resized.height - INPUT_SIZE) // 2
    crop = resized.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    return torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 127.5 - 1


@pytest.mark.parametrize("photo", [data.chelsea, data.coffee, data.astronaut])
def test_box_resize_equals_resize_then_crop(photo):
    image = Image.fromarray(photo())
    diff = (image_tensor(image) - resize_then_crop(image)).abs()
    assert diff.max() <= 1.5 / 127.5  # Pillow's rounding differs by at most one level
    assert (diff > 0).float().mean() < 0.01


def test_input_sized_images_pass_through_unchanged():
    pixels = np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    decoded = decode_image(encoded(pixels, "PNG"))
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(image_tensor(decoded.image), expected)
    assert crop_box(INPUT_SIZE, INPUT_SIZE) == (0, 0, INPUT_SIZE, INPUT_SIZE)


@pytest.mark.parametrize("size", [(1, 1), (5000, 3), (3, 4000), (451, 300), (224, 224)])
def test_fixed_shapes_for_any_geometry(size):
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    item = prepare(decode_image(encoded(pixels, quality=50)))
    assert item.image.shape == (3, INPUT_SIZE, INPUT_SIZE)
    assert item.dct.shape == (192, DCT_SIZE, DCT_SIZE)
    assert item.quality == 50


def test_dct_of_a_224_jpeg_is_its_own_blocks():
    decoded = decode_image(encoded(np.array(Image.fromarray(data.coffee()).resize((224, 224))), quality=20))
    coeffs = dct_tensor(decoded)
    # DC of block (0, 0) of Y: the mean of the first 8x8 luma block, level-shifted, times 8 / 128.
    luma = np.array(decoded.image.convert("YCbCr"))[:8, :8, 0].astype(float)
    assert coeffs[0, 0, 0].item() == pytest.approx((luma.mean() - 128) / 128 * 8, abs=0.1)


def test_collate_treats_non_jpegs_as_quality_100():
    png = prepare(decode_image(encoded(data.chelsea(), "PNG")))
    jpg = prepare(decode_image(encoded(data.chelsea(), quality=10)))
    batch = collate([png, jpg])
    assert batch["image"].shape == (2, 3, INPUT_SIZE, INPUT_SIZE)
    assert batch["quality"].tolist() == [100.0, 10.0]
    assert collate([prepare(decode_image(encoded(data.chelsea(), quality=10)), with_dct=False)])["dct"] is None


def test_the_drift_map_refuses_a_reduced_decode():
    decoded = decode_image(encoded(np.array(Image.fromarray(data.coffee()).resize((1200, 800)))),
                           min_shorter_side=256)
    assert decoded.reduction == 2
    with pytest.raises(ValueError, match="full-size decode"):
        dct_tensor(decoded)
