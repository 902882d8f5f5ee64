"""Does decoding and preparing on the model's device (``--gpu-decode``) change the model's answers?

For each classifier archive, prepares every ImageNet sample twice, with the Pillow path and with
the device path (torchvision's JPEG decoder, nvJPEG on a GPU, and torch resizing and DCT), and
compares: the largest and mean absolute difference of the model input (grey levels) and of the
drift map, top-1 accuracy of each, how often their top-1 agree, and milliseconds per image to
prepare. Runs on a GPU when there is one (the case that matters: nvJPEG's IDCT is not
libjpeg-turbo's), on the CPU otherwise (then only resizing differs). Usage:

    python scripts/check_device_decode.py [--data ../shared/data/imagenet-samples] [--limit N]
        [--qualities original,10] [--out results/device-decode]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from afdserve.data.folders import DEFAULT_DATA_DIR, load_labelled_folder
from afdserve.data.jpeg import jpeg_bytes, parse_qualities
from afdserve.evaluation.accuracy import service_from_archive
from afdserve.packaging.manifest import served_archives
from afdserve.serving.worker_process import prepare_worker_process

MODELS = ("afd_classifier", "lite0_baseline")


def timed_prepare(service, body: bytes, on_device: bool):
    service.decode_on_device = on_device
    if service.device.type == "cuda":
        torch.cuda.synchronize(service.device)
    t0 = time.perf_counter()
    inp = service.decode(body)
    if service.device.type == "cuda":
        torch.cuda.synchronize(service.device)
    return inp, 1000 * (time.perf_counter() - t0)


def compare(service, images, quality) -> dict:
    n = len(images)
    s = {"images": n, "top1_pillow": 0, "top1_device": 0, "agree": 0, "input_max": 0.0, "input_mean": 0.0,
         "dct_max": 0.0, "ms_pillow": 0.0, "ms_device": 0.0}
    label = "original" if quality is None else f"q{quality}"
    for item in tqdm(images, desc=f"{service.model_name} {label}", leave=False):
        body = jpeg_bytes(item.path, quality)
        pillow, ms_pillow = timed_prepare(service, body, on_device=False)
        device, ms_device = timed_prepare(service, body, on_device=True)
        probs = service.predict(service.batch([pillow, device]))
        top = probs.argmax(-1).tolist()
        s["top1_pillow"] += top[0] == item.label
        s["top1_device"] += top[1] == item.label
        s["agree"] += top[0] == top[1]
        diff = (device.image.cpu() - pillow.image).abs() * 127.5  # grey levels
        s["input_max"] = max(s["input_max"], diff.max().item())
        s["input_mean"] += diff.mean().item() / n
        if pillow.dct is not None:
            s["dct_max"] = max(s["dct_max"], (device.dct.cpu() - pillow.dct).abs().max().item())
        s["ms_pillow"] += ms_pillow / n
        s["ms_device"] += ms_device / n
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--qualities", default="original,10")
    parser.add_argument("--out", type=Path, default=Path("results/device-decode"))
    args = parser.parse_args()
    prepare_worker_process()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (torchvision's libjpeg-turbo)"
    images = load_labelled_folder(args.data)[: args.limit]
    rows = []
    for name in MODELS:
        with tempfile.TemporaryDirectory() as tmp:
            service = service_from_archive(args.model_store / served_archives(args.model_store, name)[0],
                                           Path(tmp), device=device)
            for quality in parse_qualities(args.qualities):
                rows.append({"model": name, "quality": quality, **compare(service, images, quality)})
    lines = [f"# Device decode against the Pillow path ({where})", "",
             f"{len(images)} labelled photos of {args.data.name}, model precision as the archive sets it for {device.type}. "
             "lite0_baseline's Pillow path decodes large JPEGs at reduced scale and the device path every "
             "pixel, hence its larger largest difference.", "",
             "| model | JPEG | top-1 Pillow | top-1 device | top-1 agree | input diff max / mean (grey levels) "
             "| drift map max diff | prepare ms Pillow / device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        n = r["images"]
        q = "original" if r["quality"] is None else f"q{r['quality']}"
        lines.append(f"| {r['model']} | {q} | {100 * r['top1_pillow'] / n:.1f}% | {100 * r['top1_device'] / n:.1f}% "
                     f"| {100 * r['agree'] / n:.1f}% | {r['input_max']:.1f} / {r['input_mean']:.3f} "
                     f"| {r['dct_max']:.1e} | {r['ms_pillow']:.1f} / {r['ms_device']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check.md").write_text("\n".join(lines) + "\n")
    (args.out / "check.json").write_text(json.dumps({"device": where, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
