"""Does a served classifier keep its accuracy in reduced precision?

Runs each archive's ClassifierService in float32 and in the given reduced precisions on the
labelled ImageNet samples, as stored and re-encoded at JPEG quality 10, and prints top-1, agreement
with float32's top-1, the largest probability difference and the model's wall ms per image at the
evaluation batch size on this machine. Usage:

    python scripts/check_precision.py [--precisions bfloat16,float16] [--limit N]
"""

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from afdserve.data.folders import DEFAULT_DATA_DIR, load_labelled_folder
from afdserve.data.jpeg import jpeg_bytes, parse_qualities
from afdserve.evaluation.accuracy import service_from_archive
from afdserve.serving.worker_process import prepare_worker_process
from afdserve.packaging.manifest import served_archives
from afdserve.serving.classifier_service import ClassifierService

BATCH = 8


def run(services: dict, images, quality) -> dict:
    stats = {p: {"correct": 0, "agree": 0, "max_prob_diff": 0.0, "model_s": 0.0} for p in services}
    for start in tqdm(range(0, len(images), BATCH), desc=f"q{quality or 'original'}", leave=False):
        chunk = images[start:start + BATCH]
        inputs = [services["float32"].decode(jpeg_bytes(i.path, quality)) for i in chunk]
        probs = {}
        for precision, service in services.items():
            t0 = time.perf_counter()
            probs[precision] = service.predict(service.batch(inputs))
            stats[precision]["model_s"] += time.perf_counter() - t0
        for precision, p in probs.items():
            s = stats[precision]
            top1 = p.argmax(-1)
            s["correct"] += sum(int(t) == i.label for t, i in zip(top1, chunk))
            s["agree"] += int((top1 == probs["float32"].argmax(-1)).sum())
            s["max_prob_diff"] = max(s["max_prob_diff"], (p - probs["float32"]).abs().max().item())
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="afd_classifier,lite0_baseline")
    parser.add_argument("--precisions", default="bfloat16")
    parser.add_argument("--quality", default="original,10")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    prepare_worker_process()  # as the served workers do
    torch.set_num_threads(args.threads)
    images = load_labelled_folder(args.data)[: args.limit]
    print(f"{len(images)} images, batch {BATCH}, {args.threads} threads")
    print("| model | JPEG | precision | top-1 | agrees with float32 | max prob diff | model ms/img |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            base = service_from_archive(args.model_store / served_archives(args.model_store, name)[0], Path(tmp))
        services = {"float32": base}
        for precision in args.precisions.split(","):
            # A copy: the constructor casts the module it is given in place.
            services[precision] = ClassifierService(copy.deepcopy(base.model), base.labels, name, base.version,
                                                    max_pixels=base.max_pixels, precision=precision)
        for quality in parse_qualities(args.quality):
            for precision, s in run(services, images, quality).items():
                n = len(images)
                print(f"| {name} | {quality or 'original'} | {precision} | {100 * s['correct'] / n:.1f}% "
                      f"| {100 * s['agree'] / n:.1f}% | {s['max_prob_diff']:.3f} | {1000 * s['model_s'] / n:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
