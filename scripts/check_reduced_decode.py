"""Does decoding a large JPEG at reduced size (libjpeg DCT scaling) change what the model sees?

For the plain backbone (which needs no block DCT), compares the full decode with reduced decodes
that keep the shorter side at least 256 or 512 pixels: the mean and largest absolute difference of
the 224x224 model input (in [-1, 1] units), top-1 accuracy and agreement with the full decode.

Images: the ImageNet samples' own files whose shorter side is at least 512, and every sample
upscaled 4x (Lanczos) and saved at JPEG quality 90, standing in for phone-camera photos, which
the samples' 500x375 web images are not. Usage:

    python scripts/check_reduced_decode.py [--data ../shared/data/imagenet-samples] [--limit N]
"""

import argparse
import io
import tempfile
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from afdserve.data.folders import DEFAULT_DATA_DIR, load_labelled_folder
from afdserve.evaluation.accuracy import service_from_archive
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import ModelInput, image_tensor
from afdserve.packaging.manifest import served_archives

SIDES = (None, 512, 256)  # None: every pixel decoded


def upscaled_jpeg(path: Path) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        out = io.BytesIO()
        im.resize((im.width * 4, im.height * 4), Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
        return out.getvalue()


def compare(service, bodies_and_labels, desc: str) -> dict:
    stats = {side: {"correct": 0, "agree": 0, "mean_abs": 0.0, "max_abs": 0.0, "reduction": []} for side in SIDES}
    for body, label in tqdm(bodies_and_labels, desc=desc):
        inputs, top1 = {}, {}
        for side in SIDES:
            decoded = decode_image(body, min_shorter_side=side)
            inputs[side] = image_tensor(decoded.image)
            probs = service.predict(service.batch([ModelInput(inputs[side], None, decoded.quality)]))
            top1[side] = int(probs[0].argmax())
            stats[side]["reduction"].append(decoded.reduction)
        for side in SIDES:
            diff = (inputs[side] - inputs[None]).abs()
            s = stats[side]
            s["correct"] += top1[side] == label
            s["agree"] += top1[side] == top1[None]
            s["mean_abs"] += diff.mean().item() / len(bodies_and_labels)
            s["max_abs"] = max(s["max_abs"], diff.max().item())
    return stats


def report(name: str, stats: dict, n: int) -> None:
    print(f"\n{name} ({n} images)")
    print("| decode | mean scale-down | top-1 | agrees with full decode | mean abs input diff | max abs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, s in stats.items():
        label = "every pixel" if side is None else f"shorter side >= {side}"
        mean_red = sum(s["reduction"]) / len(s["reduction"])
        print(f"| {label} | {mean_red:.2f} | {100 * s['correct'] / n:.1f}% | {100 * s['agree'] / n:.1f}% "
              f"| {s['mean_abs']:.4f} | {s['max_abs']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images = load_labelled_folder(args.data)[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(args.model_store / served_archives(args.model_store, "lite0_baseline")[0],
                                       Path(tmp))
        native = [(i.path.read_bytes(), i.label) for i in images if min(Image.open(i.path).size) >= 512]
        report("native files, shorter side >= 512", compare(service, native, "native"), len(native))
        upscaled = [(upscaled_jpeg(i.path), i.label) for i in images]
        report("upscaled 4x, JPEG q90", compare(service, upscaled, "upscaled"), len(upscaled))


if __name__ == "__main__":
    main()
