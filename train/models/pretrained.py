"""Build a registry backbone with pretrained weights from :mod:`hsst.pretrained` (fetched at set-up).

``hsst-train --init mobilefacenet-ms1m`` and :func:`create_pretrained` load the TFLite tensors into
:class:`~hsst.train.models.mobilefacenet_tf.MobileFaceNetTF` in graph order: every convolution (weights +
folded-BatchNorm bias) and every PReLU slope, checked by shape, all or nothing. ``python -m
hsst.train.models.pretrained save`` writes the import as an hsst probe-net checkpoint, so ``hsst-eval``,
``hsst-export`` and the study treat it like any trained model.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from hsst.core.errors import HsstError, ModelError
from hsst.pretrained import PRETRAINED, TfliteLayer, pretrained_path, read_tflite_layers, weights
from hsst.train.models.base import unwrap_model
from hsst.train.models.probe_checkpoint import meta_for, save_probe_checkpoint
from hsst.train.models.registry import create_backbone

logger = logging.getLogger(__name__)


def _weighted_modules(model: nn.Module) -> List[nn.Module]:
    """Convolutions and PReLUs in the order ``forward`` runs them (module definition order here)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]


def merge_linear_tail(layers: List[TfliteLayer]) -> List[TfliteLayer]:
    """Multiply out the graph's last two 1x1 convolutions (no activation between: one linear map).

    ``W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)``, computed in float64 so the product is exact to float32.
    """
    *head, first, second = layers
    if not (first.kind == second.kind == "conv" and first.weight.shape[2:] == second.weight.shape[2:] == (1, 1)):
        return layers
    w1, w2 = first.weight[:, :, 0, 0].astype(np.float64), second.weight[:, :, 0, 0].astype(np.float64)
    b1 = first.bias.astype(np.float64) if first.bias is not None else np.zeros(w1.shape[0])
    b2 = second.bias.astype(np.float64) if second.bias is not None else np.zeros(w2.shape[0])
    weight = (w2 @ w1).astype(np.float32)[:, :, None, None]
    return head + [TfliteLayer("conv", weight, (w2 @ b1 + b2).astype(np.float32), 1, second.same_padding)]


def pretrained_state_dict(name: str, model: nn.Module) -> Dict[str, torch.Tensor]:
    """The state dict of ``model`` filled from pretrained weights ``name`` (the model is not changed).

    A 1-channel model gets the RGB stem summed over colour (exact for a gray image fed as R=G=B); a model with
    another embedding size keeps its own last projection.

    Raises:
        ModelError: weights not fetched / tampered (from :func:`hsst.pretrained.pretrained_path`), or a network
            whose layers do not match the file's.
    """
    spec = weights(name)
    model = unwrap_model(model)
    if getattr(model, "arch", "") != spec.arch:
        raise ModelError(f"pretrained weights {name!r} load into the {spec.arch!r} backbone, not "
                         f"{getattr(model, 'arch', type(model).__name__)!r}; use --backbone {spec.arch}")
    layers = merge_linear_tail(read_tflite_layers(pretrained_path(name)))
    modules = _weighted_modules(model)
    if len(layers) != len(modules):
        raise ModelError(f"{name}: the file has {len(layers)} weighted layers, {spec.arch} has {len(modules)}")
    names = {id(m): n for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    last = modules[-1]
    for index, (layer, module) in enumerate(zip(layers, modules)):
        prefix = names[id(module)]
        if module is last and module.out_channels != spec.embedding_dim:
            logger.info("%s: embedding size %d != pretrained %d; the last projection keeps its initialisation",
                        name, module.out_channels, spec.embedding_dim)
            continue
        weight = torch.from_numpy(layer.weight)
        if index == 0 and module.in_channels == 1 and weight.shape[1] == 3:
            weight = weight.sum(dim=1, keepdim=True)  # gray stem: R = G = B = gray
        _copy(state, f"{prefix}.weight", weight, name)
        if layer.bias is not None:
            _copy(state, f"{prefix}.bias", torch.from_numpy(layer.bias), name)
    return state


def _copy(state: Dict[str, torch.Tensor], key: str, value: torch.Tensor, name: str) -> None:
    if key not in state:
        raise ModelError(f"{name}: the network has no tensor {key}")
    if tuple(state[key].shape) != tuple(value.shape):
        raise ModelError(f"{name}: {key} is {tuple(state[key].shape)} in the network, {tuple(value.shape)} in the file")
    state[key] = value.to(state[key].dtype)


def create_pretrained(name: str, input_size: int = 112, in_chans: int = 1,
                      embedding_dim: Optional[int] = None) -> nn.Module:
    """The backbone of pretrained weights ``name`` with those weights loaded (eval mode)."""
    spec = weights(name)
    model = create_backbone(spec.arch, input_size=input_size, in_chans=in_chans,
                            embedding_dim=embedding_dim or spec.embedding_dim)
    model.load_state_dict(pretrained_state_dict(name, model), strict=True)
    return model.eval()


def save_pretrained_checkpoint(name: str, out: Path, color: str = "gray", input_size: int = 112) -> Path:
    """Write the import as an hsst probe-net checkpoint (gray: summed stem; rgb: as in the file)."""
    spec = weights(name)
    model = create_pretrained(name, input_size=input_size, in_chans=1 if color == "gray" else 3)
    meta = meta_for(model, name=f"{name}-{input_size}", training={
        "method": "import", "pretrained": name, "source": spec.spec, "provenance": spec.provenance,
        "license": spec.license, "iterations": 0})
    meta.preprocess.color = color
    return save_probe_checkpoint(out, model, meta, extra={"pretrained": name})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsst.train.models.pretrained",
                                     description="Save pretrained weights as an hsst probe-net checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="write <out> (a .pt that hsst-eval / hsst-export / --init read)")
    save.add_argument("name", choices=sorted(PRETRAINED))
    save.add_argument("--out", required=True, type=Path)
    save.add_argument("--color", choices=("gray", "rgb"), default="gray")
    save.add_argument("--input-size", type=int, default=112)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = save_pretrained_checkpoint(args.name, args.out, args.color, args.input_size)
    except HsstError as exc:
        logger.error("error: %s", exc)
        return 2
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
