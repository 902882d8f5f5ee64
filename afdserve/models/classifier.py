"""The served classifier: EfficientNet-Lite0, optionally with an AFD module after one of its
stages. With no AFD module it is the plain backbone (the A/B control, ``lite0_baseline``)."""

import torch
from torch import nn

from afdserve.models.afd import AFDConfig, AFDModule
from afdserve.models.efficientnet_lite import create_lite0, fold_batchnorms
from afdserve.models.repconv import fuse_repconvs

INSERTION_POINTS = ["stem"] + [f"blocks.{i}" for i in range(7)]


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, afd: AFDModule | None = None):
        super().__init__()
        self.backbone = backbone
        self.afd = afd
        if afd is not None and afd.config.insert_after not in INSERTION_POINTS:
            raise ValueError(f"insert_after must be one of {INSERTION_POINTS}")
        for p in self.backbone.parameters():  # the classifier stays frozen; only AFD learns
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        # The backbone is frozen: keep its batch norms in eval mode even while AFD trains.
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, image: torch.Tensor, dct: torch.Tensor | None = None,
                quality: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.forward_head(self.features(image, dct, quality))

    def features(self, image, dct=None, quality=None, stop_after: str | None = None):
        """Backbone features (after AFD, if any); ``stop_after`` ends early at a stage, which
        training uses to match early features without running the whole network."""
        bb = self.backbone
        x = bb.bn1(bb.conv_stem(image))
        x = self._maybe_afd("stem", x, dct, quality)
        if stop_after == "stem":
            return x
        for i, stage in enumerate(bb.blocks):
            x = self._maybe_afd(f"blocks.{i}", stage(x), dct, quality)
            if stop_after == f"blocks.{i}":
                return x
        return bb.bn2(bb.conv_head(x))

    def _maybe_afd(self, point, x, dct, quality):
        if self.afd is None or self.afd.config.insert_after != point:
            return x
        if dct is None:
            raise ValueError("this model has an AFD module: it needs the image's DCT coefficients")
        return self.afd(x, dct, quality)


def build_classifier(afd_config: AFDConfig | None, pretrained: bool = True,
                     deploy: bool = False) -> Classifier:
    """The classifier structure. ``deploy=True`` builds the fused form (folded batch norms,
    one conv per RepConv) that deployment weights from ``deployment_state_dict`` load into."""
    backbone = create_lite0(pretrained=pretrained and not deploy)
    if deploy:
        fold_batchnorms(backbone)
    afd = AFDModule(afd_config, deploy=deploy) if afd_config is not None else None
    return Classifier(backbone, afd).eval()


def fuse_for_deployment(model: Classifier) -> Classifier:
    """Fuse every RepConv and fold the backbone's batch norms, in place."""
    fuse_repconvs(model)
    fold_batchnorms(model.backbone)
    return model.eval()


def load_deployed(afd_config: AFDConfig | None, weights_path, map_location="cpu") -> Classifier:
    """Load deployment weights (a plain state dict) safely into the fused structure."""
    state = torch.load(weights_path, map_location=map_location, weights_only=True)
    model = build_classifier(afd_config, pretrained=False, deploy=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
