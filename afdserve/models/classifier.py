"""The served classifier: a backbone (EfficientNet-Lite0 unless its spec says otherwise),
optionally with an AFD module after one of its layers. With no AFD module it is the plain backbone
(the A/B control, ``lite0_baseline``).

The module is applied by a forward hook on the layer it follows, registered for the length of one
forward pass: the backbone runs its own ``forward`` (so any timm CNN works and Lite0's outputs are
those of timm's forward, bit for bit), and its state dict keeps its own keys.
"""

import contextlib

import torch
from torch import nn

from afdserve.models.afd import AFDConfig, AFDModule
from afdserve.models.backbones import LITE0, BackboneSpec, create_backbone, insertion_module
from afdserve.models.efficientnet_lite import fold_batchnorms
from afdserve.models.repconv import fuse_repconvs

# The Lite models' insertion points: after the stem or after one of the seven stages.
INSERTION_POINTS = ["stem"] + [f"blocks.{i}" for i in range(7)]


class _Stopped(Exception):
    """Raised by the hook that ends a forward pass early, carrying that layer's output."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, afd: AFDModule | None = None, spec: BackboneSpec = LITE0):
        super().__init__()
        self.backbone = backbone
        self.afd = afd
        self.spec = spec  # the input it takes: size, resize, normalisation (imaging.preprocess)
        # The module name the AFD module follows (ValueError when the backbone has none).
        self.afd_point = None if afd is None else insertion_module(backbone, afd.config.insert_after)
        for p in self.backbone.parameters():  # the classifier stays frozen; only AFD learns
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        # The backbone is frozen: keep its batch norms in eval mode even while AFD trains.
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, image: torch.Tensor, dct: torch.Tensor | None = None,
                quality: torch.Tensor | None = None) -> torch.Tensor:
        with self._afd_inserted(dct, quality):
            return self.backbone(image)

    def features(self, image, dct=None, quality=None, stop_after: str | None = None):
        """Backbone features (after AFD, if it comes earlier): the output of the layer
        ``stop_after`` names ("stem" or a module name), where the pass ends, which training uses
        to match early features without running the whole network; None: the last features."""
        with self._afd_inserted(dct, quality):
            if stop_after is None:
                return self.backbone.forward_features(image)
            layer = self.backbone.get_submodule(insertion_module(self.backbone, stop_after))
            handle = layer.register_forward_hook(_stop)
            try:
                self.backbone(image)
            except _Stopped as stopped:
                return stopped.features
            finally:
                handle.remove()
        raise RuntimeError(f"{stop_after} did not run in the backbone's forward pass")

    @contextlib.contextmanager
    def _afd_inserted(self, dct, quality):
        if self.afd is None:
            yield
            return
        if dct is None:
            raise ValueError("this model has an AFD module: it needs the image's DCT coefficients")
        calls = []

        def apply_afd(_layer, _inputs, output):
            # A layer object a network calls twice (a shared activation) would be corrected twice.
            if calls:
                raise ValueError(f"{self.afd_point} runs more than once per forward pass: put the AFD "
                                 "module after another layer")
            calls.append(1)
            return self.afd(output, dct, quality)

        # Looked up at each pass: folding the batch norms replaces the stem's layer object.
        handle = self.backbone.get_submodule(self.afd_point).register_forward_hook(apply_afd)
        try:
            yield
        finally:
            handle.remove()


def _stop(_layer, _inputs, output):
    raise _Stopped(output)


def build_classifier(afd_config: AFDConfig | None, pretrained: bool = True,
                     deploy: bool = False, backbone: BackboneSpec = LITE0) -> Classifier:
    """The classifier structure. ``deploy=True`` builds the fused form (folded batch norms,
    one conv per RepConv) that deployment weights from ``deployment_state_dict`` load into."""
    network = create_backbone(backbone, pretrained=pretrained and not deploy)
    if deploy:
        fold_batchnorms(network)
    afd = AFDModule(afd_config, deploy=deploy) if afd_config is not None else None
    return Classifier(network, afd, backbone).eval()


def fuse_for_deployment(model: Classifier) -> Classifier:
    """Fuse every RepConv and fold the backbone's batch norms, in place."""
    fuse_repconvs(model)
    fold_batchnorms(model.backbone)
    return model.eval()


def load_deployed(afd_config: AFDConfig | None, weights_path, map_location="cpu",
                  backbone: BackboneSpec = LITE0) -> Classifier:
    """Load deployment weights (a plain state dict) safely into the fused structure."""
    state = torch.load(weights_path, map_location=map_location, weights_only=True)
    model = build_classifier(afd_config, pretrained=False, deploy=True, backbone=backbone)
    model.load_state_dict(state, strict=True)
    return model.eval()
