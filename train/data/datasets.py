"""Torch datasets over a :class:`~hsst.data.records.NirVisIndex`.

* :class:`PairDataset`: one NIR and one VIS crop of an identity per item (HSST training).
* :class:`ImageDataset`: single images pooled over NIR and VIS (plain softmax baseline, pretraining).

Items are addressed by ``(index, sample_seed)`` keys from the samplers in :mod:`hsst.train.data.sampler`:
which image is picked and every random transform follow from the key alone, so a resumed run produces the
same tensors as an uninterrupted one. Crops go through :func:`hsst.core.preprocess.to_input`, the one
preprocessing the exported model and the gate use.

An unreadable image met during training is logged once, recorded in ``bad_images`` and replaced by another
image of the same identity (and modality), chosen by the same seeded order whether or not the bad file was
already known, so replacements do not depend on worker history.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from hsst.core.errors import ConfigError, DatasetError, ImageReadError, InputError
from hsst.core.metadata import Preprocess
from hsst.core.preprocess import to_input
from hsst.data.loader import FaceLoader
from hsst.data.records import NirVisIndex
from hsst.train.data.transforms import GrayscaleNir, Identity, RandomHorizontalFlip, Transform

logger = logging.getLogger(__name__)

Key = Union[Tuple[int, int], int]
MODALITIES = ("nir", "vis")
_MASK63 = (1 << 63) - 1


def default_sample_seed(seed: int, index: int) -> int:
    """Sample seed for a plain integer key (when no sampler supplies one)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(2, np.uint32).view(np.uint64)[0]) & _MASK63


class _FaceSource(Dataset):
    """Shared by both datasets: loading with bad-image bookkeeping and the crop -> tensor conversion."""

    #: Errors that make one image unusable (another image of the identity is used instead).
    skip_errors: Tuple[type, ...] = (ImageReadError,)

    def __init__(self, index: NirVisIndex, loader: FaceLoader, preprocess: Preprocess,
                 augment: Optional[Transform], seed: int) -> None:
        if loader.crop_size != preprocess.crop_size:
            raise ConfigError(f"FaceLoader crop_size {loader.crop_size} differs from the model's preprocess "
                              f"crop_size {preprocess.crop_size}; build the loader with "
                              f"FaceLoader(preprocess.crop_size)")
        self.index = index
        self.loader = loader
        self.preprocess = preprocess
        self.augment = augment if augment is not None else Identity()
        self.seed = seed
        #: path -> why it could not be used (filled during training, per worker process).
        self.bad_images: Dict[Path, str] = {}

    def _parse_key(self, key: Key, length: int) -> Tuple[int, int]:
        if isinstance(key, (tuple, list)) and len(key) == 2:
            index, sample_seed = key
        elif isinstance(key, (int, np.integer)):
            index, sample_seed = key, default_sample_seed(self.seed, int(key))
        else:
            raise InputError(f"dataset key must be (index, sample_seed) or an int index, got {key!r}")
        index, sample_seed = int(index), int(sample_seed)
        if not 0 <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} items")
        if sample_seed < 0:
            raise InputError(f"sample_seed must be >= 0, got {sample_seed}")
        return index, sample_seed

    def _mark_bad(self, path: Path, reason: str) -> None:
        if path not in self.bad_images:
            self.bad_images[path] = reason
            logger.warning("skipping unreadable image %s (another image of the identity is used): %s", path, reason)

    def _try_load(self, path: Path) -> Optional[np.ndarray]:
        if path in self.bad_images:
            return None
        try:
            return self.loader.load(path)
        except self.skip_errors as exc:
            self._mark_bad(path, str(exc))
            return None

    def _first_readable(self, paths: Sequence[Path], order: Sequence[int],
                        start: int = 0) -> Tuple[int, Optional[np.ndarray]]:
        """First image in ``order[start:]`` that loads: (its position in ``order``, crop); (-1, None) if none."""
        for pos in range(start, len(order)):
            crop = self._try_load(paths[order[pos]])
            if crop is not None:
                return pos, crop
        return -1, None

    def _no_readable(self, identity: str, modality: str, paths: Sequence[Path]) -> DatasetError:
        reasons = "; ".join(f"{p}: {self.bad_images.get(p, '?')}" for p in paths[:5])
        return DatasetError(f"identity {identity!r}: none of its {len(paths)} {modality.upper()} images is readable "
                            f"({reasons}); remove or fix the identity in {self.index.root}")

    def _to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_input([crop], self.preprocess)[0])


class PairDataset(_FaceSource):
    """NIR-VIS pairs of one identity: item ``(identity_index, sample_seed)`` -> ``(nir, vis, label)``.

    For synthetic-NIR indexes the two sides are two different images of the identity when it has at least two
    (one becomes simulated NIR through ``nir_transform``), so a pair never shows the same photo twice.

    Args:
        index: the identities and their images.
        loader: image file -> aligned crop.
        preprocess: the model's preprocessing (crop size, colour mode, normalisation).
        nir_transform: applied to the NIR crop (real NIR: grayscale; VIS-only data: the simulated-NIR maker).
        vis_transform: applied to the VIS crop.
        augment: applied to both crops afterwards, each with its own random stream (``None``: no augmentation).
        seed: seed for plain integer keys (``dataset[i]``) that carry no sample seed.
    """

    def __init__(self, index: NirVisIndex, loader: FaceLoader, preprocess: Preprocess,
                 nir_transform: Optional[Transform] = GrayscaleNir(), vis_transform: Optional[Transform] = Identity(),
                 augment: Optional[Transform] = RandomHorizontalFlip(), seed: int = 0) -> None:
        super().__init__(index, loader, preprocess, augment, seed)
        self.nir_transform = nir_transform if nir_transform is not None else Identity()
        self.vis_transform = vis_transform if vis_transform is not None else Identity()

    def __len__(self) -> int:
        return len(self.index.identities)

    @property
    def num_classes(self) -> int:
        return len(self.index.identities)

    def pick(self, key: Key) -> Tuple[Path, np.ndarray, Path, np.ndarray, int]:
        """The raw crops of an item before transforms: ``(nir_path, nir_crop, vis_path, vis_crop, label)``."""
        return self._pick(*self._parse_key(key, len(self)))

    def _pick(self, label: int, sample_seed: int) -> Tuple[Path, np.ndarray, Path, np.ndarray, int]:
        identity = self.index.identities[label]
        rng = np.random.default_rng(sample_seed)
        if self.index.synthetic_nir:
            paths = self.index.vis[identity]
            order = rng.permutation(len(paths))
            pos, nir = self._first_readable(paths, order)
            if nir is None:
                raise self._no_readable(identity, "vis", paths)
            nir_path = paths[order[pos]]
            pos2, vis = self._first_readable(paths, order, start=pos + 1)
            vis_path = paths[order[pos2]] if vis is not None else nir_path
            if vis is None:  # a single readable photo: both sides come from it
                vis = nir.copy()
            return nir_path, nir, vis_path, vis, label
        crops = []
        for modality, paths in (("nir", self.index.nir[identity]), ("vis", self.index.vis[identity])):
            order = rng.permutation(len(paths))
            pos, crop = self._first_readable(paths, order)
            if crop is None:
                raise self._no_readable(identity, modality, paths)
            crops.append((paths[order[pos]], crop))
        (nir_path, nir), (vis_path, vis) = crops
        return nir_path, nir, vis_path, vis, label

    def __getitem__(self, key: Key) -> Tuple[torch.Tensor, torch.Tensor, int]:
        label, sample_seed = self._parse_key(key, len(self))
        _, nir, _, vis, _ = self._pick(label, sample_seed)
        nir_rng = np.random.default_rng([sample_seed, 1])
        vis_rng = np.random.default_rng([sample_seed, 2])
        nir = self.augment(self.nir_transform(nir, nir_rng), nir_rng)
        vis = self.augment(self.vis_transform(vis, vis_rng), vis_rng)
        return self._to_tensor(nir), self._to_tensor(vis), label


class ImageDataset(_FaceSource):
    """Single images pooled over modalities: item ``(item_index, sample_seed)`` -> ``(image, label)``.

    Items are ``(path, label, modality)``, identity by identity. For synthetic-NIR indexes every VIS image
    appears twice: once as VIS and once as NIR through ``nir_transform`` (simulated NIR).

    Args:
        index: the identities and their images.
        loader: image file -> aligned crop.
        preprocess: the model's preprocessing.
        nir_transform: applied to NIR items.
        augment: applied to every item after its modality transform (``None``: no augmentation).
        modalities: which modalities to pool (``("nir", "vis")``, ``("vis",)``, ...).
        vis_transform: applied to VIS items.
        seed: seed for plain integer keys.

    Raises:
        ConfigError: empty or unknown modalities.
    """

    def __init__(self, index: NirVisIndex, loader: FaceLoader, preprocess: Preprocess,
                 nir_transform: Optional[Transform] = GrayscaleNir(),
                 augment: Optional[Transform] = RandomHorizontalFlip(), modalities: Sequence[str] = MODALITIES, vis_transform: Optional[Transform] = Identity(),
                 seed: int = 0) -> None:
        super().__init__(index, loader, preprocess, augment, seed)
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if not modalities or unknown or len(set(modalities)) != len(modalities):
            raise ConfigError(f"modalities must be distinct values of {MODALITIES}, got {modalities}")
        self.modalities = modalities
        self.transforms = {"nir": nir_transform if nir_transform is not None else Identity(),
                           "vis": vis_transform if vis_transform is not None else Identity()}
        self.items: List[Tuple[Path, int, str]] = []
        self._groups: Dict[Tuple[int, str], List[Path]] = {}
        for label, identity in enumerate(index.identities):
            for modality in modalities:
                paths = list(getattr(index, modality)[identity])
                self._groups[(label, modality)] = paths
                self.items.extend((path, label, modality) for path in paths)
        self.labels = np.array([label for _, label, _ in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.index.identities)

    def _load_item(self, item_index: int, sample_seed: int) -> np.ndarray:
        path, label, modality = self.items[item_index]
        crop = self._try_load(path)
        if crop is not None:
            return crop
        # Replacement: the identity's other images of that modality, in an order fixed by the sample seed.
        group = self._groups[(label, modality)]
        order = np.random.default_rng([sample_seed, 3]).permutation(len(group))
        _, crop = self._first_readable(group, order)
        if crop is None:
            raise self._no_readable(self.index.identities[label], modality, group)
        return crop

    def __getitem__(self, key: Key) -> Tuple[torch.Tensor, int]:
        item_index, sample_seed = self._parse_key(key, len(self))
        crop = self._load_item(item_index, sample_seed)
        rng = np.random.default_rng(sample_seed)
        _, label, modality = self.items[item_index]
        crop = self.augment(self.transforms[modality](crop, rng), rng)
        return self._to_tensor(crop), label
