"""Building TorchServe archives (.mar) for the served models.

Each archive is self-contained: the handler, the parts of this library the handler imports, the
weights in deployment form (fused RepConvs, folded batch norms; a plain state dict that loads with
``weights_only=True``), index_to_name.json and a model-config.yaml. A stock TorchServe with the
pip dependencies (torch, timm, pillow, numpy, pyyaml) serves it.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

import afdserve
from afdserve.models.afd import AFDConfig
from afdserve.models.classifier import build_classifier, fuse_for_deployment

PACKAGE_DIR = Path(afdserve.__file__).resolve().parent
# handlers/ installs as afdserve.handlers; find its folder without importing the handlers.
HANDLERS_DIR = Path(importlib.util.find_spec("afdserve.handlers").submodule_search_locations[0])
# The library parts a handler imports at serve time; the CLI, server and builder stay out.
SERVED_PACKAGE_PARTS = ["__init__.py", "imaging", "models", "serving", "data"]

# What TorchServe's frontend reads from model-config.yaml. Two cores serve two models, so one
# worker each; batches of up to 8 gathered for at most 10 ms.
FRONTEND_CONFIG = {
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 8,
    "maxBatchDelay": 10,
    "responseTimeout": 60,
}


WEIGHTS_DIR = PACKAGE_DIR / "weights"


@dataclass(frozen=True)
class ClassifierArchive:
    name: str
    version: str
    # A trained AFD module shipped in afdserve/weights/: "<stem>.pt" (state dict) beside
    # "<stem>.json" (its training record, which holds the module's config). None: no AFD module.
    afd_release: str | None
    handler: str = "afd_classifier_handler.py"
    description: str = ""

    def afd_config(self) -> AFDConfig | None:
        if self.afd_release is None:
            return None
        return AFDConfig.from_record(json.loads((WEIGHTS_DIR / f"{self.afd_release}.json").read_text()))

    def afd_weights(self) -> Path | None:
        return None if self.afd_release is None else WEIGHTS_DIR / f"{self.afd_release}.pt"


CLASSIFIERS = {
    "afd_classifier": ClassifierArchive(
        "afd_classifier", "1.0", "afd_v1",
        description="EfficientNet-Lite0 with the trained AFD module afd_v1"),
    "lite0_baseline": ClassifierArchive(
        "lite0_baseline", "1.0", None, description="EfficientNet-Lite0, ImageNet weights, no AFD"),
}


def archive_path(model_store: Path, name: str) -> Path:
    return Path(model_store) / f"{name}.mar"


def model_archiver_executable() -> str:
    candidate = Path(sys.executable).with_name("torch-model-archiver")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("torch-model-archiver")
    if found is None:
        raise RuntimeError("torch-model-archiver not found: pip install 'afdserve[serve]'")
    return found


def stage_library(extras_dir: Path) -> None:
    target = extras_dir / "afdserve"
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in SERVED_PACKAGE_PARTS:
        source = PACKAGE_DIR / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=ignore)
        else:
            shutil.copy2(source, target / part)


def deployment_weights(afd_config: AFDConfig | None, afd_weights: Path | None) -> dict:
    """The classifier's state dict in deployment form."""
    model = build_classifier(afd_config, pretrained=True)
    if afd_weights is not None:
        model.afd.load_state_dict(torch.load(afd_weights, map_location="cpu", weights_only=True))
    return fuse_for_deployment(model).state_dict()


def build_classifier_archive(spec: ClassifierArchive, model_store: Path) -> Path:
    model_store = Path(model_store)
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"afdserve-build-{spec.name}-") as tmp:
        staging = Path(tmp)
        extras = staging / "extras"  # its contents land at the archive's root
        stage_library(extras)
        shutil.copy2(PACKAGE_DIR / "data" / "index_to_name.json", extras / "index_to_name.json")
        afd_config = spec.afd_config()
        torch.save(deployment_weights(afd_config, spec.afd_weights()), staging / "model.pt")
        config = dict(FRONTEND_CONFIG)
        config["afdserve"] = {
            "model": spec.name,
            "description": spec.description,
            "weights": "model.pt",
            "afd": afd_config.to_dict() if afd_config else None,
            "afd_release": spec.afd_release,
            "library_version": afdserve.__version__,
        }
        (staging / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        subprocess.run(
            [
                model_archiver_executable(),
                "--model-name", spec.name,
                "--version", spec.version,
                "--serialized-file", str(staging / "model.pt"),
                "--handler", str(HANDLERS_DIR / spec.handler),
                "--extra-files", str(extras),
                "--config-file", str(staging / "model-config.yaml"),
                "--export-path", str(model_store),
                "--force",
            ],
            check=True,
        )
    return archive_path(model_store, spec.name)


def cmd_build(args) -> int:
    names = args.models.split(",") if args.models else list(CLASSIFIERS)
    for name in names:
        if name not in CLASSIFIERS:
            print(f"unknown model {name!r}; known: {', '.join(CLASSIFIERS)}", file=sys.stderr)
            return 2
        target = archive_path(args.model_store, name)
        if args.missing and target.exists():
            print(f"{target} exists, kept")
            continue
        start = time.perf_counter()
        path = build_classifier_archive(CLASSIFIERS[name], args.model_store)
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0


def add_commands(subparsers) -> None:
    build = subparsers.add_parser("build", help="build the model archives (.mar)")
    build.add_argument("--model-store", type=Path, default=Path("model_store"))
    build.add_argument("--models", default="", help="comma-separated names (default: all)")
    build.add_argument("--missing", action="store_true", help="only build archives that do not exist")
    build.set_defaults(func=cmd_build)
