"""Prototype losses: one API for HSST (prototype queues) and the plain baseline (class weights, batch).

Template method (pytorch-metric-learning style): :class:`PrototypeLoss.forward` checks the inputs,
L2-normalises anchor / positive / prototypes, computes cosines and hands them to ``compute_loss``, which
subclasses implement on cosines only::

    loss = create_loss("am-softmax")
    value = loss(probe_feats, gallery_feats, queue.features(), queue.negative_mask(labels))
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from hsst.core.errors import ConfigError, InputError

_EPS = 1e-12


def batch_negative_mask(anchor_labels: torch.Tensor, prototype_labels: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` bool mask, True where prototype j has the same identity as anchor i (not a negative).

    Used for batch prototypes (plain triplet baseline) and prototype queues.
    """
    for name, t in (("anchor_labels", anchor_labels), ("prototype_labels", prototype_labels)):
        if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"{name} must be a 1-D integer tensor, got {t.dtype} {tuple(t.shape)}")
    if anchor_labels.device != prototype_labels.device:
        raise InputError(f"anchor_labels on {anchor_labels.device} but prototype_labels on "
                         f"{prototype_labels.device}; move both to one device")
    return anchor_labels[:, None] == prototype_labels[None, :]


class PrototypeLoss(nn.Module):
    """Base of all losses over (anchor, its positive, prototypes that serve as negatives).

    Subclasses implement :meth:`compute_loss`; :meth:`forward` returns the mean over anchors.
    Computation is in float32 whatever the input dtype (AMP-safe).
    """

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, prototypes: Optional[torch.Tensor],
                negative_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Loss of a batch.

        Args:
            anchor: ``(N, D)`` embeddings being trained (probe-net output).
            positive: ``(N, D)`` the positive of each anchor (gallery-net feature or class weight).
            prototypes: ``(K, D)`` candidate negatives; ``K`` may be 0 (empty queue) and None means none.
            negative_mask: ``(N, K)`` bool, True where prototype j must NOT be a negative of anchor i
                (same identity); None uses every prototype.

        Returns:
            Scalar tensor (mean over the N anchors).
        """
        anchor, positive, prototypes, negative_mask = self._check(anchor, positive, prototypes, negative_mask)
        a = F.normalize(anchor.float(), dim=1, eps=_EPS)
        p = F.normalize(positive.float(), dim=1, eps=_EPS)
        q = F.normalize(prototypes.float(), dim=1, eps=_EPS)
        cos_pos = (a * p).sum(dim=1)
        cos_neg = a @ q.t()
        valid = torch.ones_like(cos_neg, dtype=torch.bool) if negative_mask is None else ~negative_mask
        return self.compute_loss(cos_pos, cos_neg, valid).mean()

    def compute_loss(self, cos_pos: torch.Tensor, cos_neg: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        """Per-anchor loss.

        Args:
            cos_pos: ``(N,)`` cosine of each anchor with its positive.
            cos_neg: ``(N, K)`` cosines with the prototypes.
            valid_mask: ``(N, K)`` bool, True where prototype j is a valid negative of anchor i.

        Returns:
            ``(N,)`` losses (finite also when ``K == 0`` or a row has no valid negative).
        """
        raise NotImplementedError

    @staticmethod
    def _check(anchor, positive, prototypes, negative_mask):
        for name, t in (("anchor", anchor), ("positive", positive)):
            if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
                raise InputError(f"{name} must be a 2-D float tensor (N, D), got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if anchor.shape != positive.shape:
            raise InputError(f"anchor {tuple(anchor.shape)} and positive {tuple(positive.shape)} must have the "
                             "same shape (one positive per anchor)")
        n, d = anchor.shape
        if n == 0:
            raise InputError("empty batch: anchor has 0 rows")
        if prototypes is None:
            prototypes = anchor.new_zeros((0, d))
        if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2 or not prototypes.is_floating_point() \
                or prototypes.shape[1] != d:
            raise InputError(f"prototypes must be a float tensor (K, {d}), got "
                             f"{getattr(prototypes, 'dtype', type(prototypes).__name__)} "
                             f"{tuple(getattr(prototypes, 'shape', ()))}")
        devices = {anchor.device, positive.device, prototypes.device}
        if negative_mask is not None:
            if not isinstance(negative_mask, torch.Tensor) or negative_mask.dtype != torch.bool \
                    or tuple(negative_mask.shape) != (n, prototypes.shape[0]):
                raise InputError(f"negative_mask must be a bool tensor ({n}, {prototypes.shape[0]}), got "
                                 f"{getattr(negative_mask, 'dtype', type(negative_mask).__name__)} "
                                 f"{tuple(getattr(negative_mask, 'shape', ()))}")
            devices.add(negative_mask.device)
        if len(devices) > 1:
            raise InputError(f"loss inputs are on different devices {sorted(str(d) for d in devices)}; "
                             "move anchor, positive, prototypes and negative_mask to one device")
        return anchor, positive, prototypes, negative_mask


class MarginSoftmaxLoss(PrototypeLoss):
    """Softmax cross-entropy with the positive as the target and valid prototypes as the other classes.

    ``-log e^{l_pos} / (e^{l_pos} + sum_valid e^{s cos_neg})`` with ``l_pos = positive_logit(cos_pos)``;
    computed as ``logsumexp`` over ``[l_pos, s cos_neg]`` with masked entries at ``-inf``, so a row without
    valid negatives gives exactly 0.

    Args:
        scale: the scale ``s``.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"scale={scale} must be > 0 (typical: 30 for small data, 64 for MS1M-scale)")
        self.scale = float(scale)

    def positive_logit(self, cos_pos: torch.Tensor) -> torch.Tensor:
        """Logit of the positive (subclasses add their margin)."""
        return self.scale * cos_pos

    def compute_loss(self, cos_pos: torch.Tensor, cos_neg: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        pos = self.positive_logit(cos_pos)
        neg = (self.scale * cos_neg).masked_fill(~valid_mask, float("-inf"))
        logits = torch.cat([pos[:, None], neg], dim=1)
        return torch.logsumexp(logits, dim=1) - pos

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if k in ("scale", "margin"))
