"""Additive angular-margin softmax (Arc-softmax / ArcFace, Deng et al. 2019) over (positive, prototypes)."""
from __future__ import annotations

import math

import torch

from hsst.core.errors import ConfigError
from hsst.train.losses.base import MarginSoftmaxLoss
from hsst.train.losses.softmax import DEFAULT_SCALE

DEFAULT_MARGIN = 0.5


class ArcSoftmaxLoss(MarginSoftmaxLoss):
    """Positive logit ``s cos(theta + m)`` with ``theta = arccos(cos_pos)``, negatives ``s cos_neg``.

    ``cos(theta + m)`` stops decreasing monotonically once ``theta + m > pi``. As insightface
    (``easy_margin=False``), when ``theta > pi - m`` (i.e. ``cos_pos <= cos(pi - m)``) the positive logit is
    ``s (cos_pos - m sin(pi - m))`` instead (a first-order margin in cosine space), which keeps the logit
    decreasing in ``theta`` so very hard positives are still pulled in rather than pushed out.

    Args:
        scale: ``s`` (default 30).
        margin: angular margin ``m`` in radians (default 0.5, the ArcFace value).
    """

    def __init__(self, scale: float = DEFAULT_SCALE, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__(scale)
        if not 0.0 <= margin < math.pi / 2:
            raise ConfigError(f"Arc-softmax margin={margin} must be in [0, pi/2) radians (typical 0.5)")
        self.margin = float(margin)
        self._cos_m = math.cos(margin)
        self._sin_m = math.sin(margin)
        self._threshold = math.cos(math.pi - margin)   # theta + m == pi here
        self._fallback = math.sin(math.pi - margin) * margin

    def positive_logit(self, cos_pos: torch.Tensor) -> torch.Tensor:
        # clamp keeps sqrt's gradient finite at |cos| = 1 (clamp passes no gradient when active)
        sin_pos = torch.sqrt((1.0 - cos_pos * cos_pos).clamp(min=1e-7))
        arc = cos_pos * self._cos_m - sin_pos * self._sin_m
        return self.scale * torch.where(cos_pos > self._threshold, arc, cos_pos - self._fallback)
