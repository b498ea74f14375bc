"""Prototype queue of HSST: a FIFO ring of gallery-net features and their identity labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsst.core.errors import ConfigError, InputError


class PrototypeQueue(nn.Module):
    """FIFO queue of L2-normalised, detached features with identity labels (buffers, so it is checkpointed).

    The paper keeps 128 prototypes per modality and samples training identities disjoint from the queue; here
    same-identity entries are allowed and masked with :meth:`negative_mask` instead, so datasets with fewer
    identities than ``size + batch`` work.

    Args:
        size: capacity (number of prototypes).
        dim: feature length.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if int(size) <= 0 or int(dim) <= 0:
            raise ConfigError(f"PrototypeQueue needs size > 0 and dim > 0, got size={size}, dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.register_buffer("queue_features", torch.zeros(self.size, self.dim))
        self.register_buffer("queue_labels", torch.full((self.size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))     # next slot to write (oldest when full)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))   # valid entries

    def __len__(self) -> int:
        return int(self.count)

    @property
    def is_full(self) -> bool:
        return len(self) == self.size

    def reset(self) -> None:
        """Empty the queue."""
        self.queue_features.zero_()
        self.queue_labels.fill_(-1)
        self.ptr.zero_()
        self.count.zero_()

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``(B, dim)`` features with ``(B,)`` integer labels, dropping the oldest entries when full.

        When ``B > size`` only the newest ``size`` rows are kept.
        """
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[1] != self.dim \
                or not features.is_floating_point():
            raise InputError(f"queue features must be a float tensor (B, {self.dim}), got "
                             f"{getattr(features, 'dtype', type(features).__name__)} "
                             f"{tuple(getattr(features, 'shape', ()))}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != features.shape[0] \
                or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"queue labels must be an integer tensor ({features.shape[0]},), got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} "
                             f"{tuple(getattr(labels, 'shape', ()))}")
        if features.shape[0] == 0:
            return
        feats = F.normalize(features.detach().float(), dim=1, eps=1e-12)[-self.size:]
        labels = labels.detach()[-self.size:]
        b = feats.shape[0]
        idx = (int(self.ptr) + torch.arange(b)) % self.size
        idx = idx.to(self.queue_features.device)
        self.queue_features[idx] = feats.to(self.queue_features)
        self.queue_labels[idx] = labels.to(self.queue_labels)
        self.ptr.fill_((int(self.ptr) + b) % self.size)
        self.count.fill_(min(int(self.count) + b, self.size))

    def _order(self) -> torch.Tensor:
        """Slot indices of the valid entries, oldest first."""
        n, start = len(self), int(self.ptr) if self.is_full else 0
        return (start + torch.arange(n, device=self.queue_labels.device)) % self.size

    def features(self) -> torch.Tensor:
        """``(K, dim)`` valid prototypes, oldest to newest (a copy: later enqueues do not change it)."""
        return self.queue_features[self._order()]

    def labels(self) -> torch.Tensor:
        """``(K,)`` labels of :meth:`features`, same order."""
        return self.queue_labels[self._order()]

    def negative_mask(self, batch_labels: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` bool, True where the queue entry has the batch sample's identity (not a negative)."""
        if not isinstance(batch_labels, torch.Tensor) or batch_labels.dim() != 1 \
                or batch_labels.is_floating_point() or batch_labels.dtype == torch.bool:
            raise InputError(f"batch_labels must be a 1-D integer tensor, got "
                             f"{getattr(batch_labels, 'dtype', type(batch_labels).__name__)} "
                             f"{tuple(getattr(batch_labels, 'shape', ()))}")
        return batch_labels.to(self.queue_labels.device)[:, None] == self.labels()[None, :]

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
