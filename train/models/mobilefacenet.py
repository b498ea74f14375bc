"""MobileFaceNet (Chen et al., "MobileFaceNets", CCBR 2018), the widely used PyTorch variant.

Layout (input 112, stride in brackets; ``t`` = expansion of the inverted-residual bottleneck)::

    conv3x3 64 (2) -> depthwise3x3 64 -> bottleneck t=2 64 x5 (first 2) -> t=4 128 x1 (2)
    -> t=2 128 x6 -> t=4 128 x1 (2) -> t=2 128 x2 -> conv1x1 512
    -> GDC: depthwise conv k = input/16 (7x7 at 112, 9x9 at 144) + BN -> flatten
    -> Linear(512, embedding_dim, bias=False) -> BatchNorm1d

PReLU activations. Module names follow TreB1eN/InsightFace_Pytorch and FaceX-Zoo (``conv1``, ``conv2_dw``,
``conv_23``, ``conv_3.model.0`` ... ``conv_6_dw``, ``linear``, ``bn``) so their checkpoints load by name with
:func:`hsst.train.models.probe_checkpoint.load_foreign_state_dict`.
"""
from __future__ import annotations

import torch
from torch import nn

from hsst.train.models.base import Backbone
from hsst.train.models.registry import register_backbone


class ConvBlock(nn.Module):
    """Conv (no bias) -> BN -> PReLU."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Conv (no bias) -> BN, no activation (the linear bottleneck projection and the GDC)."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted-residual bottleneck: 1x1 expand to ``hidden`` -> depthwise 3x3 -> linear 1x1 project."""

    def __init__(self, in_c: int, out_c: int, hidden: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.conv = ConvBlock(in_c, hidden)
        self.conv_dw = ConvBlock(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden)
        self.project = LinearBlock(hidden, out_c)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` stride-1 residual bottlenecks of width ``c`` and expansion width ``hidden``."""

    def __init__(self, c: int, num_block: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*[DepthWise(c, c, hidden, stride=1, residual=True) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileFaceNet(Backbone):
    """MobileFaceNet embedding network (see the module docstring for the layout).

    Args:
        input_size: side of the square input; a multiple of 16 (the GDC kernel is ``input_size // 16``).
        embedding_dim: embedding length.
        in_chans: 1 (gray / NIR) or 3 (RGB).
    """

    def __init__(self, input_size: int = 112, embedding_dim: int = 512, in_chans: int = 1) -> None:
        super().__init__(input_size, embedding_dim, in_chans)
        k = input_size // 16
        self.conv1 = ConvBlock(in_chans, 64, kernel=3, stride=2, padding=1)
        self.conv2_dw = ConvBlock(64, 64, kernel=3, stride=1, padding=1, groups=64)
        self.conv_23 = DepthWise(64, 64, hidden=128, stride=2)             # t=2, 64, first of x5, s2
        self.conv_3 = Residual(64, num_block=4, hidden=128)                # t=2, 64, remaining 4
        self.conv_34 = DepthWise(64, 128, hidden=256, stride=2)            # t=4, 128 x1, s2
        self.conv_4 = Residual(128, num_block=6, hidden=256)               # t=2, 128 x6
        self.conv_45 = DepthWise(128, 128, hidden=512, stride=2)           # t=4, 128 x1, s2
        self.conv_5 = Residual(128, num_block=2, hidden=256)               # t=2, 128 x2
        self.conv_6_sep = ConvBlock(128, 512)                              # conv1x1 512
        self.conv_6_dw = LinearBlock(512, 512, kernel=k, groups=512)       # GDC, k = input/16
        self.conv_6_flatten = nn.Flatten()
        self.linear = nn.Linear(512, embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        out = self.conv2_dw(self.conv1(x))
        out = self.conv_3(self.conv_23(out))
        out = self.conv_4(self.conv_34(out))
        out = self.conv_5(self.conv_45(out))
        out = self.conv_6_dw(self.conv_6_sep(out))
        return self.bn(self.linear(self.conv_6_flatten(out)))


@register_backbone
def mobilefacenet(input_size: int = 112, embedding_dim: int = 512, in_chans: int = 1) -> MobileFaceNet:
    """MobileFaceNet (about 1.2 M parameters, 7x7 GDC at 112, 9x9 at 144)."""
    return MobileFaceNet(input_size=input_size, embedding_dim=embedding_dim, in_chans=in_chans)
