"""Common base of every backbone: the attributes the trainer, checkpoints and exporter rely on."""
from __future__ import annotations

import torch
from torch import nn

from hsst.core.errors import ConfigError, InputError

CHANNELS = (1, 3)


def _is_exporting() -> bool:
    """True while tracing / exporting / compiling, where Python-side shape checks must stay out of the graph."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class Backbone(nn.Module):
    """An embedding network: ``(N, in_chans, S, S)`` float -> ``(N, embedding_dim)`` (not normalised).

    Attributes:
        arch: registry name (set by :func:`hsst.train.models.create_backbone`).
        input_size: side ``S`` of the square input (a multiple of 16).
        embedding_dim: length of the output embedding.
        in_chans: input channels: 1 (gray / NIR) or 3 (RGB).
    """

    arch: str = ""

    def __init__(self, input_size: int, embedding_dim: int, in_chans: int) -> None:
        super().__init__()
        check_backbone_args(input_size, embedding_dim, in_chans)
        self.input_size = int(input_size)
        self.embedding_dim = int(embedding_dim)
        self.in_chans = int(in_chans)

    @property
    def arch_kwargs(self) -> dict:
        """The keyword arguments that recreate this network with :func:`create_backbone`."""
        return {"input_size": self.input_size, "embedding_dim": self.embedding_dim, "in_chans": self.in_chans}

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` is ``(N, in_chans, input_size, input_size)`` floating point."""
        if _is_exporting():
            return
        expected = (self.in_chans, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected or not x.is_floating_point():
            raise InputError(
                f"{self.arch or type(self).__name__} expects a float tensor (N, {self.in_chans}, {self.input_size}, "
                f"{self.input_size}), got {x.dtype} {tuple(x.shape)}; preprocess aligned crops with "
                "hsst.core.preprocess.to_input using this model's ModelMeta.preprocess")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def check_backbone_args(input_size: int, embedding_dim: int, in_chans: int) -> None:
    """Validate the arguments every backbone shares (:class:`ConfigError` with the fix)."""
    if not isinstance(input_size, int) or input_size <= 0 or input_size % 16 != 0:
        raise ConfigError(f"input_size={input_size!r} must be a positive multiple of 16 (the backbones downsample "
                          "by 16 before the embedding layer), e.g. 112 or 144")
    if not isinstance(embedding_dim, int) or embedding_dim <= 0:
        raise ConfigError(f"embedding_dim={embedding_dim!r} must be a positive integer, e.g. 512")
    if in_chans not in CHANNELS:
        raise ConfigError(f"in_chans={in_chans!r} must be 1 (gray / NIR) or 3 (RGB)")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (PReLU slopes and frozen parameters included unless ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_summary(model: nn.Module) -> str:
    """One readable paragraph: architecture, input, embedding size, parameter count and top-level blocks."""
    model = unwrap_model(model)
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    arch = getattr(model, "arch", "") or type(model).__name__
    lines = [f"{arch} ({type(model).__name__})"]
    if isinstance(model, Backbone):
        lines.append(f"  input: {model.in_chans}x{model.input_size}x{model.input_size}, "
                     f"embedding: {model.embedding_dim}")
    lines.append(f"  parameters: {total:,} ({trainable:,} trainable)")
    for name, child in model.named_children():
        lines.append(f"    {name:<16s} {type(child).__name__:<14s} {count_parameters(child):>12,}")
    return "\n".join(lines)
