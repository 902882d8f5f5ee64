"""PSNR / SSIM / PSNR-B with the SwinIR JPEG-CAR conventions (afdserve.evaluation.restoration_metrics).

Checked against hand computations, straight-from-the-formula loop implementations and
scikit-image. Images come from scikit-image's bundled photos; nothing under /work/shared."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from skimage.metrics import structural_similarity

from afdserve.evaluation import restoration_metrics as rm
from images import photo

PEAK2 = 255.0**2


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Pillow encode at ``quality`` (standard IJG tables, 4:2:0 for colour) and decode."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())))


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return np.array(photo("chelsea"))  # RGB 300x451: neither side a multiple of 8


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return np.array(photo("camera"))  # gray 512x512


def skimage_ssim(a, b) -> float:
    channel_axis = -1 if np.ndim(a) == 3 else None
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )


# ---------------------------------------------------------------------------------------------
# Straight-from-the-formula references (loops; only for small images)
# ---------------------------------------------------------------------------------------------


def loop_ssim_gray(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004: 11x11 Gaussian window (sigma 1.5, sum 1), every window fully inside the
    image, population moments, C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean of the map."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            num = (2 * mx * my + c1) * (2 * cxy + c2)
            vals.append(num / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def loop_bef(img: np.ndarray, counts: str = "swinir") -> float:
    """Yim & Bovik's blocking effect factor of a gray image, pair by pair. Boundary pairs are
    (7,8), (15,16), ... along rows and along columns. Divisors: SwinIR's H*(W//8-1) + W*(H//8-1)
    or the number of boundary pairs actually visited."""
    img = img.astype(np.float64)
    h, w = img.shape
    d_b = d_bc = 0.0
    n_b_seen = n_bc_seen = 0
    for j in range(w - 1):  # horizontal neighbours (column j, j+1)
        s = float(((img[:, j] - img[:, j + 1]) ** 2).sum())
        if j % 8 == 7:
            d_b, n_b_seen = d_b + s, n_b_seen + h
        else:
            d_bc, n_bc_seen = d_bc + s, n_bc_seen + h
    for i in range(h - 1):  # vertical neighbours (row i, i+1)
        s = float(((img[i] - img[i + 1]) ** 2).sum())
        if i % 8 == 7:
            d_b, n_b_seen = d_b + s, n_b_seen + w
        else:
            d_bc, n_bc_seen = d_bc + s, n_bc_seen + w
    if counts == "swinir":
        n_b = h * (w // 8 - 1) + w * (h // 8 - 1)
        n_bc = h * (w - 1) + w * (h - 1) - n_b
    else:
        n_b, n_bc = n_b_seen, n_bc_seen
    d_b, d_bc = d_b / n_b, d_bc / n_bc
    eta = math.log2(8) / math.log2(min(h, w))
    return eta * (d_b - d_bc) if d_b > d_bc else 0.0


# ---------------------------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------------------------


def test_psnr_matches_hand_computation():
    a = np.full((4, 4), 100, np.uint8)
    b = a.copy()
    b[0, 0] = 116  # one error of 16 over 16 pixels: MSE = 256 / 16 = 16
    assert rm.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16), abs=1e-12)
    assert rm.psnr(a, b) == pytest.approx(36.0896, abs=1e-4)  # 20 log10(255 / 4)

    # Colour: one MSE over all pixels and channels (not a mean of per-channel PSNRs).
    x = np.zeros((2, 2, 3), np.uint8)
    y = x.copy()
    y[0, 0, 0] = 12  # 144 / 12 values
    y[1, 1, 2] = 6  # 36 / 12 values
    assert rm.psnr(x, y) == pytest.approx(10 * math.log10(255**2 / (180 / 12)), abs=1e-12)


def test_psnr_identical_is_inf_and_ssim_is_one(chelsea, camera):
    for img in (chelsea, camera):
        assert rm.psnr(img, img.copy()) == math.inf
        assert rm.ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)
        # PSNR-B of identical images is 10 log10(255^2 / BEF): finite when the image has
        # rougher block boundaries than interior, inf only when its BEF is 0.
        bef = rm.blocking_effect_factor(img)
        expected = math.inf if bef == 0 else 10 * math.log10(PEAK2 / bef)
        if img.ndim == 2:
            assert rm.psnr_b(img, img.copy()) == pytest.approx(expected)
    flat = np.full((16, 16), 7, np.uint8)
    assert rm.psnr_b(flat, flat.copy()) == math.inf


def test_psnr_agrees_with_skimage(chelsea):
    from skimage.metrics import peak_signal_noise_ratio

    jpeg = jpeg_roundtrip(chelsea, 20)
    expected = peak_signal_noise_ratio(chelsea, jpeg, data_range=255)
    assert rm.psnr(jpeg, chelsea) == pytest.approx(expected, abs=1e-10)


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------


def test_ssim_matches_formula_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (23, 19)).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-40, 41, x.shape), 0, 255).astype(np.uint8)
    assert rm.ssim(x, y) == pytest.approx(loop_ssim_gray(x, y), abs=1e-12)


def test_ssim_strips_cover_every_row():
    # Heights around the strip size: every valid window row is counted exactly once.
    rng = np.random.default_rng(1)
    for h in (11, 12, 18, 19, 20, 27, 37):
        x = rng.integers(0, 256, (h, 13)).astype(np.uint8)
        y = rng.integers(0, 256, (h, 13)).astype(np.uint8)
        assert rm.ssim(x, y) == pytest.approx(loop_ssim_gray(x, y), abs=1e-12), h


# Our SSIM convention (the official SwinIR/KAIR one: cv2 Gaussian 11x11 sigma 1.5, then the
# 5-pixel border of the filtered maps dropped, per-channel mean) IS scikit-image's
# structural_similarity with gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
# data_range=255: skimage's default truncate 3.5 gives radius int(3.5*1.5 + 0.5) = 5, i.e. the same
# 11 taps, and it too crops (win_size - 1) // 2 = 5 pixels before averaging. So they agree to
# rounding error, far inside the 1e-4 asked for.
@pytest.mark.parametrize("quality", [10, 40])
def test_ssim_agrees_with_skimage_gray(camera, quality):
    jpeg = jpeg_roundtrip(camera, quality)
    assert rm.ssim(jpeg, camera) == pytest.approx(skimage_ssim(jpeg, camera), abs=1e-9)


@pytest.mark.parametrize("quality", [10, 40])
def test_ssim_agrees_with_skimage_colour(chelsea, quality):
    jpeg = jpeg_roundtrip(chelsea, quality)
    assert rm.ssim(jpeg, chelsea) == pytest.approx(skimage_ssim(jpeg, chelsea), abs=1e-9)


def test_ssim_agrees_with_skimage_large_colour():
    ref = skdata.astronaut()  # 512x512 RGB
    noise = np.random.default_rng(2).normal(0, 12, ref.shape)
    noisy = np.clip(ref + noise, 0, 255).round().astype(np.uint8)
    assert rm.ssim(noisy, ref) == pytest.approx(skimage_ssim(noisy, ref), abs=1e-9)


def test_ssim_is_symmetric_and_below_one_when_images_differ(chelsea):
    jpeg = jpeg_roundtrip(chelsea, 10)
    assert rm.ssim(jpeg, chelsea) == pytest.approx(rm.ssim(chelsea, jpeg), abs=1e-12)
    assert 0.5 < rm.ssim(jpeg, chelsea) < 0.99


# ---------------------------------------------------------------------------------------------
# PSNR-B
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 48), (37, 45), (300, 451), (17, 9)])
def test_bef_matches_formula_loop(shape):
    rng = np.random.default_rng(3)
    # A blocky image (8x8 constant tiles plus a little noise) and a non-blocky one.
    tiles = rng.integers(0, 256, (shape[0] // 8 + 1, shape[1] // 8 + 1))
    blocky = np.kron(tiles, np.ones((8, 8)))[: shape[0], : shape[1]]
    blocky = np.clip(blocky + rng.normal(0, 3, shape), 0, 255).round().astype(np.uint8)
    noise = rng.integers(0, 256, shape).astype(np.uint8)
    for img in (blocky, noise):
        for counts in ("swinir", "exact"):
            assert rm.blocking_effect_factor(img, bef_counts=counts) == pytest.approx(
                loop_bef(img, counts), rel=1e-12, abs=1e-12
            )
    assert rm.blocking_effect_factor(blocky) > 0


def test_psnr_b_formula_gray(camera):
    jpeg = jpeg_roundtrip(camera, 10)
    mse = np.mean((jpeg.astype(float) - camera) ** 2)
    bef = loop_bef(jpeg)  # BEF of the restored (here: JPEG) image, not of the reference
    assert bef > 0
    assert rm.psnr_b(jpeg, camera) == pytest.approx(10 * math.log10(PEAK2 / (mse + bef)), abs=1e-10)


@pytest.mark.parametrize("quality", [10, 40])
def test_psnr_b_below_psnr_for_jpeg(camera, chelsea, quality):
    # JPEG leaves rougher block boundaries than block interiors: BEF > 0, so PSNR-B < PSNR.
    for ref in (camera, chelsea):
        jpeg = jpeg_roundtrip(ref, quality)
        assert rm.blocking_effect_factor(jpeg) > 0
        assert rm.psnr_b(jpeg, ref) < rm.psnr(jpeg, ref)
        assert rm.psnr_b(jpeg, ref, convention="fbcnn") < rm.psnr(jpeg, ref)


def test_psnr_b_equals_psnr_when_bef_is_zero():
    # A diagonal ramp: every horizontal and vertical step is 1, at block boundaries exactly as
    # inside blocks, so D_B == D_Bc and BEF = 0.
    h, w = 40, 64
    ramp = (np.add.outer(np.arange(h), np.arange(w)) + 20).astype(np.uint8)
    assert rm.blocking_effect_factor(ramp) == 0
    noise = np.random.default_rng(4).integers(-5, 6, ramp.shape)
    ref = np.clip(ramp.astype(int) + noise, 0, 255).astype(np.uint8)
    assert rm.psnr_b(ramp, ref) == pytest.approx(rm.psnr(ramp, ref), abs=1e-12)
    # Smoother boundaries than interiors also give BEF 0 (no reward, clipped at 0).
    cols = np.arange(64)
    smooth_edges = np.tile((2 * (cols - cols // 8)).astype(np.uint8), (16, 1))  # flat across 7|8
    assert rm.blocking_effect_factor(smooth_edges) == 0
    ref2 = np.zeros_like(smooth_edges)
    assert rm.psnr_b(smooth_edges, ref2) == pytest.approx(rm.psnr(smooth_edges, ref2), abs=1e-12)


def test_psnr_b_uses_bef_of_restored_only(camera):
    jpeg = jpeg_roundtrip(camera, 10)
    flat = np.full_like(camera, 128)  # BEF 0
    # Same MSE both ways round, different BEF: the order of the arguments matters.
    assert rm.psnr_b(flat, jpeg) == pytest.approx(rm.psnr(flat, jpeg), abs=1e-12)
    assert rm.psnr_b(jpeg, flat) < rm.psnr(jpeg, flat) - 0.01


def test_bef_counts_quirk_only_matters_off_the_8_grid(camera, chelsea):
    jpeg_gray = jpeg_roundtrip(camera, 10)  # 512x512: the SwinIR counts are the true counts
    exact = rm.psnr_b(jpeg_gray, camera, bef_counts="exact")
    assert exact == pytest.approx(rm.psnr_b(jpeg_gray, camera), abs=1e-12)
    jpeg_rgb = jpeg_roundtrip(chelsea, 10)  # 300x451: SwinIR divides by fewer pairs than it sums
    assert rm.psnr_b(jpeg_rgb, chelsea, bef_counts="exact") > rm.psnr_b(jpeg_rgb, chelsea)


# ---------------------------------------------------------------------------------------------
# Colour vs gray conventions
# ---------------------------------------------------------------------------------------------


def test_colour_conventions(chelsea):
    jpeg = jpeg_roundtrip(chelsea, 10)
    per_ssim = [rm.ssim(jpeg[..., c], chelsea[..., c]) for c in range(3)]
    per_psnr_b = [rm.psnr_b(jpeg[..., c], chelsea[..., c]) for c in range(3)]
    mse_all = np.mean((jpeg.astype(float) - chelsea) ** 2)
    # PSNR: one MSE over all channels.
    assert rm.psnr(jpeg, chelsea) == pytest.approx(10 * math.log10(PEAK2 / mse_all), abs=1e-10)
    # SSIM: per channel, then averaged.
    assert rm.ssim(jpeg, chelsea) == pytest.approx(np.mean(per_ssim), abs=1e-12)
    # PSNR-B (SwinIR): per channel (own MSE and BEF), then the PSNR-B values averaged.
    assert rm.psnr_b(jpeg, chelsea) == pytest.approx(np.mean(per_psnr_b), abs=1e-10)
    # PSNR-B (FBCNN): all-channel MSE plus the BEF of the rounded BT.601 luma, fractional counts.
    luma = np.round(rm.rgb_to_y(jpeg))
    bef_y = rm.blocking_effect_factor(luma, bef_counts="fbcnn")
    assert rm.psnr_b(jpeg, chelsea, convention="fbcnn") == pytest.approx(
        10 * math.log10(PEAK2 / (mse_all + bef_y)), abs=1e-10
    )
    # Channel order (RGB vs BGR) does not matter for any of the RGB metrics.
    bgr_j, bgr_c = jpeg[..., ::-1], chelsea[..., ::-1]
    for f in (rm.psnr, rm.ssim, rm.psnr_b):
        assert f(bgr_j, bgr_c) == pytest.approx(f(jpeg, chelsea), abs=1e-12)


def test_gray_hw_and_hw1_agree(camera):
    jpeg = jpeg_roundtrip(camera, 20)
    for f in (rm.psnr, rm.ssim, rm.psnr_b):
        assert f(jpeg[..., None], camera[..., None]) == pytest.approx(f(jpeg, camera), abs=1e-12)
    # For a gray image whose sides are multiples of 8 the two PSNR-B conventions coincide.
    fbcnn = rm.psnr_b(jpeg, camera, convention="fbcnn")
    assert fbcnn == pytest.approx(rm.psnr_b(jpeg, camera), abs=1e-12)


def test_rgb_to_y_bt601():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rm.rgb_to_y(rgb)
    expected = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]
    np.testing.assert_allclose(y[0], expected, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# 8-bit quantisation, measure(), input checks
# ---------------------------------------------------------------------------------------------


def test_float_inputs_are_put_on_the_uint8_grid(chelsea):
    jpeg = jpeg_roundtrip(chelsea, 10)
    rng = np.random.default_rng(5)
    # Off-grid floats that round back to the same bytes, and out-of-range values that clip.
    wobbly = jpeg.astype(np.float64) + rng.uniform(-0.49, 0.49, jpeg.shape)
    wobbly[jpeg == 255] += 3.0
    wobbly[jpeg == 0] -= 3.0
    for f in (rm.psnr, rm.ssim, rm.psnr_b):
        assert f(wobbly, chelsea) == f(jpeg, chelsea)
        assert f(wobbly, chelsea, quantize=False) != f(jpeg, chelsea)
    # numpy rounds halves to even, like the official (x * 255).round().
    halves = np.array([[0.5, 1.5], [2.5, 3.5]])
    assert rm.psnr(halves, np.array([[0, 2], [2, 4]], np.uint8)) == math.inf


def test_measure_returns_all_three(chelsea, camera):
    for ref in (chelsea, camera):
        jpeg = jpeg_roundtrip(ref, 10)
        m = rm.measure(jpeg, ref)
        assert set(m) == {"psnr", "ssim", "psnr_b"}
        assert m["psnr"] == rm.psnr(jpeg, ref)
        assert m["ssim"] == rm.ssim(jpeg, ref)
        assert m["psnr_b"] == rm.psnr_b(jpeg, ref)
        assert all(isinstance(v, float) for v in m.values())
    # y_channel: the SwinIR *_Y numbers, on the unrounded luma of the 8-bit RGB images.
    jpeg = jpeg_roundtrip(chelsea, 10)
    my = rm.measure(jpeg, chelsea, y_channel=True)
    yj, yc = rm.rgb_to_y(jpeg), rm.rgb_to_y(chelsea)
    assert my["psnr"] == pytest.approx(rm.psnr(yj, yc, quantize=False), abs=1e-12)
    assert my["ssim"] == pytest.approx(rm.ssim(yj, yc, quantize=False), abs=1e-12)
    assert my["psnr_b"] == pytest.approx(rm.psnr_b(yj, yc, quantize=False), abs=1e-12)
    assert my["psnr"] > rm.psnr(jpeg, chelsea)  # chroma subsampling costs RGB more than luma
    g = jpeg_roundtrip(camera, 10)
    assert rm.measure(g, camera, y_channel=True) == rm.measure(g, camera)


def test_input_checks():
    a = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        rm.psnr(a, np.zeros((16, 17), np.uint8))
    with pytest.raises(ValueError, match="11x11"):
        rm.ssim(np.zeros((10, 40), np.uint8), np.zeros((10, 40), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        rm.psnr(np.full((4, 4), np.nan), a[:4, :4])
    with pytest.raises(ValueError, match="HxW"):
        rm.psnr(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="convention"):
        rm.psnr_b(a, a, convention="matlab")
    with pytest.raises(ValueError, match="bef_counts"):
        rm.psnr_b(a, a, bef_counts="rounded")
