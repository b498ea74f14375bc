"""The moving-average gallery-net of (heterogeneous) semi-siamese training."""
from __future__ import annotations

import copy
import types

import torch
from torch import nn

from hsst.core.errors import ConfigError, ModelError
from hsst.train.models.base import unwrap_model


def _frozen_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a gallery-net: always eval, so a parent's ``.train()`` cannot switch BN to batch stats."""
    return nn.Module.train(self, False)


def make_gallery_net(probe: nn.Module) -> nn.Module:
    """Gallery-net initialised from the probe-net: a deep copy, ``requires_grad=False``, permanently eval.

    Its ``train()`` is overridden to keep eval mode (BatchNorm uses running statistics, Dropout is off), so
    ``model.train()`` on a parent module does not change it.
    """
    gallery = copy.deepcopy(unwrap_model(probe))
    gallery.requires_grad_(False)
    gallery.train = types.MethodType(_frozen_train, gallery)
    return gallery.eval()


@torch.no_grad()
def ema_update(gallery: nn.Module, probe: nn.Module, decay: float = 0.999) -> None:
    """``gallery <- decay * gallery + (1 - decay) * probe``, in place.

    Parameters and floating-point buffers (BatchNorm ``running_mean`` / ``running_var``) are moving-averaged
    with the same ``decay``; integer buffers (``num_batches_tracked``) are copied. The gallery-net always runs in
    eval mode on these averaged running statistics, so the gallery feature of a sample never depends on the
    rest of its batch.

    Args:
        gallery: the moving-average network (from :func:`make_gallery_net`).
        probe: the SGD-trained network (DDP / torch.compile wrappers are unwrapped).
        decay: weight of the old gallery value (the paper: 0.999).

    Raises:
        ConfigError: decay outside [0, 1].
        ModelError: the two networks have different parameter / buffer names or shapes.
    """
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"EMA decay={decay} must be in [0, 1] (the paper uses 0.999)")
    gallery, probe = unwrap_model(gallery), unwrap_model(probe)
    g_params, p_params = dict(gallery.named_parameters()), dict(probe.named_parameters())
    g_bufs, p_bufs = dict(gallery.named_buffers()), dict(probe.named_buffers())
    if g_params.keys() != p_params.keys() or g_bufs.keys() != p_bufs.keys():
        diff = sorted((set(g_params) ^ set(p_params)) | (set(g_bufs) ^ set(p_bufs)))
        raise ModelError(f"gallery-net and probe-net differ in structure ({diff[:5]}...); build the gallery "
                         "with make_gallery_net(probe)")
    avg_g, avg_p = [], []
    for name, g in list(g_params.items()) + list(g_bufs.items()):
        p = p_params.get(name, p_bufs.get(name))
        if g.shape != p.shape:
            raise ModelError(f"gallery {name} {tuple(g.shape)} vs probe {tuple(p.shape)}: networks differ")
        p = p.detach().to(g.device)
        if g.is_floating_point():
            avg_g.append(g)
            avg_p.append(p.to(g.dtype))
        else:
            g.copy_(p)
    if avg_g:
        torch._foreach_mul_(avg_g, decay)
        torch._foreach_add_(avg_g, avg_p, alpha=1.0 - decay)
