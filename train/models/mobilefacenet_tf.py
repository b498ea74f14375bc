"""MobileFaceNet in the layout of sirius-ai/MobileFaceNet_TF, the network of the ``mobilefacenet-ms1m`` weights.

It differs from :mod:`hsst.train.models.mobilefacenet` (the PyTorch variant) in ways that matter for loading
its weights exactly::

    conv3x3 64 (2) -> separable: depthwise3x3 64 + PReLU, pointwise 64 (linear)
    -> bottleneck t=2 64 x5 (first s2) -> t=4 128 (s2) -> t=2 128 x6 -> t=4 128 (s2) -> t=2 128 x2
    -> conv1x1 512 -> GDC depthwise 7x7 (linear) -> conv1x1 192 (linear) -> flatten

* **BatchNorm is folded** into every convolution (a bias, no BatchNorm layer), as in the TFLite file. Fine-tuning
  keeps it that way: with no BatchNorm, training and evaluation compute the same function, small or single-
  modality batches cannot shift statistics away from what MS1M taught, HSST's gallery-net is an exact moving
  average of the probe-net, and the exported graph is the imported one. (Putting BatchNorm back as an identity
  would make train-mode batches renormalise every layer from step 1: a large, needless change to a network
  whose strength is what we want to keep.)
* **TensorFlow ``SAME`` padding**: stride-2 3x3 convolutions on even inputs pad 0 before and 1 after (PyTorch's
  symmetric padding would shift every feature map by half a pixel).
* **Embedding**: one linear 1x1 projection 512 -> 192. The file has two in a row (512 -> 512 -> 192, no
  activation between); their product is the same function with 262k fewer parameters (4.1 MB instead of 5.2 MB
  in float32), so the import multiplies them out. 192-d by default (the weights' size); other sizes
  re-initialise only this projection.
* **Gray stem**: ``in_chans=1`` takes the RGB stem kernels summed over colour, so a gray crop gives exactly the
  embedding of that crop repeated on three channels.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from hsst.train.models.base import Backbone
from hsst.train.models.registry import register_backbone


class ConvPReLU(nn.Module):
    """Convolution (with folded-BatchNorm bias) -> PReLU; TensorFlow ``SAME`` padding."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = tf_same_conv(in_c, out_c, kernel, stride, groups)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.conv(x))


def tf_same_conv(in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """A biased convolution with TensorFlow ``SAME`` padding for even inputs (all this network sees)."""
    if kernel == 1:
        return nn.Conv2d(in_c, out_c, 1, stride=stride, groups=groups)
    if stride == 1:
        return nn.Conv2d(in_c, out_c, kernel, padding=kernel // 2, groups=groups)
    total = kernel - stride  # SAME on an even side: pad (k - s) in all, the smaller half first
    pad = nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))
    return nn.Sequential(pad, nn.Conv2d(in_c, out_c, kernel, stride=stride, groups=groups))


class InvertedResidual(nn.Module):
    """1x1 expand + PReLU -> depthwise 3x3 + PReLU -> linear 1x1 project (+ input when shapes agree)."""

    def __init__(self, in_c: int, out_c: int, hidden: int, stride: int = 1) -> None:
        super().__init__()
        self.expand = ConvPReLU(in_c, hidden)
        self.depthwise = ConvPReLU(hidden, hidden, kernel=3, stride=stride, groups=hidden)
        self.project = nn.Conv2d(hidden, out_c, 1)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


def _stage(in_c: int, out_c: int, hidden_first: int, hidden: int, blocks: int, stride: int) -> nn.Sequential:
    layers: List[nn.Module] = [InvertedResidual(in_c, out_c, hidden_first, stride)]
    layers += [InvertedResidual(out_c, out_c, hidden) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class MobileFaceNetTF(Backbone):
    """MobileFaceNet, sirius-ai/MobileFaceNet_TF layout (see the module docstring).

    Args:
        input_size: side of the square input; a multiple of 16 (the GDC kernel is ``input_size // 16``).
        embedding_dim: embedding length (192: the pretrained weights' size).
        in_chans: 1 (gray / NIR, summed RGB stem) or 3 (RGB).
    """

    def __init__(self, input_size: int = 112, embedding_dim: int = 192, in_chans: int = 1) -> None:
        super().__init__(input_size, embedding_dim, in_chans)
        self.stem = ConvPReLU(in_chans, 64, kernel=3, stride=2)
        self.stem_dw = ConvPReLU(64, 64, kernel=3, groups=64)
        self.stem_pw = nn.Conv2d(64, 64, 1)
        self.stage2 = _stage(64, 64, hidden_first=128, hidden=128, blocks=5, stride=2)
        self.stage3 = _stage(64, 128, hidden_first=256, hidden=256, blocks=7, stride=2)
        self.stage4 = _stage(128, 128, hidden_first=512, hidden=256, blocks=3, stride=2)
        self.head = ConvPReLU(128, 512)
        k = input_size // 16
        self.gdc = nn.Conv2d(512, 512, k, groups=512)
        self.embedding = nn.Conv2d(512, embedding_dim, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        out = self.stem_pw(self.stem_dw(self.stem(x)))
        out = self.stage4(self.stage3(self.stage2(out)))
        out = self.embedding(self.gdc(self.head(out)))
        return torch.flatten(out, 1)


@register_backbone
def mobilefacenet_tf(input_size: int = 112, embedding_dim: int = 192, in_chans: int = 1) -> MobileFaceNetTF:
    """MobileFaceNet in the MobileFaceNet_TF layout (about 1.03 M parameters, BatchNorm folded, 192-d);
    the architecture of the ``mobilefacenet-ms1m`` pretrained weights."""
    return MobileFaceNetTF(input_size=input_size, embedding_dim=embedding_dim, in_chans=in_chans)
