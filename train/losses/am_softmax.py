"""Additive-margin softmax (AM-softmax / CosFace, Wang et al. 2018) over (positive, prototypes)."""
from __future__ import annotations

import torch

from hsst.core.errors import ConfigError
from hsst.train.losses.base import MarginSoftmaxLoss
from hsst.train.losses.softmax import DEFAULT_SCALE

DEFAULT_MARGIN = 0.35


class AMSoftmaxLoss(MarginSoftmaxLoss):
    """Positive logit ``s (cos_pos - m)``, negatives ``s cos_neg``.

    Args:
        scale: ``s`` (default 30).
        margin: additive cosine margin ``m`` (default 0.35, the AM-softmax paper's value).
    """

    def __init__(self, scale: float = DEFAULT_SCALE, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__(scale)
        if not 0.0 <= margin < 1.0:
            raise ConfigError(f"AM-softmax margin={margin} must be in [0, 1) (typical 0.35)")
        self.margin = float(margin)

    def positive_logit(self, cos_pos: torch.Tensor) -> torch.Tensor:
        return self.scale * (cos_pos - self.margin)
