"""Softmax over (positive, prototypes): eq. (1)/(2) of the HSST paper, no margin."""
from __future__ import annotations

from hsst.train.losses.base import MarginSoftmaxLoss

DEFAULT_SCALE = 30.0


class SoftmaxLoss(MarginSoftmaxLoss):
    """``-log e^{s cos_pos} / (e^{s cos_pos} + sum_valid e^{s cos_neg})``.

    Args:
        scale: ``s``. 30 (default) suits fine-tuning on small NIR-VIS sets with 128-entry queues;
            MS1M-scale classification usually uses 64.
    """

    def __init__(self, scale: float = DEFAULT_SCALE) -> None:
        super().__init__(scale)
