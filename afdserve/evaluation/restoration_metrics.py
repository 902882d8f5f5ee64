"""Full-reference image-quality metrics for JPEG artefact removal: PSNR, SSIM and PSNR-B.

The numbers are meant to be comparable with the published SwinIR JPEG-CAR tables (colour LIVE1
on RGB, grayscale classic5/LIVE1), so the conventions below follow the official SwinIR test
script, ``main_test_swinir.py`` with ``--task color_jpeg_car`` / ``jpeg_car`` and its
``utils/util_calculate_psnr_ssim.py`` (github.com/JingyunLiang/SwinIR; the same functions live in
KAIR/BasicSR). This module is an independent numpy implementation of those conventions, checked
against formulas and scikit-image in ``tests/test_restoration_metrics.py``.

Conventions (and why)
---------------------
- **8-bit grid first.** The official script turns the network output into ``uint8`` before it
  measures anything (``clamp(0, 1) * 255``, round half to even, cast) and reads the reference as
  ``uint8``. So by default every input here is quantised the same way:
  ``clip(round(x), 0, 255)`` on values in [0, 255] (``uint8`` input is unchanged). Pass
  ``quantize=False`` to measure float values as they are (e.g. an unrounded Y channel).
- **No border crop.** ``border = 0`` for the JPEG-CAR tasks in ``setup()`` of the test script
  (the crop of ``scale`` pixels is for super-resolution only).
- **RGB, not Y, for colour.** The colour numbers SwinIR reports (PSNR / SSIM / PSNR-B on colour
  LIVE1) are the script's ``psnr``/``ssim``/``psnrb`` with ``test_y_channel=False``, i.e. on
  the three RGB channels. The script also prints ``*_Y`` variants on the BT.601 luma;
  ``measure(..., y_channel=True)`` reproduces those (luma from the 8-bit RGB, not rounded).
  Channel order (RGB or BGR) does not matter: every colour metric is symmetric in the channels.
- **PSNR** = ``10 log10(255^2 / MSE)`` with one MSE over all pixels *and* channels (not a mean of
  per-channel PSNRs); identical images give ``inf`` (as the official code; no cap), so average
  over a test set only images that differ, or note the ``inf``.
- **SSIM** (Wang et al. 2004, as the original MATLAB ``ssim_index``): 11x11 Gaussian window with
  sigma 1.5 (normalised to sum 1), ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2``, population
  (biased) local variances, only the "valid" window positions (the official code filters then
  drops 5 pixels on each side, which leaves exactly the windows that lie inside the image), the
  map averaged; for colour, SSIM per channel then averaged over channels. This is the same as
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)``.
- **PSNR-B** (Yim & Bovik, "Quality assessment of deblocked images", IEEE TIP 20(1):88-98, 2011):
  ``10 log10(255^2 / (MSE + BEF))`` where the blocking effect factor ``BEF`` is measured on the
  *restored* image only (the script calls ``calculate_psnrb(output, img_gt)`` and takes the BEF
  of its first argument). For colour the SwinIR script works **per channel**: BEF of channel c of
  the restored image, MSE of channel c, one PSNR-B per channel, then the mean of the three
  PSNR-B values. BEF on an 8x8 grid anchored at the top-left pixel:
  ``D_B`` = mean squared difference across the block boundaries (between columns 7|8, 15|16, ...
  and the same for rows), ``D_Bc`` = the same over all other neighbouring pairs,
  ``BEF = log2(8) / log2(min(H, W)) * max(D_B - D_Bc, 0)``.
  The official code divides by the counts ``H*(W//8 - 1) + W*(H//8 - 1)`` (and the rest), which
  are the true counts only when H and W are multiples of 8; otherwise one more boundary line is
  summed than counted (6 of the 29 LIVE1 images). We keep that normalisation by default so the
  numbers match (``bef_counts="swinir"``); ``bef_counts="exact"`` divides by the true counts
  (JPEG q10 input on colour LIVE1: 23.755 vs 23.764 dB).
  ``convention="fbcnn"`` gives the FBCNN repository's variant instead (its ``utils_image``
  ``calculate_psnrb``): one PSNR-B from the all-channel MSE plus the BEF of the restored image's
  rounded BT.601 luma, with fractional counts ``H*(W/8 - 1)``. For grayscale images whose sides
  are multiples of 8 (classic5) all conventions agree. The two differ on colour: JPEG q10 input
  on colour LIVE1 scores 23.76 dB (SwinIR) vs 24.20 dB (FBCNN, the JPEG-input figure of the FBCNN
  tables), so a colour PSNR-B column that mixes numbers from both code bases is not like for
  like.

Sanity check (JPEG input, no restoration; OpenCV and Pillow encoders give byte-identical files
here): colour LIVE1 q10 25.69 dB / 0.7433 / 23.76 dB (FBCNN PSNR-B 24.20), q40 30.28 / 0.8821 /
28.39 (28.83); classic5 q10 27.82 / 0.7595 / 25.21. These agree with a transliteration of the
official functions to 1e-13.

Speed: pure numpy, float64, separable filtering in cache-sized row strips; about 0.15 s for a
768x512 RGB pair on one core (SSIM is most of it), so LIVE1's 29 images take ~4-6 s.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "PEAK",
    "blocking_effect_factor",
    "measure",
    "psnr",
    "psnr_b",
    "rgb_to_y",
    "ssim",
]

PEAK = 255.0
_BLOCK = 8

# SSIM (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255.
_SSIM_RADIUS = 5
_SSIM_SIGMA = 1.5
_C1 = (0.01 * PEAK) ** 2
_C2 = (0.03 * PEAK) ** 2


def _gaussian_taps(radius: int = _SSIM_RADIUS, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


_GAUSS = _gaussian_taps()


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_hwc(image, quantize: bool) -> np.ndarray:
    """float64 HxWxC copy of an HxW or HxWxC image with values in [0, 255]; on the uint8 grid
    when ``quantize`` (round half to even, then clip, as ``(x*255).round()`` after a clamp)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise TypeError(f"expected uint8 or float pixel values in [0, 255], got {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    if quantize:
        a = np.clip(np.round(a), 0.0, PEAK)
    return a


def _pair(a, b, quantize: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_hwc(a, quantize), _as_hwc(b, quantize)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {np.shape(a)} vs {np.shape(b)}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError("empty image")
    return x, y


def _psnr_from_mse(mse):
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(PEAK * PEAK / np.where(mse > 0, mse, 1.0)), np.inf)


def rgb_to_y(rgb) -> np.ndarray:
    """BT.601 "studio" luma (16..235) of an RGB image in [0, 255], float64, not rounded: the
    ``to_y_channel`` / MATLAB ``rgb2ycbcr`` Y used for the ``*_Y`` numbers."""
    a = np.asarray(rgb, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    return a @ (np.array([65.481, 128.553, 24.966]) / PEAK) + 16.0


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------


def psnr(a, b, *, quantize: bool = True) -> float:
    """PSNR in dB of two HxW or HxWxC images in [0, 255]: one MSE over all pixels and channels.
    ``inf`` for identical images (no cap). Symmetric in ``a`` and ``b``."""
    x, y = _pair(a, b, quantize)
    return float(_psnr_from_mse(np.mean((x - y) ** 2)))


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------


def _filter_valid(stack: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian over axes 0 and 1, valid positions only (output is 10 pixels
    shorter in each). The taps are symmetric, so mirrored pairs share one multiplication;
    in-place updates keep the temporaries to one buffer."""
    r, k = _SSIM_RADIUS, _GAUSS
    n = stack.shape[0] - 2 * r
    rows = np.multiply(stack[r : r + n], k[r])
    tmp = np.empty_like(rows)
    for t in range(r):
        np.add(stack[t : t + n], stack[2 * r - t : 2 * r - t + n], out=tmp)
        tmp *= k[t]
        rows += tmp
    m = stack.shape[1] - 2 * r
    out = np.multiply(rows[:, r : r + m], k[r])
    tmp = tmp[:, :m]
    for t in range(r):
        np.add(rows[:, t : t + m], rows[:, 2 * r - t : 2 * r - t + m], out=tmp)
        tmp *= k[t]
        out += tmp
    return out


# Output rows per strip: the working set of a strip stays in cache (a whole-image pass is
# memory-bound and several times slower on a 768x512 colour image).
_SSIM_STRIP = 8


def _ssim_per_channel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean SSIM map of each channel of two HxWxC float images: shape (C,)."""
    h, w = x.shape[:2]
    d = 2 * _SSIM_RADIUS
    if min(h, w) < d + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {h}x{w}")
    total = np.zeros(x.shape[2])
    for top in range(0, h - d, _SSIM_STRIP):
        bottom = min(top + _SSIM_STRIP, h - d) + d  # input rows for output rows top..bottom-d
        xs, ys = x[top:bottom], y[top:bottom]
        # The five local moments of every channel in one filtering pass: (rows, W, C, 5).
        moments = _filter_valid(np.stack([xs, ys, xs * xs, ys * ys, xs * ys], axis=-1))
        mu_x, mu_y, e_xx, e_yy, e_xy = np.moveaxis(moments, -1, 0)
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        num = (2 * mu_xy + _C1) * (2 * (e_xy - mu_xy) + _C2)
        den = (mu_xx + mu_yy + _C1) * ((e_xx - mu_xx) + (e_yy - mu_yy) + _C2)
        total += (num / den).sum(axis=(0, 1))
    return total / ((h - d) * (w - d))


def ssim(a, b, *, quantize: bool = True) -> float:
    """Mean SSIM of two HxW or HxWxC images in [0, 255] (Gaussian 11x11, sigma 1.5, valid
    windows); for colour the mean of the per-channel SSIMs. 1.0 for identical images."""
    x, y = _pair(a, b, quantize)
    return float(np.mean(_ssim_per_channel(x, y)))


# --------------------------------------------------------------------------------------------
# PSNR-B
# --------------------------------------------------------------------------------------------


def _boundary_counts(h: int, w: int, counts: str) -> tuple[float, float]:
    """(number of boundary pairs, number of other neighbouring pairs), as the divisor of D_B and
    D_Bc. ``swinir``: ``H*(W//8-1) + W*(H//8-1)``; ``fbcnn``: the same with true division;
    ``exact``: the pairs actually summed."""
    if counts == "swinir":
        n_h, n_v = h * (w // _BLOCK - 1), w * (h // _BLOCK - 1)
    elif counts == "fbcnn":
        n_h, n_v = h * (w / _BLOCK - 1), w * (h / _BLOCK - 1)
    elif counts == "exact":
        n_h, n_v = h * ((w - 1) // _BLOCK), w * ((h - 1) // _BLOCK)
    else:
        raise ValueError(f"unknown bef_counts {counts!r} (swinir, fbcnn or exact)")
    n_all = h * (w - 1) + w * (h - 1)
    return n_h + n_v, n_all - (n_h + n_v)


def _bef_per_channel(img: np.ndarray, counts: str = "swinir") -> np.ndarray:
    """Blocking effect factor of each channel of an HxWxC float image: shape (C,)."""
    h, w = img.shape[:2]
    if min(h, w) < 2:
        raise ValueError(f"PSNR-B needs images of at least 2x2 pixels, got {h}x{w}")
    # Squared differences of horizontal neighbours (pair j, j+1) and vertical ones (i, i+1).
    dh = np.diff(img, axis=1) ** 2  # (H, W-1, C)
    dv = np.diff(img, axis=0) ** 2  # (H-1, W, C)
    at_col = (np.arange(w - 1) % _BLOCK) == _BLOCK - 1
    at_row = (np.arange(h - 1) % _BLOCK) == _BLOCK - 1
    dh_cols, dv_rows = dh.sum(axis=0), dv.sum(axis=1)  # (W-1, C), (H-1, C)
    on = dh_cols[at_col].sum(axis=0) + dv_rows[at_row].sum(axis=0)
    off = dh_cols[~at_col].sum(axis=0) + dv_rows[~at_row].sum(axis=0)
    n_on, n_off = _boundary_counts(h, w, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_b = on / n_on if n_on > 0 else np.zeros_like(on)
        d_bc = off / n_off if n_off > 0 else np.zeros_like(off)
    eta = math.log2(_BLOCK) / math.log2(min(h, w))
    return np.where(d_b > d_bc, eta * (d_b - d_bc), 0.0)


def blocking_effect_factor(image, *, bef_counts: str = "swinir", quantize: bool = True) -> float:
    """Yim & Bovik's blocking effect factor of an HxW image (or the mean over the channels of
    an HxWxC one), 8x8 grid from the top-left pixel, in squared 8-bit units. 0 when the block
    boundaries are no rougher than the rest of the image."""
    return float(np.mean(_bef_per_channel(_as_hwc(image, quantize), bef_counts)))


def psnr_b(
    restored,
    reference,
    *,
    convention: str = "swinir",
    bef_counts: str | None = None,
    quantize: bool = True,
) -> float:
    """PSNR-B in dB of ``restored`` against ``reference`` (HxW or HxWxC, [0, 255]). The
    blocking effect factor is taken from ``restored`` only, so the order of the arguments
    matters.

    ``convention="swinir"`` (default, the SwinIR test script): per channel
    ``10 log10(255^2 / (MSE_c + BEF_c))``, averaged over channels. ``convention="fbcnn"`` (the
    FBCNN repository): ``10 log10(255^2 / (MSE + BEF(Y)))`` with the MSE over all channels and the
    BEF of the restored image's rounded BT.601 luma (colour) or of the image itself (gray).
    ``bef_counts`` overrides the convention's BEF normalisation (``swinir``, ``fbcnn``,
    ``exact``; see the module docstring). ``inf`` when MSE + BEF is 0.
    """
    x, y = _pair(restored, reference, quantize)
    if convention == "swinir":
        bef = _bef_per_channel(x, bef_counts or "swinir")
        mse = np.mean((x - y) ** 2, axis=(0, 1))
        return float(np.mean(_psnr_from_mse(mse + bef)))
    if convention == "fbcnn":
        if x.shape[2] == 3:
            luma = np.round(rgb_to_y(x))[:, :, None]
        elif x.shape[2] == 1:
            luma = x
        else:
            raise ValueError(f"convention 'fbcnn' needs 1 or 3 channels, got {x.shape[2]}")
        bef = float(_bef_per_channel(luma, bef_counts or "fbcnn")[0])
        return float(_psnr_from_mse(np.mean((x - y) ** 2) + bef))
    raise ValueError(f"unknown convention {convention!r} (swinir or fbcnn)")


# --------------------------------------------------------------------------------------------
# All three
# --------------------------------------------------------------------------------------------


def measure(restored, reference, *, y_channel: bool = False) -> dict[str, float]:
    """``{"psnr", "ssim", "psnr_b"}`` of ``restored`` against ``reference`` with the SwinIR
    JPEG-CAR conventions: both put on the 8-bit grid, no border crop, colour measured on RGB.
    ``y_channel=True`` measures colour images on their (unrounded) BT.601 luma instead, like
    the script's ``PSNR_Y``/``SSIM_Y``/``PSNRB_Y`` (gray images are unaffected)."""
    x, y = _pair(restored, reference, quantize=True)
    if y_channel and x.shape[2] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return {
        "psnr": psnr(x, y, quantize=False),
        "ssim": ssim(x, y, quantize=False),
        "psnr_b": psnr_b(x, y, quantize=False),
    }
