"""Resumable, seeded batch samplers for iteration-based training, and the collate functions.

Both samplers are infinite iterators of batches of ``(index, sample_seed)`` keys for the datasets in
:mod:`hsst.train.data.datasets`. Epoch ``e`` is a permutation of all indexes seeded by ``(seed, e)``; batches
are taken from it without replacement and the last partial batch is dropped. ``sample_seed`` is a hash of
``(seed, epoch, position, index)``, so every tensor a run sees follows from the sampler state alone.
``state_dict()`` / ``load_state_dict()`` resume with exactly the next batch.

Distributed training: every rank builds the sampler with the same seed; the global batch is
``batch_size * world_size`` indexes and rank ``r`` takes slice ``r`` of it, so ranks never share an index
within a global batch.

With a prefetching ``DataLoader`` the sampler runs ahead of the training loop; checkpoint
``sampler.state_for_step(steps_done)`` (the state after ``steps_done`` batches from the start) rather than
``state_dict()`` in that case.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from hsst.core.errors import ConfigError

logger = logging.getLogger(__name__)

_M64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """Well-mixed non-negative 63-bit seed from integers (splitmix64 chain; stable across platforms)."""
    h = 0
    for part in parts:
        h = _splitmix64(h ^ (int(part) & _M64))
    return h & _MASK63


class _SeededBatchSampler:
    """Infinite seeded epochs of batches over ``num_items`` indexes, sliced per rank, with resumable state."""

    _what = "items"

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, "
                              f"world_size={world_size}")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.global_batch = self.batch_size * self.world_size
        self._check_size()
        self.epoch = 0
        self.position = 0
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _check_size(self) -> None:
        if self.num_items < self.global_batch:
            raise ConfigError(f"{type(self).__name__} needs at least batch_size x world_size = "
                              f"{self.batch_size} x {self.world_size} = {self.global_batch} {self._what}, the "
                              f"dataset has {self.num_items}; lower the batch size or add data")

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def step(self) -> int:
        """Batches yielded since epoch 0, position 0."""
        return self.epoch * self.batches_per_epoch + self.position

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of all indexes in ``epoch`` (the same on every rank)."""
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
            self._perm = rng.permutation(self.num_items)
            self._perm_epoch = epoch
        return self._perm

    def global_batch_at(self, epoch: int, position: int) -> np.ndarray:
        """Indexes of global batch ``position`` of ``epoch`` across all ranks."""
        start = position * self.global_batch
        return self.permutation(epoch)[start:start + self.global_batch]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        return self

    def __next__(self) -> List[Tuple[int, int]]:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        indexes = self.global_batch_at(self.epoch, self.position)
        local = indexes[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        batch = [(int(i), derive_seed(self.seed, self.epoch, self.position, int(i))) for i in local]
        self.position += 1
        return batch

    def state_dict(self) -> Dict[str, Any]:
        """Where the sampler stands: the next batch is ``position`` of ``epoch``."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_items": self.num_items, "global_batch": self.global_batch}

    def state_for_step(self, step: int) -> Dict[str, Any]:
        """The state after ``step`` batches counted from epoch 0, position 0 (for prefetching loaders)."""
        if step < 0:
            raise ConfigError(f"step must be >= 0, got {step}")
        epoch, position = divmod(int(step), self.batches_per_epoch)
        return {"epoch": epoch, "position": position, "seed": self.seed,
                "num_items": self.num_items, "global_batch": self.global_batch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` or :meth:`state_for_step`).

        Raises:
            ConfigError: the state misses ``epoch``/``position``/``seed`` or holds invalid values.
        """
        missing = [k for k in ("epoch", "position", "seed") if k not in state]
        if missing:
            raise ConfigError(f"sampler state lacks {missing}; expected the dict from state_dict()")
        epoch, position, seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        if epoch < 0 or position < 0 or seed < 0:
            raise ConfigError(f"invalid sampler state {state}")
        for key, mine in (("num_items", self.num_items), ("global_batch", self.global_batch)):
            if key in state and int(state[key]) != mine:
                logger.warning("resuming a sampler saved with %s=%s, now %s: the batch order will differ from the "
                               "interrupted run", key, state[key], mine)
        if position > self.batches_per_epoch:
            raise ConfigError(f"sampler state position {position} is beyond the {self.batches_per_epoch} batches "
                              f"of an epoch; the dataset or batch size changed since the checkpoint")
        if seed != self.seed:
            logger.info("sampler seed %d replaced by the checkpoint's seed %d", self.seed, seed)
        self.seed, self.epoch, self.position = seed, epoch, position
        self._perm_epoch = -1


class IdentityBatchSampler(_SeededBatchSampler):
    """Batches of DISTINCT identities (the HSST loss contrasts every probe with the other identities).

    Args:
        num_identities: identities in the :class:`~hsst.train.data.datasets.PairDataset`.
        batch_size: identities per batch on this rank.
        seed: run seed (the same on every rank).
        rank: this process's rank.
        world_size: number of processes; the global batch has ``batch_size * world_size`` identities.

    Raises:
        ConfigError: fewer identities than a global batch, or invalid sizes.
    """

    _what = "identities (each batch holds distinct identities)"

    def __init__(self, num_identities: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(num_identities, batch_size, seed, rank, world_size)

    @property
    def num_identities(self) -> int:
        return self.num_items


class ItemBatchSampler(_SeededBatchSampler):
    """Random batches of items of an :class:`~hsst.train.data.datasets.ImageDataset` (same state API).

    Args:
        num_items: items in the dataset.
        batch_size: items per batch on this rank.
        seed: run seed (the same on every rank).
        rank: this process's rank.
        world_size: number of processes.
    """


def collate_pairs(batch: Sequence[Tuple[torch.Tensor, torch.Tensor, int]]) -> Tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
    """``[(nir, vis, label)]`` -> ``(nir (B,C,S,S), vis (B,C,S,S), labels (B,) int64)``."""
    nir, vis, labels = zip(*batch)
    return torch.stack(nir), torch.stack(vis), torch.as_tensor(labels, dtype=torch.int64)


def collate_items(batch: Sequence[Tuple[torch.Tensor, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[(image, label)]`` -> ``(images (B,C,S,S), labels (B,) int64)``."""
    images, labels = zip(*batch)
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.int64)
