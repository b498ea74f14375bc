"""Cosine classifier head for the plain baseline: class weights are the prototypes of a PrototypeLoss."""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from hsst.core.errors import ConfigError, InputError
from hsst.train.losses.base import MarginSoftmaxLoss, PrototypeLoss


class CosineClassifier(nn.Module):
    """Normalised class weights ``W`` (num_classes, embedding_dim) trained with a softmax-family loss.

    ``forward(features, labels)`` calls the loss with anchor = features, positive = ``W[labels]``,
    prototypes = ``W`` and the own class masked out of the negatives (it is the positive), which is exactly
    the usual (margin-)softmax classification loss.

    Args:
        embedding_dim: feature length.
        num_classes: number of training identities.
        loss: a softmax-family :class:`PrototypeLoss` or its name for :func:`hsst.train.losses.create_loss`
            (``softmax``, ``am-softmax``, ``arc-softmax``; triplet is not a classifier loss).
        **loss_kwargs: options for ``create_loss`` when ``loss`` is a name.
    """

    def __init__(self, embedding_dim: int, num_classes: int, loss: Union[str, PrototypeLoss] = "softmax",
                 **loss_kwargs) -> None:
        super().__init__()
        if embedding_dim <= 0 or num_classes < 2:
            raise ConfigError(f"CosineClassifier needs embedding_dim > 0 and >= 2 classes, got "
                              f"{embedding_dim}, {num_classes}")
        if isinstance(loss, str):
            from hsst.train.losses import create_loss  # the factory module imports this one
            loss = create_loss(loss, **loss_kwargs)
        if not isinstance(loss, MarginSoftmaxLoss):
            raise ConfigError(f"{type(loss).__name__} is not a classification loss; CosineClassifier takes "
                              "softmax / am-softmax / arc-softmax. For the plain triplet baseline use batch "
                              "embeddings as prototypes with hsst.train.losses.batch_negative_mask")
        self.embedding_dim = int(embedding_dim)
        self.num_classes = int(num_classes)
        self.loss = loss
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, 0.0, 0.01)

    def normalized_weight(self) -> torch.Tensor:
        """``(num_classes, embedding_dim)`` L2-normalised class weights."""
        return F.normalize(self.weight, dim=1)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)`` cosine of each feature with each class (for accuracy monitoring)."""
        return F.normalize(features.float(), dim=1) @ self.normalized_weight().float().t()

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Classification loss (scalar) of ``features`` ``(N, D)`` with integer ``labels`` ``(N,)``."""
        if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool \
                or features.dim() != 2 or labels.shape[0] != features.shape[0]:
            raise InputError(f"features (N, D) and integer labels (N,) expected, got features "
                             f"{tuple(features.shape)}, labels {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise InputError(f"labels must be in [0, {self.num_classes}), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]; the head was built for "
                             f"{self.num_classes} classes")
        w = self.normalized_weight()
        own = F.one_hot(labels.long(), self.num_classes).bool()
        return self.loss(features, w[labels], w, own)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"
