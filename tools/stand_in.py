"""A stand-in probe-net for tests, benchmarks and the self-test when no trained checkpoint exists.

A freshly initialised MobileFaceNet is a poor stand-in: with BatchNorm statistics recalibrated per channel
it is chaotic (one grey level of input noise changes the embedding to cosine 0.98, different faces are
orthogonal), so INT8 / FP16 drift measured on it says nothing about a trained model. :func:`lsuv_scale`
instead scales each BatchNorm by one scalar so every layer's output has unit variance on real faces
(LSUV, Mishkin & Matas 2016): the network stays smooth (noise-robust) with realistic activation ranges.
Numbers measured with it are labelled "untrained stand-in" wherever they are reported.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["lsuv_scale", "stand_in_probe_net"]


def lsuv_scale(model: Any, faces: np.ndarray) -> Any:
    """Set every BatchNorm's running statistics to (0, scalar variance of its output on ``faces``), in place.

    Args:
        model: a backbone (torch ``nn.Module``).
        faces: (N, C, S, S) float32 network input of real faces (32-64 are enough).

    Returns:
        ``model`` in eval mode.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    model.eval()

    def hook(module: Any, _inputs: Any, output: Any) -> Any:
        dims = [d for d in range(output.dim()) if d != 1]
        var = output.detach().var(dim=dims).mean().clamp_min(1e-12)
        module.running_mean.zero_()
        module.running_var.fill_(float(var))
        return output / var.sqrt()  # downstream layers see the rescaled activations in this same pass

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _BatchNorm)]
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    return model.eval()


def stand_in_probe_net(faces: np.ndarray, arch: str = "mobilefacenet", seed: int = 0, **kwargs: Any) -> Any:
    """An untrained but smooth backbone (seeded init + :func:`lsuv_scale` on ``faces``), in eval mode."""
    import torch

    from hsst.train.models import create_backbone

    torch.manual_seed(seed)
    model = create_backbone(arch, **kwargs)
    return lsuv_scale(model, faces)
