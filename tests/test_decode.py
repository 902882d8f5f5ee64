import io
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from afdserve.imaging.dct import block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import (
    DEFAULT_MAX_PIXELS,
    STD_CHROMINANCE_QTABLE,
    STD_LUMINANCE_QTABLE,
    DecodedImage,
    ImageDecodeError,
    _ijg_scaled_table,
    decode_image,
    estimate_jpeg_quality,
    jpeg_grid_offset,
)
from test_dct import image_dct
from images import (
    encode,
    exif_orientation,
    flat_block_image,
    jpeg_with_sof_size,
    photo,
    png_claiming_size,
    stored_for_orientation,
    webp_vp8x_claiming_size,
)


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(pixels(a) - pixels(b)).mean())


def assert_decode_error(data: bytes, status: int, *fragments: str, **kwargs) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, **kwargs)
    err = info.value
    assert err.status == status, str(err)
    for fragment in fragments:
        assert fragment.lower() in str(err).lower()
    return err


@pytest.fixture
def no_pixel_allocation(monkeypatch):
    """Fails the test if any image's pixel buffer gets allocated (load_prepare -> core.new)."""
    calls = []
    original = ImageFile.ImageFile.load_prepare

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", spy)
    return calls


# --- accepted formats -------------------------------------------------------------------------


def test_baseline_jpeg():
    src = photo("chelsea")
    out = decode_image(encode(src, quality=90))
    assert isinstance(out, DecodedImage)
    assert out.format == "JPEG" and out.image.mode == "RGB" and out.image.size == (451, 300)
    assert mean_abs_diff(out.image, src) < 4
    assert out.grid_offset == (0, 0)
    assert sorted(out.quantization) == [0, 1]
    assert all(len(t) == 64 for t in out.quantization.values())


def test_progressive_jpeg_decodes_like_baseline():
    src = photo("coffee")
    progressive = encode(src, quality=80, progressive=True)
    assert b"\xff\xc2" in progressive  # SOF2: really progressive
    out = decode_image(progressive)
    base = decode_image(encode(src, quality=80))
    assert out.image.size == (600, 400) and out.quality == 80
    assert mean_abs_diff(out.image, base.image) < 0.5


def test_grayscale_jpeg_becomes_rgb_with_one_table():
    src = photo("camera")
    out = decode_image(encode(src, quality=75))
    assert out.image.mode == "RGB" and out.image.size == (512, 512)
    rgb = pixels(out.image)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert list(out.quantization) == [0]
    assert abs(out.quality - 75) <= 2


def test_cmyk_jpeg_with_adobe_marker():
    src = photo("chelsea")
    data = encode(src.convert("CMYK"), quality=95)
    assert b"Adobe" in data  # libjpeg writes CMYK with the Adobe (inverted) convention
    out = decode_image(data)
    assert out.image.mode == "RGB"
    assert mean_abs_diff(out.image, src) < 4


def test_mpo_counts_as_jpeg_and_keeps_first_frame():
    left, right = photo("chelsea"), photo("chelsea").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    data = encode(left, "MPO", save_all=True, append_images=[right], quality=85)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = decode_image(data)
    assert out.format == "JPEG" and abs(out.quality - 85) <= 2
    assert mean_abs_diff(out.image, left) < mean_abs_diff(out.image, right) / 4


def test_one_pixel_jpeg():
    out = decode_image(encode(Image.new("RGB", (1, 1), (200, 30, 90))))
    assert out.image.size == (1, 1) and out.grid_offset == (0, 0)
    r, g, b = out.image.getpixel((0, 0))
    assert abs(r - 200) < 6 and abs(g - 30) < 6 and abs(b - 90) < 6
    assert image_dct(out).shape == (192, 1, 1)


def test_png_rgba_composited_on_white():
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 100, 200)
    rgba[:, :10, 3] = 0  # transparent
    rgba[:, 10:20, 3] = 255  # opaque
    rgba[:, 20:, 3] = 128  # half
    out = decode_image(encode(Image.fromarray(rgba), "PNG"))
    assert out.format == "PNG" and out.image.mode == "RGB"
    assert out.quantization is None and out.quality is None and out.grid_offset == (0, 0)
    px = pixels(out.image)
    assert (px[:, :10] == 255).all()
    assert (px[:, 10:20] == (10, 100, 200)).all()
    assert np.abs(px[:, 20:] - np.array([132, 177, 227])).max() <= 1


def test_png_palette_with_and_without_transparency():
    src = photo("chelsea").quantize(colors=16)
    assert src.mode == "P"
    out = decode_image(encode(src, "PNG"))
    assert (pixels(out.image) == pixels(src.convert("RGB"))).all()

    idx = np.asarray(src)
    transparent = int(idx[0, 0])
    out = decode_image(encode(src, "PNG", transparency=transparent))
    px, expected = pixels(out.image), pixels(src.convert("RGB"))
    assert (px[idx == transparent] == 255).all()
    assert (px[idx != transparent] == expected[idx != transparent]).all()


def test_png_grey_modes():
    grey16 = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    out = decode_image(encode(Image.fromarray(grey16), "PNG"))
    assert (pixels(out.image)[..., 0] == grey16 >> 8).all()  # top byte, not clipped at 255

    la = Image.merge("LA", [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 0)])
    assert (pixels(decode_image(encode(la, "PNG")).image) == 255).all()

    bilevel = Image.fromarray(np.eye(8, dtype=bool))
    out = decode_image(encode(bilevel, "PNG"))
    assert (pixels(out.image)[..., 1] == np.eye(8) * 255).all()


@pytest.mark.parametrize("lossless", [False, True])
def test_webp(lossless):
    src = photo("chelsea")
    out = decode_image(encode(src, "WEBP", lossless=lossless, quality=90))
    assert out.format == "WEBP" and out.image.mode == "RGB" and out.image.size == src.size
    assert out.quantization is None and out.grid_offset == (0, 0)
    assert mean_abs_diff(out.image, src) < (0.01 if lossless else 4)


def test_webp_with_alpha():
    rgba = Image.new("RGBA", (16, 16), (0, 0, 255, 0))
    out = decode_image(encode(rgba, "WEBP", lossless=True))
    assert (pixels(out.image) == 255).all()


def test_png_exif_orientation_applied_without_grid():
    src = photo("chelsea")
    out = decode_image(encode(stored_for_orientation(src, 6), "PNG", exif=exif_orientation(6)))
    assert out.image.size == src.size and out.grid_offset == (0, 0)
    assert (pixels(out.image) == pixels(src)).all()


# --- EXIF orientation and the block grid --------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_upright_pixels(orientation):
    upright = photo("chelsea")
    data = encode(stored_for_orientation(upright, orientation), quality=95, exif=exif_orientation(orientation))
    out = decode_image(data)
    assert out.image.size == upright.size
    assert mean_abs_diff(out.image, upright) < 2.5
    # Same pixels as Pillow's own exif_transpose of the same file.
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert (pixels(out.image) == pixels(reference)).all()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_is_not_ignored(orientation):
    upright = photo("coffee")
    stored = stored_for_orientation(upright, orientation)
    out = decode_image(encode(stored, quality=95, exif=exif_orientation(orientation)))
    assert out.image.size == upright.size
    if stored.size == upright.size:  # 180: sizes agree, so make sure the pixels do too
        assert mean_abs_diff(out.image, stored) > 10 * mean_abs_diff(out.image, upright)


def test_orientation_table_for_odd_sizes():
    # stored 43 wide (43 % 8 = 3), 29 high (29 % 8 = 5)
    expected = {1: (0, 0), 2: (0, 3), 3: (5, 3), 4: (5, 0), 5: (0, 0), 6: (0, 5), 7: (3, 5), 8: (3, 0)}
    assert {o: jpeg_grid_offset(o, 43, 29) for o in range(1, 9)} == expected


# What a viewer does to the stored image for each EXIF orientation (EXIF 2.3, Pillow's exif_transpose).
UPRIGHT_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _edge_pad_to_blocks(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    pad = [(0, -h % 8), (0, -w % 8)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="edge")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_grid_offset_matches_stored_blocks(orientation):
    # The stored image padded to whole blocks (as the encoder did) and then turned upright holds
    # exactly the upright image's blocks on the reported grid, padding included.
    upright = photo("chelsea").crop((0, 0, 213, 150))  # 213 % 8 = 5, 150 % 8 = 6
    data = encode(stored_for_orientation(upright, orientation), quality=90, exif=exif_orientation(orientation))
    out = decode_image(data)

    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    padded = Image.fromarray(_edge_pad_to_blocks(stored))
    op = UPRIGHT_FOR_ORIENTATION[orientation]
    padded_upright = padded if op is None else padded.transpose(op)

    def dct_of(im, offset):
        return block_dct(torch.from_numpy(np.array(im, dtype=np.float64)).permute(2, 0, 1), offset)

    got = dct_of(out.image, out.grid_offset)
    want = dct_of(padded_upright, (0, 0))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)
    if out.grid_offset != (0, 0):
        wrong = dct_of(out.image, (0, 0))
        assert wrong.shape != want.shape or (wrong - want).abs().max() > 0.1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_grid_offset_lands_on_flat_blocks(orientation):
    # Constant blocks on the stored grid stay constant through JPEG; on the right upright grid
    # every block then has no AC energy, on a wrong one the block edges show up as AC.
    stored = flat_block_image(43, 29, seed=orientation)
    data = encode(stored, quality=95, exif=exif_orientation(orientation))
    out = decode_image(data)
    luma = rgb_to_ycbcr(torch.from_numpy(np.array(out.image, dtype=np.float64)).permute(2, 0, 1))[:1]
    ac = block_dct(luma, out.grid_offset)[1:]
    assert ac.abs().max() < 1e-6
    for dy in range(8):
        for dx in range(8):
            if (dy, dx) != out.grid_offset:
                assert block_dct(luma, (dy, dx))[1:].abs().max() > 0.05


# --- quality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90])
def test_quality_estimate_colour_photo(quality):
    out = decode_image(encode(photo("coffee"), quality=quality))
    assert abs(out.quality - quality) <= 2


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90])
def test_quality_estimate_grayscale_photo(quality):
    out = decode_image(encode(photo("camera"), quality=quality))
    assert list(out.quantization) == [0]
    assert abs(out.quality - quality) <= 2


def test_quantization_is_natural_order():
    # Pillow writes the DQT segment zig-zag but reports natural order; q=50 is Annex K verbatim.
    out = decode_image(encode(photo("chelsea"), quality=50))
    assert out.quantization[0] == list(STD_LUMINANCE_QTABLE)
    assert out.quantization[1] == list(STD_CHROMINANCE_QTABLE)
    custom = list(range(1, 65))
    out = decode_image(encode(photo("chelsea"), qtables=[custom, custom]))
    assert out.quantization[0] == custom


def test_quality_estimate_inverts_ijg_scaling_exactly():
    for q in range(1, 101):
        tables = {0: _ijg_scaled_table(STD_LUMINANCE_QTABLE, q), 1: _ijg_scaled_table(STD_CHROMINANCE_QTABLE, q)}
        assert estimate_jpeg_quality(tables) == q
        assert estimate_jpeg_quality({0: tables[0]}) == q


def test_quality_estimate_edge_cases():
    assert estimate_jpeg_quality({0: [1] * 64}) == 100
    assert estimate_jpeg_quality({0: [255] * 64, 1: [255] * 64}) == 1
    with pytest.raises(ValueError):
        estimate_jpeg_quality({})
    with pytest.raises(ValueError):
        estimate_jpeg_quality({0: [1] * 63})


# --- refusals -------------------------------------------------------------------------------


def test_empty_body():
    assert_decode_error(b"", 400, "empty")


def test_random_bytes():
    rng = np.random.default_rng(1)
    assert_decode_error(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), 400, "not an image")


def test_text():
    assert_decode_error(b"hello, this is not a picture\n" * 20, 400, "not an image")
    assert_decode_error(b'{"image": "cat.jpg"}', 400, "not an image")


@pytest.mark.parametrize(
    "fmt, name",
    [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("ICO", "ICO")],
)
def test_other_image_formats_refused(fmt, name):
    err = assert_decode_error(encode(photo("chelsea").resize((64, 48)), fmt), 415, name, "JPEG, PNG or WebP")
    assert str(err) == f"unsupported image format {name}: send JPEG, PNG or WebP"


def test_svg_refused():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    assert_decode_error(svg, 415, "SVG")
    assert_decode_error(b"  <svg viewBox='0 0 1 1'/>", 415, "SVG")


def test_documents_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat.jpg", encode(photo("chelsea")))
    assert_decode_error(buf.getvalue(), 415, "ZIP")
    assert_decode_error(encode(photo("chelsea"), "PDF"), 415, "PDF")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_refused(fmt):
    frames = [photo("chelsea").resize((32, 24)), Image.new("RGB", (32, 24), "red")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert_decode_error(data, 415, "animated")


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg(progressive):
    data = encode(photo("chelsea"), quality=90, progressive=progressive)
    assert_decode_error(data[: len(data) // 2], 400, "truncated or corrupt JPEG")
    assert_decode_error(data[:300], 400, "JPEG")
    assert_decode_error(data[:2], 400, "JPEG")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_truncated_png_and_webp(fmt):
    data = encode(photo("chelsea"), fmt)
    assert_decode_error(data[: len(data) // 2], 400, "corrupt")


def test_garbage_after_jpeg_magic():
    assert_decode_error(b"\xff\xd8\xff\xe0" + b"\x00" * 200, 400, "JPEG")


def test_truncation_is_not_silently_accepted():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nobody switched it on globally


# --- size limits ----------------------------------------------------------------------------


def test_pixel_limit_message():
    err = assert_decode_error(encode(photo("chelsea")), 413, "451x300", "100,000", max_pixels=100_000)
    assert "135,300" in str(err)
    assert decode_image(encode(photo("chelsea")), max_pixels=451 * 300).image.size == (451, 300)


@pytest.mark.parametrize("side", [30_000, 8_000])  # Pillow's own bomb check / only ours (64 M > 40 M)
def test_png_claiming_huge_size(no_pixel_allocation, side):
    assert_decode_error(png_claiming_size(side, side), 413)
    assert no_pixel_allocation == []


@pytest.mark.parametrize("side", [30_000, 7_000])
def test_jpeg_sof_claiming_huge_size(no_pixel_allocation, side):
    data = jpeg_with_sof_size(encode(photo("chelsea").resize((64, 48))), side, side)
    # Either our message or Pillow's bomb message names the size, so the patch took.
    assert_decode_error(data, 413, f"{side}x{side}" if side == 7_000 else f"{side * side} pixels")
    assert no_pixel_allocation == []


@pytest.mark.parametrize("side", [16_000, 7_000])
def test_webp_header_claiming_huge_size(no_pixel_allocation, side):
    assert_decode_error(webp_vp8x_claiming_size(side, side), 413, f"{side}x{side}")
    assert no_pixel_allocation == []


def test_pixel_spy_sees_normal_decodes(no_pixel_allocation):
    decode_image(encode(photo("chelsea")))
    assert no_pixel_allocation == [(451, 300)]


def test_default_limit():
    assert DEFAULT_MAX_PIXELS == 40_000_000


# --- fuzz: bad bytes only ever raise ImageDecodeError ---------------------------------------

_SEEDS = {
    "jpeg": encode(photo("chelsea").resize((40, 24)), quality=80),
    "progressive": encode(photo("chelsea").resize((40, 24)), quality=80, progressive=True),
    "png": encode(photo("chelsea").resize((40, 24)), "PNG"),
    "webp": encode(photo("chelsea").resize((40, 24)), "WEBP"),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(sorted(_SEEDS)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    cut=st.floats(0.05, 1.0),
)
def test_mutated_files_never_raise_anything_else(seed, edits, cut):
    data = bytearray(_SEEDS[seed])
    for where, value in edits:
        data[int(where * len(data))] = value
    data = bytes(data[: max(1, int(cut * len(data)))])
    try:
        out = decode_image(data)
    except ImageDecodeError as e:
        assert e.status in (400, 413, 415)
    else:
        assert out.image.mode == "RGB"
        out.image.tobytes()


# --- reduced-size decode ------------------------------------------------------------------------


@pytest.mark.parametrize("min_side, reduction", [(512, 2), (256, 4), (100, 8), (2000, 1)])
def test_reduced_decode_keeps_the_shorter_side(min_side, reduction):
    big = photo("coffee").resize((2400, 1600))  # coffee is 600x400
    full = decode_image(encode(big, quality=90))
    out = decode_image(encode(big, quality=90), min_shorter_side=min_side)
    assert out.reduction == reduction
    assert out.image.size == (2400 // reduction, 1600 // reduction)
    assert min(out.image.size) >= min(min_side, 1600)
    assert out.quality == full.quality == 90
    assert mean_abs_diff(out.image, full.image.resize(out.image.size, Image.Resampling.BOX)) < 3


@pytest.mark.parametrize("orientation", [6, 8])
def test_reduced_decode_is_upright(orientation):
    upright = photo("chelsea").resize((902, 1202))  # portrait once upright
    data = encode(stored_for_orientation(upright, orientation), quality=95, exif=exif_orientation(orientation))
    out = decode_image(data, min_shorter_side=300)
    assert out.reduction == 2 and out.image.size == (451, 601)
    assert mean_abs_diff(out.image, upright.resize((451, 601), Image.Resampling.BOX)) < 4


def test_reduced_decode_leaves_other_formats_whole():
    big = photo("coffee").resize((1200, 800))
    for fmt in ("PNG", "WEBP"):
        out = decode_image(encode(big, fmt), min_shorter_side=200)
        assert out.reduction == 1 and out.image.size == (1200, 800)
