"""RepConv: a block that trains as three parallel linear branches and deploys as one 3x3 conv.

Branches (all linear, so their sum is one linear map that a single 3x3 kernel can express):
  expand:  1x1 (no bias) -> 3x3
  spatial: 3x3 -> 1x1
  point:   1x1
``fuse()`` replaces the branches by that 3x3 conv (structural re-parameterization).
"""

import torch
import torch.nn.functional as F
from torch import nn


class RepConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, act: bool = True, deploy: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        if deploy:
            self.fused = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        else:
            # No bias on the first 1x1: the 3x3 after it zero-pads its output, so a bias there
            # would reach the border taps of the unfused block but not of the fused conv.
            self.expand_1x1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.expand_3x3 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
            self.spatial_3x3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.spatial_1x1 = nn.Conv2d(out_channels, out_channels, 1)
            self.point_1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.PReLU() if act else nn.Identity()

    @property
    def is_fused(self) -> bool:
        return hasattr(self, "fused")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_fused:
            y = self.fused(x)
        else:
            y = (
                self.expand_3x3(self.expand_1x1(x))
                + self.spatial_1x1(self.spatial_3x3(x))
                + self.point_1x1(x)
            )
        return self.act(y)

    def zero_output_(self) -> None:
        """Make the block output exactly zero (before its activation) while every branch can
        still learn: the last conv of each branch is zeroed, the first is left random, so
        gradients reach the zeroed ones."""
        for conv in (self.expand_3x3, self.spatial_1x1, self.point_1x1):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    @torch.no_grad()
    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) of the single 3x3 conv equal to the three branches."""
        expand_in = self.expand_1x1.weight[:, :, 0, 0]  # (mid, in)
        w_expand = torch.einsum("omhw,mi->oihw", self.expand_3x3.weight, expand_in)
        b_expand = self.expand_3x3.bias

        spatial_out = self.spatial_1x1.weight[:, :, 0, 0]  # (out, mid)
        w_spatial = torch.einsum("om,mihw->oihw", spatial_out, self.spatial_3x3.weight)
        b_spatial = spatial_out @ self.spatial_3x3.bias + self.spatial_1x1.bias

        w_point = F.pad(self.point_1x1.weight, [1, 1, 1, 1])  # 1x1 -> centre tap of a 3x3
        b_point = self.point_1x1.bias
        return w_expand + w_spatial + w_point, b_expand + b_spatial + b_point

    @torch.no_grad()
    def fuse(self) -> None:
        if self.is_fused:
            return
        weight, bias = self.fused_kernel()
        fused = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1)
        fused = fused.to(device=weight.device, dtype=weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        for name in ("expand_1x1", "expand_3x3", "spatial_3x3", "spatial_1x1", "point_1x1"):
            delattr(self, name)
        self.fused = fused


def fuse_repconvs(model: nn.Module) -> nn.Module:
    """Fuse every RepConv in ``model`` in place."""
    for module in model.modules():
        if isinstance(module, RepConv):
            module.fuse()
    return model
