"""Accuracy on labelled images, computed in-process through the serving code path.

Two uses:
- ``afdserve evaluate --archive model_store/afd_classifier.1.0.mar --quality original,10``: built
  archives, through the same ``ClassifierService`` the handler runs.
- ``afdserve evaluate --run runs/afd-v1``: a trained AFD module against the plain backbone on the
  run's validation images (never trained on), at many JPEG qualities under two protocols, with
  the share of the JPEG drop won back (paired bootstrap interval), the module's cost, a Markdown
  table, JSON and a PNG plot. See ``afdserve.evaluation.afd_report``.
"""

import json
import tempfile
import time
import zipfile
from pathlib import Path

import yaml
from tqdm import tqdm

from afdserve.data.folders import DEFAULT_DATA_DIR, LabelledImage, load_labelled_folder
from afdserve.data.jpeg import jpeg_bytes, parse_qualities
from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.restorer_service import RestorerService
from afdserve.serving.settings import ArchiveSettings


def service_from_archive(mar_path: Path, workdir: Path, device="cpu"):
    """Unpack an archive and load its service (a ClassifierService, or a RestorerService for a
    restorer archive) the way the handler does, on ``device``."""
    with zipfile.ZipFile(mar_path) as z:
        z.extractall(workdir)
    manifest = json.loads((workdir / "MAR-INF" / "MANIFEST.json").read_text())
    settings = ArchiveSettings.from_dict(yaml.safe_load((workdir / "model-config.yaml").read_text())["afdserve"])
    model = manifest["model"]
    service_class = RestorerService if settings.is_restorer else ClassifierService
    return service_class.from_model_dir(workdir, settings, model["modelName"], model.get("modelVersion", ""),
                                        device=device)


def evaluate_service(service: ClassifierService, images: list[LabelledImage], quality: int | None,
                     batch_size: int = 8) -> dict:
    top1 = top5 = 0
    seconds = 0.0
    label = "original" if quality is None else f"q{quality}"
    for start in tqdm(range(0, len(images), batch_size), desc=f"{service.model_name} {label}",
                      unit="batch", leave=False):
        chunk = images[start:start + batch_size]
        bodies = [jpeg_bytes(item.path, quality) for item in chunk]
        t0 = time.perf_counter()
        answers = service.handle(bodies)
        seconds += time.perf_counter() - t0
        for item, answer in zip(chunk, answers):
            predicted = [entry["index"] for entry in answer.json()["top_k"]]
            top1 += predicted[0] == item.label
            top5 += item.label in predicted
    n = len(images)
    return {"quality": label, "images": n, "top1": top1 / n, "top5": top5 / n,
            "ms_per_image": 1000 * seconds / n}


def cmd_evaluate(args) -> int:
    images = load_labelled_folder(args.data)
    if args.limit:
        images = images[: args.limit]
    qualities = parse_qualities(args.quality or "original,10")
    results = []
    for mar in args.archive:
        with tempfile.TemporaryDirectory() as tmp:
            service = service_from_archive(Path(mar), Path(tmp))
            for quality in qualities:
                row = {"model": service.model_name, "version": service.version,
                       **evaluate_service(service, images, quality)}
                results.append(row)
                print(f"{row['model']} {row['version']} {row['quality']:>8}: top-1 {row['top1']:.3f} "
                      f"top-5 {row['top5']:.3f} ({row['ms_per_image']:.1f} ms/image, batches of 8, "
                      f"decode to answer)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def cmd_dispatch(args) -> int:
    if args.run:
        from afdserve.evaluation.afd_report import cmd_evaluate_runs

        return cmd_evaluate_runs(args)
    return cmd_evaluate(args)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy of archives or trained AFD runs on labelled images")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--archive", nargs="+", help=".mar files")
    what.add_argument("--run", nargs="+", type=Path,
                      help="AFD training run folders (afd_module.pt + afd_module.json) or release records; "
                           "evaluated against the plain backbone on their validation split in --data, or on "
                           "all of --data when it is a folder they never trained on (imagenet-val-1000)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR,
                   help="folder with labels.csv and images/ (default: ../shared/data/imagenet-samples)")
    p.add_argument("--quality", default=None,
                   help="comma-separated JPEG qualities to re-encode at; 'original' keeps the files "
                        "(default: original,10 for archives; original,5,7,10,15,18,20,25,30,40,50 for runs)")
    p.add_argument("--protocols", default="P1,P2",
                   help="runs only: P1 = resize/centre-crop to 224 then JPEG (ImageNet-C); "
                        "P2 = JPEG the full image, then the serving preprocessing")
    p.add_argument("--out", type=Path, default=None, help="runs only: results folder (default results/<run name>); with several runs, "
                        "a folder per run inside it and comparison.md/.json/.png, each run against the "
                        "first photo by photo")
    p.add_argument("--bootstrap", type=int, default=2000, help="runs only: bootstrap resamples")
    p.add_argument("--resume", action="store_true",
                   help="runs only: keep the rows of --out's eval.json (same run, same photos) and evaluate "
                        "only the protocols and qualities it lacks, reusing the plain backbone's answers "
                        "kept in --out's plain_hits.json")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--json", help="archives only: also write the results here")
    p.set_defaults(func=cmd_dispatch)
