"""IR-ResNet ("improved residual" ResNet of ArcFace), the insightface ``iresnet`` layout.

Residual unit: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus identity (or 1x1 conv + BN when the
shape changes). Stem conv3x3 s1 64 -> BN -> PReLU; four stages (64, 128, 256, 512 channels, each starting with
stride 2); output BN -> flatten -> dropout -> Linear(512 * (input/16)^2, embedding_dim) -> BatchNorm1d.
The final map is 7x7 at input 112 and 9x9 at 144. Module names match insightface ``arcface_torch`` so its
checkpoints load by name (:func:`hsst.train.models.probe_checkpoint.load_foreign_state_dict`); as there, the scale of
the final BatchNorm1d (``features.weight``) is fixed at 1 (``requires_grad=False``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from hsst.core.errors import ConfigError
from hsst.train.models.base import Backbone
from hsst.train.models.registry import register_backbone


def _conv3x3(in_c: int, out_c: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_c, out_c, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN-Conv-BN-PReLU-Conv-BN residual unit."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(Backbone):
    """IR-ResNet embedding network.

    Args:
        layers: residual units per stage (``[3, 4, 14, 3]`` for IR-ResNet-50).
        input_size: side of the square input; a multiple of 16.
        embedding_dim: embedding length.
        in_chans: 1 (gray / NIR) or 3 (RGB).
        dropout: dropout probability before the embedding layer (insightface uses 0 for MS1M-scale data).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3), input_size: int = 112, embedding_dim: int = 512,
                 in_chans: int = 1, dropout: float = 0.0) -> None:
        super().__init__(input_size, embedding_dim, in_chans)
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ConfigError(f"IResNet needs 4 positive stage depths, got {list(layers)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout={dropout} must be in [0, 1)")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        final = input_size // 16
        self.fc = nn.Linear(512 * final * final, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(planes, eps=1e-5),
        )
        units = [IBasicBlock(self.inplanes, planes, stride=2, downsample=downsample)]
        self.inplanes = planes
        units += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.features.weight.requires_grad = False  # insightface: the embedding BN only shifts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


@register_backbone(aliases=("iresnet50",))
def resnet50(input_size: int = 112, embedding_dim: int = 512, in_chans: int = 1, dropout: float = 0.0) -> IResNet:
    """IR-ResNet-50 (insightface ``iresnet50``: [3, 4, 14, 3] units)."""
    return IResNet((3, 4, 14, 3), input_size=input_size, embedding_dim=embedding_dim, in_chans=in_chans,
                   dropout=dropout)
