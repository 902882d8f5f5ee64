"""Compare JPEG decoders for afdserve's serving path, and the DCT coefficients stored in the file
with the ones afdserve computes from the decoded image.

What it measures, on one CPU thread (libjpeg decoders are single-threaded; torch is set to 1 thread):

1. Full decode: wall ms to turn JPEG bytes into an RGB uint8 numpy array, median of N runs after
   one warm-up, for Pillow, simplejpeg and PyTurboJPEG (plus afdserve's own ``decode_image``, which
   returns a PIL image, for reference).
2. Reduced-size decode: the same, letting libjpeg scale by 1/2, 1/4, 1/8 inside the IDCT (Pillow
   ``Image.draft``, simplejpeg ``min_height``/``min_width``, PyTurboJPEG ``scaling_factor``).
3. DCT coefficients: which libraries can hand out the quantized coefficients without decoding,
   how long jpeglib / jpegio take to read them, and how the file's dequantized coefficients compare
   with afdserve's drift-map input ``dct_tensor(decode_image(data))``: the orthonormal 8x8 DCT of
   the decoded image's JFIF YCbCr planes, level-shifted to (v - 128) / 128, over the file-grid blocks
   covering the 224 centre crop (compared block by block, and after pooling to 28x28).

Test images: scikit-image's ``data.coffee()`` resized (bicubic) to 500x375, 1600x1200 and
4000x3000, encoded by Pillow at quality 75 (4:2:0, Pillow's default) for the timings; quality 10
and 75 at 4:4:4 and 4:2:0 for the coefficient comparison. Upscaled coffee is smoother than a real
photo of that size, so the large files hold fewer non-zero coefficients and decode a little faster.

    .venv/bin/python scripts/compare_decoders.py [--out results/decoders] [--repeats 30]

The other decoders are not afdserve dependencies; a missing one is reported, not fatal. On Debian 12:
``pip install simplejpeg jpeglib jpegio "PyTurboJPEG<2"`` and ``apt-get install libturbojpeg0``
(PyTurboJPEG 2 needs libjpeg-turbo 3, which Debian 12 does not ship).

Writes ``decoders.md`` and ``decoders.json`` under ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import ctypes.util
import gc
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, features
from skimage import data as skdata

from afdserve.imaging.dct import ZIGZAG_ORDER, block_dct, rgb_to_ycbcr
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import BLOCK, DCT_SIZE, RESIZE_SHORTER, crop_box, dct_tensor

SIZES = ((500, 375), (1600, 1200), (4000, 3000))  # (width, height)
SPEED_QUALITY = 75
REDUCTIONS = (2, 4, 8)
LARGE_PIXELS = 2_000_000  # images above this get --large-repeats runs
COMPARE_QUALITIES = (10, 75)
SUBSAMPLINGS = {"4:4:4": 0, "4:2:0": 2}  # Pillow's `subsampling` argument
JPEGLIB_LIBJPEG = "turbo210"  # which of jpeglib's bundled libjpeg builds reads the coefficients
ZIGZAG = ZIGZAG_ORDER.numpy()


# --------------------------------------------------------------------------- test images


def make_jpeg(size: tuple[int, int], quality: int, subsampling: int = 2) -> bytes:
    """coffee() resized (bicubic) to ``size`` and encoded by Pillow."""
    image = Image.fromarray(skdata.coffee()).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# --------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return 1000.0 * statistics.median(times)


def repeats_for(size: tuple[int, int], args: argparse.Namespace) -> int:
    return args.repeats if size[0] * size[1] <= LARGE_PIXELS else args.large_repeats


# --------------------------------------------------------------------------- decoders


@dataclass
class Decoder:
    name: str
    version: str
    full: Callable[[bytes], np.ndarray] | None = None
    reduced: Callable[[bytes, int], np.ndarray] | None = None  # (data, k) -> about 1/k per side
    reduced_how: str = ""
    unavailable: str | None = None  # "not available: ..." reason when it could not be loaded


def pillow_decoder() -> Decoder:
    def to_array(im: Image.Image) -> np.ndarray:
        im.load()
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))

    def full(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return to_array(im)

    def reduced(data: bytes, k: int) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (im.width // k, im.height // k))
            return to_array(im)

    version = f"{metadata.version('pillow')} (libjpeg-turbo {features.version('libjpeg_turbo')}, bundled)"
    return Decoder("Pillow", version, full, reduced, "Image.draft('RGB', (w//k, h//k))")


def simplejpeg_decoder() -> Decoder:
    try:
        import simplejpeg
    except ImportError as e:
        return Decoder("simplejpeg", "-", unavailable=f"not available: {e}")

    def full(data: bytes) -> np.ndarray:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")

    def reduced(data: bytes, k: int) -> np.ndarray:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=height // k, min_width=width // k)

    lib = _embedded_libjpeg_turbo_version(simplejpeg.__file__)
    version = f"{metadata.version('simplejpeg')} (libjpeg-turbo {lib}, statically linked)"
    return Decoder("simplejpeg", version, full, reduced, "decode_jpeg(min_height=h//k, min_width=w//k)")


def turbojpeg_decoder() -> Decoder:
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
    except Exception as e:  # ImportError, or RuntimeError/OSError when libturbojpeg is missing or too old
        reason = " ".join(str(e).split())
        return Decoder("PyTurboJPEG", _dist_version("PyTurboJPEG"), unavailable=f"not available: {reason}")

    def full(data: bytes) -> np.ndarray:
        return tj.decode(data, pixel_format=turbojpeg.TJPF_RGB)

    def reduced(data: bytes, k: int) -> np.ndarray:
        return tj.decode(data, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=(1, k))

    version = f"{turbojpeg.__version__} (system {_libturbojpeg_description()})"
    return Decoder("PyTurboJPEG", version, full, reduced, "decode(scaling_factor=(1, k))")


def load_decoders() -> list[Decoder]:
    return [pillow_decoder(), simplejpeg_decoder(), turbojpeg_decoder()]


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _embedded_libjpeg_turbo_version(module_file: str) -> str:
    """The 'libjpeg-turbo version X' string compiled into a package's extension modules."""
    for path in Path(module_file).parent.glob("*.so"):
        match = re.search(rb"libjpeg-turbo version ([0-9.]+)", path.read_bytes())
        if match:
            return match.group(1).decode()
    return "unknown version"


def _libturbojpeg_description() -> str:
    name = ctypes.util.find_library("turbojpeg")
    if name is None:
        return "libturbojpeg not found"
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"):
        path = Path(folder, name)
        if path.exists():
            return f"{path.resolve()}"
    return name


# --------------------------------------------------------------------------- speed


def time_decoder(dec: Decoder, data: bytes, reference: np.ndarray, repeats: int) -> dict:
    """Full and reduced decode times of one decoder on one file."""
    out = dec.full(data)
    result = {
        "full_ms": median_ms(lambda: dec.full(data), repeats),
        "full_shape": list(out.shape),
        "max_abs_diff_vs_pillow": int(np.abs(out.astype(np.int16) - reference.astype(np.int16)).max()),
        "reduced": {},
    }
    for k in REDUCTIONS:
        small = dec.reduced(data, k)
        result["reduced"][str(k)] = {
            "ms": median_ms(lambda: dec.reduced(data, k), repeats),
            "width": int(small.shape[1]),
            "height": int(small.shape[0]),
        }
    return result


def run_speed(decoders: list[Decoder], files: dict[str, bytes], args: argparse.Namespace) -> dict:
    results: dict = {"decoders": {}, "afdserve_decode_image_ms": {}, "repeats": {}}
    for size in SIZES:
        label = size_label(size)
        data, repeats = files[label], repeats_for(size, args)
        results["repeats"][label] = repeats
        reference = pillow_decoder().full(data)
        for dec in decoders:
            if dec.unavailable is None:
                results["decoders"].setdefault(dec.name, {})[label] = time_decoder(dec, data, reference, repeats)
        results["afdserve_decode_image_ms"][label] = median_ms(lambda: decode_image(data), repeats)
    return results


# --------------------------------------------------------------------------- coefficient APIs

_COEF_NAME = re.compile(r"dct|coef", re.I)


def _public_coef_names(*objects) -> list[str]:
    return sorted({n for obj in objects for n in dir(obj) if not n.startswith("_") and _COEF_NAME.search(n)})


def coefficient_api_report() -> list[dict]:
    """Does each library expose the file's DCT coefficients? Checked on the installed versions."""
    import PIL.JpegImagePlugin as jpeg_plugin

    rows = [
        {
            "library": "Pillow",
            "gives_coefficients": False,
            "evidence": f"public names containing dct or coef in PIL.Image, JpegImagePlugin, JpegImageFile: "
            f"{_public_coef_names(Image, jpeg_plugin, jpeg_plugin.JpegImageFile) or 'none'}; it exposes "
            "the quantization tables (`im.quantization`) and DCT-domain downscaling (`draft`), not coefficients",
        }
    ]
    try:
        import simplejpeg

        names = _public_coef_names(simplejpeg)
        api = ", ".join(n for n in dir(simplejpeg) if not n.startswith("_"))
        rows.append({"library": "simplejpeg", "gives_coefficients": bool(names),
                     "evidence": f"public API: {api}; names containing dct or coef: {names or 'none'}"})
    except ImportError as e:
        rows.append({"library": "simplejpeg", "gives_coefficients": None, "evidence": f"not available: {e}"})
    try:
        import turbojpeg

        names = _public_coef_names(turbojpeg.TurboJPEG)
        api = ", ".join(n for n in dir(turbojpeg.TurboJPEG) if not n.startswith("_"))
        rows.append({"library": "PyTurboJPEG", "gives_coefficients": bool(names),
                     "evidence": f"TurboJPEG methods: {api}; names containing dct or coef: {names or 'none'} "
                     "(libturbojpeg's tjTransform customFilter callback does see coefficient arrays; "
                     "PyTurboJPEG uses it only inside crop_multiple to paint backgrounds)"})
    except ImportError as e:
        rows.append({"library": "PyTurboJPEG", "gives_coefficients": None, "evidence": f"not available: {e}"})
    for reader in load_coef_readers():
        rows.append({"library": reader.name, "gives_coefficients": reader.unavailable is None,
                     "evidence": reader.unavailable or reader.how})
    return rows


# --------------------------------------------------------------------------- coefficient readers


@dataclass
class FileCoefficients:
    planes: dict[str, np.ndarray]  # "Y"/"Cb"/"Cr" -> (Hb, Wb, 8, 8) int, [block row, block col, u, v]
    qtables: dict[str, np.ndarray]  # plane -> (8, 8) natural order, u = vertical frequency
    sampling: list[tuple[int, int]]  # (h, v) sampling factors per component
    owner: object = None  # the reader's object, kept alive while `planes` are views into its memory


@dataclass
class CoefReader:
    name: str
    version: str
    how: str = ""
    read: Callable[[str], FileCoefficients] | None = None
    unavailable: str | None = None


def jpeglib_reader() -> CoefReader:
    try:
        import jpeglib

        jpeglib.version.set(JPEGLIB_LIBJPEG)
    except Exception as e:
        return CoefReader("jpeglib", _dist_version("jpeglib"), unavailable=f"not available: {e}")

    def read(path: str) -> FileCoefficients:
        jpeg = jpeglib.read_dct(path)
        planes = {"Y": jpeg.Y, "Cb": jpeg.Cb, "Cr": jpeg.Cr}
        qt = {name: jpeg.qt[jpeg.quant_tbl_no[i]] for i, name in enumerate(planes)}
        return FileCoefficients(planes, qt, sampling=[])

    how = f"jpeglib.read_dct(path).Y/.Cb/.Cr, libjpeg {JPEGLIB_LIBJPEG}"
    return CoefReader("jpeglib", _dist_version("jpeglib"), how, read)


def jpegio_reader() -> CoefReader:
    try:
        import jpegio
    except Exception as e:
        return CoefReader("jpegio", _dist_version("jpegio"), unavailable=f"not available: {e}")

    def read(path: str) -> FileCoefficients:
        jpeg = jpegio.read(path)
        planes, qt = {}, {}
        for name, arr, info in zip(("Y", "Cb", "Cr"), jpeg.coef_arrays, jpeg.comp_info):
            hb, wb = arr.shape[0] // BLOCK, arr.shape[1] // BLOCK
            planes[name] = arr.reshape(hb, BLOCK, wb, BLOCK).transpose(0, 2, 1, 3)
            qt[name] = jpeg.quant_tables[info.quant_tbl_no]
        sampling = [(c.h_samp_factor, c.v_samp_factor) for c in jpeg.comp_info]
        # coef_arrays are views into memory jpegio frees with `jpeg`: keep it alive with them.
        return FileCoefficients(planes, qt, sampling, owner=jpeg)

    return CoefReader("jpegio", _dist_version("jpegio"), "jpegio.read(path).coef_arrays", read)


def load_coef_readers() -> list[CoefReader]:
    return [jpeglib_reader(), jpegio_reader()]


def run_coef_timing(readers: list[CoefReader], paths: dict[str, str], files: dict[str, bytes],
                    args: argparse.Namespace) -> dict:
    """ms to read all coefficients of each file, next to what afdserve computes today."""
    results: dict = {}
    for size in SIZES:
        label, repeats = size_label(size), repeats_for(size, args)
        row = {}
        for reader in readers:
            if reader.unavailable is None:
                row[reader.name] = median_ms(lambda: reader.read(paths[label]), repeats)
        decoded = decode_image(files[label])
        row["afdserve dct_tensor(decoded)"] = median_ms(lambda: dct_tensor(decoded), repeats)
        row["afdserve decode_image + dct_tensor"] = median_ms(lambda: dct_tensor(decode_image(files[label])), repeats)
        results[label] = row
    return results


# --------------------------------------------------------------------------- coefficient comparison


def crop_block_range(width: int, height: int) -> tuple[int, int, int, int]:
    """(by0, by1, bx0, bx1): the file-grid blocks covering the centre crop (as dct_tensor picks them)."""
    x0, y0, x1, y1 = crop_box(width, height)
    by0, bx0 = math.floor(y0 / BLOCK), math.floor(x0 / BLOCK)
    by1 = math.ceil(min(height, BLOCK * math.ceil(y1 / BLOCK)) / BLOCK)
    bx1 = math.ceil(min(width, BLOCK * math.ceil(x1 / BLOCK)) / BLOCK)
    return by0, by1, bx0, bx1


def computed_blocks(image: Image.Image, blocks: tuple[int, int, int, int]) -> np.ndarray:
    """afdserve's DCT of the decoded image on those blocks, before pooling: (192, Hb, Wb) float64."""
    by0, by1, bx0, bx1 = blocks
    box = (bx0 * BLOCK, by0 * BLOCK, min(image.width, bx1 * BLOCK), min(image.height, by1 * BLOCK))
    rgb = torch.from_numpy(np.array(image.crop(box), dtype=np.uint8)).permute(2, 0, 1).double()
    return block_dct(rgb_to_ycbcr(rgb)).numpy()


def file_blocks(coefs: np.ndarray, qtable: np.ndarray, scale: float) -> np.ndarray:
    """(Hb, Wb, 8, 8) quantized coefficients -> (64, Hb, Wb) dequantized, zig-zag, times ``scale``."""
    hb, wb = coefs.shape[:2]
    deq = coefs.astype(np.float64) * qtable.astype(np.float64)
    return deq.reshape(hb, wb, 64)[..., ZIGZAG].transpose(2, 0, 1) * scale


def agreement(file: np.ndarray, ours: np.ndarray) -> dict:
    """Pearson correlation and relative L2 error ||file - ours|| / ||ours||."""
    f, o = file.ravel(), ours.ravel()
    corr = float(np.corrcoef(f, o)[0, 1]) if f.std() > 0 and o.std() > 0 else float("nan")
    return {"corr": corr, "rel_l2": float(np.linalg.norm(f - o) / np.linalg.norm(o))}


def pooled(blocks: np.ndarray) -> np.ndarray:
    return F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(blocks)), DCT_SIZE).numpy()


def split_metrics(file: np.ndarray, ours: np.ndarray) -> dict:
    """Agreement over all coefficients, the DC alone, the AC alone, and after pooling to 28x28."""
    return {
        "all": agreement(file, ours),
        "dc": agreement(file[0::64], ours[0::64]),
        "ac": agreement(np.delete(file, np.s_[0::64], axis=0), np.delete(ours, np.s_[0::64], axis=0)),
        "pooled": agreement(pooled(file), pooled(ours)),
    }


def fit_scale(raw: np.ndarray, ours: np.ndarray) -> float:
    """Least-squares s in ours ~ s * raw (raw = quantized coefficient * qtable)."""
    return float((raw * ours).sum() / (raw * raw).sum())


def compare_one(data: bytes, read: Callable[[str], FileCoefficients], path: str) -> dict:
    """File coefficients vs afdserve's computed DCT for one JPEG (luma and chroma)."""
    decoded = decode_image(data)
    image = decoded.image
    assert decoded.grid_offset == (0, 0)
    blocks = crop_block_range(image.width, image.height)
    ours = computed_blocks(image, blocks)
    # The blocks are the ones dct_tensor uses: pooling them must give the served drift map.
    served = dct_tensor(decoded).double().numpy()
    check = float(np.abs(pooled(ours) - served).max())
    coefs = read(path)
    by0, by1, bx0, bx1 = blocks

    y_raw = file_blocks(coefs.planes["Y"][by0:by1, bx0:bx1], coefs.qtables["Y"], 1.0)
    scale_fit = fit_scale(y_raw, ours[:64])
    scale = nominal_scale(scale_fit)
    luma = split_metrics(y_raw * scale, ours[:64])
    transposed = file_blocks(coefs.planes["Y"][by0:by1, bx0:bx1].transpose(0, 1, 3, 2), coefs.qtables["Y"], scale)
    luma["transposed_blocks_ac_corr"] = split_metrics(transposed, ours[:64])["ac"]["corr"]
    return {
        "blocks": {"rows": [by0, by1], "cols": [bx0, bx1]},
        "pool_check_max_abs_diff": check,
        "scale_fit": scale_fit,
        "scale_used": scale,
        "luma": luma,
        "chroma": chroma_metrics(coefs, ours, blocks, scale),
    }


def nominal_scale(fit: float) -> float:
    """The nominal factor (1/128 or 1/(8*128)) nearest, in log terms, to the fitted one."""
    candidates = (1 / 128, 1 / (8 * 128))
    return min(candidates, key=lambda c: abs(math.log(fit / c)) if fit > 0 else math.inf)


def chroma_metrics(coefs: FileCoefficients, ours: np.ndarray, blocks: tuple[int, int, int, int],
                   scale: float) -> dict:
    """Cb and Cr together. On a 4:2:0 file each chroma block spans 16x16 pixels: it is replicated
    onto the 2x2 of our 8x8 blocks it covers, and its DC is also compared with their mean DC."""
    by0, by1, bx0, bx1 = blocks
    luma_blocks, chroma_blocks = coefs.planes["Y"].shape[:2], coefs.planes["Cb"].shape[:2]
    fy, fx = (round(lb / cb) for lb, cb in zip(luma_blocks, chroma_blocks))  # 2, 2 for 4:2:0
    file_c, dc16_file, dc16_ours = [], [], []
    for c, name in ((1, "Cb"), (2, "Cr")):
        plane = coefs.planes[name].repeat(fy, axis=0).repeat(fx, axis=1)
        file_c.append(file_blocks(plane[by0:by1, bx0:bx1], coefs.qtables[name], scale))
        if (fy, fx) == (2, 2):
            dc16_file.append(_dc16_file(coefs.planes[name], coefs.qtables[name], blocks, scale))
            dc16_ours.append(_dc16_ours(ours[c * 64], blocks))
    result = split_metrics(np.concatenate(file_c), ours[64:])
    result["grid"] = f"{8 * fy}x{8 * fx}" + (" (file block on each of its 2x2 of ours)" if fy * fx > 1 else " (same blocks)")
    if (fy, fx) == (2, 2):
        result["dc16"] = agreement(np.concatenate(dc16_file), np.concatenate(dc16_ours))
    return result


def _dc16_range(blocks: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    by0, by1, bx0, bx1 = blocks
    return -(-by0 // 2), by1 // 2, -(-bx0 // 2), bx1 // 2  # chroma blocks whose 2x2 lie inside


def _dc16_file(plane: np.ndarray, qtable: np.ndarray, blocks, scale: float) -> np.ndarray:
    cy0, cy1, cx0, cx1 = _dc16_range(blocks)
    return (plane[cy0:cy1, cx0:cx1, 0, 0] * float(qtable[0, 0]) * scale).ravel()


def _dc16_ours(dc: np.ndarray, blocks) -> np.ndarray:
    by0, _, bx0, _ = blocks
    cy0, cy1, cx0, cx1 = _dc16_range(blocks)
    sub = dc[2 * cy0 - by0 : 2 * cy1 - by0, 2 * cx0 - bx0 : 2 * cx1 - bx0]
    return sub.reshape(cy1 - cy0, 2, cx1 - cx0, 2).mean(axis=(1, 3)).ravel()


def run_comparison(reader: CoefReader, tmp: Path) -> list[dict]:
    rows = []
    for size in SIZES:
        for sub_name, sub in SUBSAMPLINGS.items():
            for quality in COMPARE_QUALITIES:
                data = make_jpeg(size, quality, sub)
                path = tmp / f"cmp_{size_label(size)}_{sub}_{quality}.jpg"
                path.write_bytes(data)
                row = {"size": size_label(size), "subsampling": sub_name, "quality": quality}
                row.update(compare_one(data, reader.read, str(path)))
                rows.append(row)
    return rows


def readers_agree(readers: list[CoefReader], path: str) -> bool | None:
    """Do all available readers return identical coefficients and tables for this file?"""
    got = [r.read(path) for r in readers if r.unavailable is None]
    if len(got) < 2:
        return None
    first = got[0]
    return all(
        np.array_equal(first.planes[p], other.planes[p]) and np.array_equal(first.qtables[p], other.qtables[p])
        for other in got[1:]
        for p in ("Y", "Cb", "Cr")
    )


# --------------------------------------------------------------------------- report


def machine_info() -> dict:
    model = ""
    try:
        model = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), ""
        )
    except OSError:
        pass
    return {
        "platform_processor": platform.processor(),
        "cpu_model": model,
        "machine": platform.machine(),
        "os_cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def library_versions(decoders: list[Decoder], readers: list[CoefReader]) -> dict:
    versions = {d.name: d.version for d in decoders}
    versions.update({r.name: r.version for r in readers})
    versions.update({"numpy": np.__version__, "torch": torch.__version__,
                     "scikit-image": _dist_version("scikit-image"), "afdserve": _dist_version("afdserve")})
    return versions


def fmt(v: float, digits: int = 4) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def md_header(report: dict) -> list[str]:
    m = report["machine"]
    lines = [
        "# JPEG decoders for the serving path",
        "",
        f"Machine: platform.processor()={m['platform_processor']!r}, CPU {m['cpu_model']} ({m['machine']}), "
        f"{m['os_cpu_count']} cores ({m['usable_cores']} usable), Python {m['python']}, "
        f"load average {m['loadavg_start'][0]:.2f} at start / {m['loadavg_end'][0]:.2f} at end "
        "(shared machine: timings are indicative).",
        "",
        "Libraries: " + "; ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        f"Single thread (torch threads = {m['torch_threads']}); median wall ms of N runs after one warm-up; "
        f"N = {', '.join(f'{k}: {v}' for k, v in report['speed']['repeats'].items())}. "
        f"Files: coffee() resized (bicubic), Pillow quality {SPEED_QUALITY}, 4:2:0 "
        f"({', '.join(f'{k}: {v // 1024} KiB' for k, v in report['file_bytes'].items())}).",
    ]
    for d in report["decoders"]:
        if d["unavailable"]:
            lines += ["", f"**{d['name']}**: {d['unavailable']}"]
    return lines


def md_speed(report: dict) -> list[str]:
    speed, labels = report["speed"], [size_label(s) for s in SIZES]
    rows = []
    for d in report["decoders"]:
        if d["unavailable"]:
            rows.append([d["name"], "-"] + [d["unavailable"]] * len(labels))
            continue
        per = speed["decoders"][d["name"]]
        rows.append([d["name"], "full -> RGB array"] + [f"{per[l]['full_ms']:.2f}" for l in labels])
        for k in REDUCTIONS:
            cells = []
            for l in labels:
                r = per[l]["reduced"][str(k)]
                small = "*" if min(r["width"], r["height"]) < RESIZE_SHORTER else ""
                cells.append(f"{r['ms']:.2f} ({r['width']}x{r['height']}{small})")
            rows.append([d["name"], f"1/{k}: {d['reduced_how']}"] + cells)
    rows.append(["afdserve", "decode_image (PIL image, EXIF, qtables)"]
                + [f"{speed['afdserve_decode_image_ms'][l]:.2f}" for l in labels])
    lines = ["", "## Decode time (ms, median)", ""] + md_table(["decoder", "mode"] + labels, rows)
    lines += ["", f"(w x h) is the decoded size; * marks a shorter side under {RESIZE_SHORTER}, the size the "
              "model input is resized to, so that reduction would upsample the model's input."]
    diffs = [f"{name} {l}: {per[l]['max_abs_diff_vs_pillow']}"
             for name, per in speed["decoders"].items() if name != "Pillow" for l in labels]
    if diffs:
        lines += ["", "Max |RGB difference| of the full decode vs Pillow: " + ", ".join(diffs) + "."]
    return lines


def md_coef_api(report: dict) -> list[str]:
    rows = [[r["library"], {True: "yes", False: "no", None: "n/a"}[r["gives_coefficients"]], r["evidence"]]
            for r in report["coefficient_api"]]
    return ["", "## DCT coefficients straight from the file", ""] + md_table(
        ["library", "coefficients?", "evidence (installed version)"], rows)


def md_coef_timing(report: dict) -> list[str]:
    timing = report.get("coefficient_timing")
    if not timing:
        return ["", "No coefficient reader available: no coefficient timings."]
    labels = [size_label(s) for s in SIZES]
    names = list(timing[labels[0]])
    rows = [[n] + [f"{timing[l][n]:.2f}" for l in labels] for n in names]
    lines = ["", "## Time to get block DCT coefficients (ms, median)", ""]
    lines += md_table(["what"] + labels, rows)
    lines += ["", "Readers take a file path (files on " + report["tmp_dir_kind"] + "); they read all blocks "
              "of all three components, dct_tensor only the blocks covering the crop. "
              f"jpeglib and jpegio give identical coefficients and tables: {report.get('readers_agree')}."]
    return lines


def md_comparison(report: dict) -> list[str]:
    rows_in = report.get("comparison")
    if not rows_in:
        return ["", "No coefficient reader available: no comparison."]
    fits = [r["scale_fit"] * 128 for r in rows_in]
    lines = [
        "",
        f"## File coefficients vs afdserve's computed DCT (reader: {report['comparison_reader']})",
        "",
        "file = quantized coefficient x qtable x scale; ours = block_dct of the decoded image's YCbCr on the "
        "same file-grid blocks (those covering the 224 crop; pooling them reproduces dct_tensor to "
        f"{max(r['pool_check_max_abs_diff'] for r in rows_in):.1e}). Correlation (r) and relative L2 error "
        "||file - ours|| / ||ours|| over all coefficients, the DC alone, the AC alone, and after pooling to 28x28.",
        "",
        f"Scale check: the least-squares fit ours ~ s x (coef x qtable) gives s x 128 = {min(fits):.4f} .. "
        f"{max(fits):.4f} over all rows, so the scale used is 1/{round(1 / rows_in[0]['scale_used'])}: the "
        "dequantized JPEG coefficient already equals the orthonormal DCT of the level-shifted 8-bit samples "
        "(libjpeg's FDCT is 8x that, but the encoder divides the 8 back out when quantizing). "
        f"Orientation check: with each file block transposed (u <-> v) the luma AC correlation drops to r = "
        f"{min(r['luma']['transposed_blocks_ac_corr'] for r in rows_in):.3f} .. "
        f"{max(r['luma']['transposed_blocks_ac_corr'] for r in rows_in):.3f}, so the readers' [u, v] is "
        "[vertical, horizontal] frequency, as in afdserve.",
        "",
        "### Luma (Y)",
        "",
    ]
    header = ["size", "sub", "q", "s x 128", "r all", "relL2 all", "r DC", "relL2 DC", "r AC", "relL2 AC",
              "r 28x28", "relL2 28x28"]
    rows = []
    for r in rows_in:
        m = r["luma"]
        rows.append([r["size"], r["subsampling"], str(r["quality"]), fmt(r["scale_fit"] * 128)]
                    + _metric_cells(m))
    lines += md_table(header, rows)
    lines += ["", "### Chroma (Cb and Cr together)", ""]
    header = ["size", "sub", "q", "file grid", "r all", "relL2 all", "r DC", "relL2 DC", "r AC", "relL2 AC",
              "r 28x28", "relL2 28x28", "16x16 DC: r / relL2"]
    rows = []
    for r in rows_in:
        m = r["chroma"]
        dc16 = f"{fmt(m['dc16']['corr'])} / {fmt(m['dc16']['rel_l2'])}" if "dc16" in m else "-"
        rows.append([r["size"], r["subsampling"], str(r["quality"]), m["grid"]] + _metric_cells(m) + [dc16])
    lines += md_table(header, rows)
    lines += ["", "16x16 DC: a 4:2:0 file's chroma DC against the mean DC of the 2x2 of our 8x8 blocks it covers "
              "(the same 16x16 pixels)."]
    return lines


def _metric_cells(m: dict) -> list[str]:
    return [fmt(m[k][s]) for k in ("all", "dc", "ac", "pooled") for s in ("corr", "rel_l2")]


def md_summary(report: dict) -> list[str]:
    speed = report["speed"]["decoders"]
    lines = ["", "## Summary (computed from the numbers above)", ""]
    for size in SIZES:
        l = size_label(size)
        full = {n: per[l]["full_ms"] for n, per in speed.items()}
        best = min(full, key=full.get)
        ratio = full["Pillow"] / full[best] if "Pillow" in full else float("nan")
        eighth = {n: per[l]["reduced"]["8"]["ms"] for n, per in speed.items()}
        best8 = min(eighth, key=eighth.get)
        lines.append(f"- {l}: fastest full decode {best} ({full[best]:.2f} ms, {ratio:.2f}x faster than Pillow); "
                     f"fastest 1/8 decode {best8} ({eighth[best8]:.2f} ms, "
                     f"{full[best8] / eighth[best8]:.1f}x faster than its own full decode).")
    return lines


def to_markdown(report: dict) -> str:
    lines = md_header(report) + md_speed(report) + md_summary(report) + md_coef_api(report)
    lines += md_coef_timing(report) + md_comparison(report)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/decoders"), help="output folder")
    p.add_argument("--repeats", type=int, default=30,
                   help=f"timed runs per measurement for images up to {LARGE_PIXELS:,} pixels (default 30)")
    p.add_argument("--large-repeats", type=int, default=5,
                   help="timed runs per measurement for larger images (default 5)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    decoders, readers = load_decoders(), load_coef_readers()
    files = {size_label(s): make_jpeg(s, SPEED_QUALITY) for s in SIZES}
    report: dict = {
        "machine": machine_info(),
        "versions": library_versions(decoders, readers),
        "decoders": [{"name": d.name, "version": d.version, "reduced_how": d.reduced_how,
                      "unavailable": d.unavailable} for d in decoders],
        "file_bytes": {k: len(v) for k, v in files.items()},
        "speed": run_speed(decoders, files, args),
        "coefficient_api": coefficient_api_report(),
    }
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp_name:
        tmp = Path(tmp_name)
        report["tmp_dir_kind"] = "tmpfs (/dev/shm)" if shm.is_dir() else "disk (temp dir)"
        paths = {}
        for label, data in files.items():
            paths[label] = str(tmp / f"speed_{label}.jpg")
            Path(paths[label]).write_bytes(data)
        available = [r for r in readers if r.unavailable is None]
        if available:
            report["coefficient_timing"] = run_coef_timing(readers, paths, files, args)
            report["readers_agree"] = readers_agree(readers, paths[size_label(SIZES[0])])
            report["comparison_reader"] = available[0].name
            report["comparison"] = run_comparison(available[0], tmp)
    report["machine"]["loadavg_end"] = list(os.getloadavg())

    markdown = to_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoders.md").write_text(markdown, encoding="utf-8")
    (args.out / "decoders.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
