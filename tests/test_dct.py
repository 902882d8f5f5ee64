import math

import numpy as np
import pytest
import torch
from PIL import Image

from afdserve.imaging.dct import ZIGZAG_ORDER, block_dct, dct_matrix, pooled_block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import DecodedImage, decode_image
from images import encode, photo


def image_dct(decoded: DecodedImage) -> torch.Tensor:
    """The reference the pooled serving DCT is checked against: (192, Hb, Wb) zig-zag block DCT of
    the decoded image's YCbCr planes on its JPEG grid."""
    rgb = torch.from_numpy(np.array(decoded.image.convert("RGB"), dtype=np.float32))
    return block_dct(rgb_to_ycbcr(rgb.permute(2, 0, 1)), decoded.grid_offset)


def alpha(k: int) -> float:
    return math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8)


def reference_block_dct(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Straight from the formula: (Hb, Wb, 8, 8) natural-order coefficients, float64."""
    h, w = plane.shape
    top, left = (8 - dy) % 8, (8 - dx) % 8
    padded = np.pad(plane, ((top, (-(h + top)) % 8), (left, (-(w + left)) % 8)), mode="edge")
    f = (padded.astype(np.float64) - 128) / 128
    hb, wb = f.shape[0] // 8, f.shape[1] // 8
    out = np.zeros((hb, wb, 8, 8))
    for i in range(hb):
        for j in range(wb):
            block = f[8 * i : 8 * i + 8, 8 * j : 8 * j + 8]
            for u in range(8):  # vertical frequency, along rows y
                for v in range(8):  # horizontal frequency, along columns x
                    s = 0.0
                    for y in range(8):
                        for x in range(8):
                            s += (
                                block[y, x]
                                * math.cos((2 * y + 1) * u * math.pi / 16)
                                * math.cos((2 * x + 1) * v * math.pi / 16)
                            )
                    out[i, j, u, v] = alpha(u) * alpha(v) * s
    return out


def to_zigzag_channels(natural: np.ndarray) -> np.ndarray:
    """(Hb, Wb, 8, 8) -> (64, Hb, Wb) in zig-zag order."""
    hb, wb = natural.shape[:2]
    flat = natural.reshape(hb, wb, 64)[..., ZIGZAG_ORDER.numpy()]
    return flat.transpose(2, 0, 1)


def test_dct_matrix_is_orthonormal_dct2():
    d = dct_matrix()
    assert d.shape == (8, 8) and d.dtype == torch.float32
    torch.testing.assert_close(d @ d.T, torch.eye(8), atol=1e-6, rtol=0)
    assert d[0, 3].item() == pytest.approx(math.sqrt(1 / 8))
    assert d[2, 5].item() == pytest.approx(math.sqrt(2 / 8) * math.cos(11 * 2 * math.pi / 16))
    assert dct_matrix(4).shape == (4, 4)


def test_zigzag_order():
    assert ZIGZAG_ORDER.dtype == torch.long and ZIGZAG_ORDER.shape == (64,)
    assert ZIGZAG_ORDER[:16].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5]
    assert ZIGZAG_ORDER[-4:].tolist() == [47, 55, 62, 63]
    assert sorted(ZIGZAG_ORDER.tolist()) == list(range(64))
    diagonal = [(k // 8) + (k % 8) for k in ZIGZAG_ORDER.tolist()]
    assert diagonal == sorted(diagonal)


@pytest.mark.parametrize(
    "h, w, offset",
    [(8, 8, (0, 0)), (16, 24, (0, 0)), (13, 21, (0, 0)), (13, 21, (3, 5)), (9, 7, (7, 1)), (1, 1, (4, 0))],
)
def test_block_dct_matches_formula(h, w, offset):
    rng = np.random.default_rng(h * 100 + w)
    planes = rng.uniform(0, 255, size=(2, h, w))
    got = block_dct(torch.from_numpy(planes), offset)
    want = np.concatenate([to_zigzag_channels(reference_block_dct(p, *offset)) for p in planes])
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    # float32 path (what the models use) agrees too
    got32 = block_dct(torch.from_numpy(planes).float(), offset)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), want, atol=2e-5)


def test_block_count_with_offset():
    # rows: 13 high, grid at 3 -> blocks [-5, 2], [3, 10], [11, 18]; columns: 21 wide, grid at 5 ->
    # [-3, 4], [5, 12], [13, 20]
    assert block_dct(torch.zeros(1, 13, 21), (3, 5)).shape == (64, 3, 3)
    assert block_dct(torch.zeros(1, 13, 21)).shape == (64, 2, 3)
    assert block_dct(torch.zeros(1, 16, 16), (0, 1)).shape == (64, 2, 3)


def test_constant_block_dc():
    out = block_dct(torch.full((1, 8, 8), 200.0))
    assert out[0, 0, 0].item() == pytest.approx(8 * (200 - 128) / 128)
    assert out[1:].abs().max().item() < 1e-5
    assert block_dct(torch.full((3, 20, 20), 128.0)).abs().max().item() < 1e-6


def test_leading_batch_dims_and_channel_layout():
    rng = np.random.default_rng(7)
    planes = torch.from_numpy(rng.uniform(0, 255, size=(2, 3, 3, 17, 10)))
    out = block_dct(planes, (2, 6))
    assert out.shape == (2, 3, 192, 3, 2)  # rows [-6, 1] [2, 9] [10, 17]; cols [-2, 5] [6, 13]
    for c in range(3):
        single = block_dct(planes[1, 2, c : c + 1], (2, 6))
        torch.testing.assert_close(out[1, 2, c * 64 : (c + 1) * 64], single)


def test_uint8_input_is_accepted():
    planes = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(block_dct(planes), block_dct(planes.float()))


@pytest.mark.parametrize("offset", [(8, 0), (0, -1)])
def test_bad_offset(offset):
    with pytest.raises(ValueError):
        block_dct(torch.zeros(1, 8, 8), offset)


def test_rgb_to_ycbcr_matches_pillow():
    im = photo("coffee")
    rgb = torch.from_numpy(np.array(im, dtype=np.float32)).permute(2, 0, 1)
    ours = rgb_to_ycbcr(rgb)
    pillow = torch.from_numpy(np.array(im.convert("YCbCr"), dtype=np.float32)).permute(2, 0, 1)
    assert ours.shape == (3, 400, 600)
    assert (ours - pillow).abs().max().item() <= 1.5
    # batched, and pure colours land where JFIF puts them
    primaries = torch.tensor([[255.0, 0, 0], [0, 255, 0], [0, 0, 255]]).T.reshape(1, 3, 1, 3)
    ycc = rgb_to_ycbcr(primaries)[0, :, 0]
    torch.testing.assert_close(ycc[:, 0], torch.tensor([76.245, 84.972, 255.5]), atol=1e-3, rtol=0)


def test_grayscale_has_no_chroma_coefficients():
    out = image_dct(decode_image(encode(photo("camera"), quality=90)))
    assert out.shape == (192, 64, 64)
    assert out[64:].abs().max().item() < 1e-4  # Cb = Cr = 128 -> 0 after the level shift
    assert out[0].abs().max().item() > 1  # and the luma is not empty


def test_image_dct_uses_ycbcr_and_grid():
    src = photo("chelsea")  # 451x300
    decoded = decode_image(encode(src, quality=90))
    out = image_dct(decoded)
    assert out.shape == (192, 38, 57) and out.dtype == torch.float32
    rgb = torch.from_numpy(np.array(decoded.image, dtype=np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(out, block_dct(rgb_to_ycbcr(rgb)))

    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 -> grid at (300 % 8, 451 % 8)
    rotated = decode_image(encode(src, quality=90, exif=exif))
    assert rotated.grid_offset == (4, 3)
    assert image_dct(rotated).shape == (192, 38, 57)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 300), (375, 500), (231, 229), (30, 17), (224, 224), (1003, 77)])
@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (7, 1)])
def test_pooled_block_dct_is_the_pooled_transform_of_every_block(h, w, offset):
    # The fast path averages blocks before one transform per bin; by linearity it must equal
    # transforming every block and pooling, including bins that overlap or repeat.
    pixels = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    planes = rgb_to_ycbcr(torch.from_numpy(pixels).permute(2, 0, 1).double())
    want = torch.nn.functional.adaptive_avg_pool2d(block_dct(planes, offset), 28)
    got = pooled_block_dct(pixels, offset, 28)
    assert got.shape == (192, 28, 28)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=0)


def test_pooled_block_dct_refuses_what_is_not_uint8_rgb():
    with pytest.raises(ValueError):
        pooled_block_dct(np.zeros((8, 8, 3), dtype=np.float32), (0, 0), 28)
    with pytest.raises(ValueError):
        pooled_block_dct(np.zeros((0, 8, 3), dtype=np.uint8), (0, 0), 28)
