"""Triplet loss on cosine similarity over (positive, prototypes) (Schroff et al. 2015, FaceNet)."""
from __future__ import annotations

import torch

from hsst.core.errors import ConfigError
from hsst.train.losses.base import PrototypeLoss

DEFAULT_MARGIN = 0.3
MINING = ("hard", "all")


class TripletLoss(PrototypeLoss):
    """Hinge ``max(0, m - cos_pos + cos_neg)`` per (anchor, valid negative).

    ``mining="hard"`` uses the hardest (highest-cosine) valid negative of each anchor; ``"all"`` averages the
    hinge over all valid negatives of the anchor. An anchor without valid negatives contributes 0; the batch
    value is the mean over anchors.

    Args:
        margin: cosine margin ``m`` (default 0.3: on small NIR-VIS sets a cosine gap of 0.3 is reachable,
            larger margins keep most triplets active and overfit).
        mining: ``"hard"`` (default) or ``"all"``.
    """

    def __init__(self, margin: float = DEFAULT_MARGIN, mining: str = "hard") -> None:
        super().__init__()
        if not 0.0 <= margin <= 2.0:
            raise ConfigError(f"triplet margin={margin} must be in [0, 2] (cosine units; typical 0.3)")
        if mining not in MINING:
            raise ConfigError(f"triplet mining={mining!r} must be one of {MINING}")
        self.margin = float(margin)
        self.mining = mining

    def compute_loss(self, cos_pos: torch.Tensor, cos_neg: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        hinge = (self.margin - cos_pos[:, None] + cos_neg).clamp(min=0.0)
        hinge = hinge.masked_fill(~valid_mask, 0.0)
        if self.mining == "hard":
            # the hardest valid negative has the largest cosine, hence the largest hinge (masked ones are 0)
            # K == 0: the empty sum keeps the (zero) result attached to the graph, so backward() still works
            return hinge.max(dim=1).values if hinge.shape[1] else hinge.sum(dim=1)
        count = valid_mask.sum(dim=1)
        return hinge.sum(dim=1) / count.clamp(min=1)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}"
