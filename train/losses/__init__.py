"""Losses over (anchor, positive, prototypes): softmax, AM-softmax, Arc-softmax, triplet; factory and defaults.

Defaults (chosen for fine-tuning a pretrained backbone on small NIR-VIS sets, see :data:`LOSS_DEFAULTS`):
scale 30 for the softmax family, AM margin 0.35, Arc margin 0.5 rad, triplet cosine margin 0.3 (hard mining).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict

from hsst.core.errors import ConfigError
from hsst.train.losses.am_softmax import AMSoftmaxLoss
from hsst.train.losses.arc_softmax import ArcSoftmaxLoss
from hsst.train.losses.base import MarginSoftmaxLoss, PrototypeLoss, batch_negative_mask
from hsst.train.losses.classifier import CosineClassifier
from hsst.train.losses.softmax import SoftmaxLoss
from hsst.train.losses.triplet import TripletLoss

_LOSSES = {
    "softmax": SoftmaxLoss,
    "am-softmax": AMSoftmaxLoss,
    "arc-softmax": ArcSoftmaxLoss,
    "triplet": TripletLoss,
}
LOSS_NAMES = tuple(_LOSSES)


def _defaults(cls: type) -> Dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.default is not inspect.Parameter.empty}


#: name -> default keyword arguments, e.g. ``{"am-softmax": {"scale": 30.0, "margin": 0.35}, ...}``
LOSS_DEFAULTS: Dict[str, Dict[str, Any]] = {name: _defaults(cls) for name, cls in _LOSSES.items()}


def create_loss(name: str, **kwargs: Any) -> PrototypeLoss:
    """Build a loss by name (``softmax``, ``am-softmax``, ``arc-softmax``, ``triplet``).

    Keyword arguments whose value is None are dropped (the default applies), so a CLI can pass unset options
    through; an option the loss does not take is a :class:`ConfigError`.
    """
    key = str(name).lower().replace("_", "-")
    if key not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(kwargs) - set(LOSS_DEFAULTS[key]))
    if unknown:
        raise ConfigError(f"loss {key!r} does not take {unknown}; its options are {LOSS_DEFAULTS[key]}")
    return _LOSSES[key](**kwargs)


__all__ = [
    "PrototypeLoss", "MarginSoftmaxLoss", "SoftmaxLoss", "AMSoftmaxLoss", "ArcSoftmaxLoss", "TripletLoss",
    "CosineClassifier", "batch_negative_mask", "create_loss", "LOSS_NAMES", "LOSS_DEFAULTS",
]
