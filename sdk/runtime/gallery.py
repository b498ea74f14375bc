"""Enrolled identities and top-k cosine search, behind one interface.

:class:`Gallery` is what the pipeline talks to; :class:`InMemoryGallery` keeps templates in a numpy matrix
and searches with one BLAS matrix product (faiss ``IndexFlatIP`` style). The persistent, encrypted gallery
(:class:`hsst.gallery.GalleryStore`, opened from a gate config by :func:`open_store`) implements the same interface.
"""
from __future__ import annotations

import abc
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import InputError
from hsst.gallery.flat import check_vectors

if TYPE_CHECKING:
    from hsst.runtime.config import GalleryConfig


class Gallery(abc.ABC):
    """Enrolled identities, each with one or more templates (L2-normalised embeddings) and metadata."""

    @property
    @abc.abstractmethod
    def dim(self) -> Optional[int]:
        """Embedding dimension (None while empty and not fixed)."""

    @abc.abstractmethod
    def add(self, identity: str, embeddings: np.ndarray, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Add templates (``(K, D)`` float32) for ``identity``; metadata is merged into the identity's."""

    @abc.abstractmethod
    def remove(self, identity: str) -> bool:
        """Remove an identity and its templates; False when it was not enrolled."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k identities per query by cosine similarity (best template of each identity).

        Args:
            queries: (N, D) float32 C-contiguous, L2-normalised.
            k: identities per query.

        Returns:
            ``(ids, scores)``: ``ids`` (N, k) object array of identity names (None where fewer than k
            identities exist), ``scores`` (N, k) float32 cosine similarities, best first (-inf where None).
        """

    @property
    @abc.abstractmethod
    def identities(self) -> List[str]:
        """Enrolled identity names."""

    @abc.abstractmethod
    def metadata(self, identity: str) -> Dict[str, Any]:
        """Metadata of an enrolled identity (KeyError when absent)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of identities."""

    def __contains__(self, identity: object) -> bool:
        return identity in self.identities


class InMemoryGallery(Gallery):
    """Numpy gallery: exact search, thread-safe (the pipeline searches while an operator enrols).

    Args:
        dim: embedding dimension (None: fixed by the first :meth:`add`).
    """

    def __init__(self, dim: Optional[int] = None) -> None:
        self._dim = dim
        self._lock = threading.RLock()
        self._templates: Dict[str, np.ndarray] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}
        self._matrix: Optional[np.ndarray] = None  # (T, D), templates grouped by identity
        self._names: List[str] = []
        self._starts: Optional[np.ndarray] = None

    @property
    def dim(self) -> Optional[int]:
        return self._dim

    def add(self, identity: str, embeddings: np.ndarray, metadata: Optional[Dict[str, Any]] = None) -> None:
        if not isinstance(identity, str) or not identity:
            raise InputError(f"identity must be a non-empty string, got {identity!r}")
        x = check_vectors(embeddings, self._dim, f"embeddings of {identity!r}")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norms < 1e-6):
            raise InputError(f"embeddings of {identity!r} contain a zero vector")
        x = (x / norms).astype(np.float32)
        with self._lock:
            self._dim = x.shape[1]
            old = self._templates.get(identity)
            self._templates[identity] = x if old is None else np.concatenate([old, x])
            self._meta.setdefault(identity, {}).update(metadata or {})
            self._matrix = None

    def remove(self, identity: str) -> bool:
        with self._lock:
            if identity not in self._templates:
                return False
            del self._templates[identity]
            del self._meta[identity]
            self._matrix = None
            return True

    def _index(self) -> Tuple[np.ndarray, List[str], np.ndarray]:
        if self._matrix is None:
            self._names = list(self._templates)
            blocks = [self._templates[n] for n in self._names]
            counts = np.array([len(b) for b in blocks], dtype=np.int64)
            self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            self._matrix = np.ascontiguousarray(np.concatenate(blocks)) if blocks else \
                np.zeros((0, self._dim or 0), np.float32)
        return self._matrix, self._names, self._starts

    def search(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        with self._lock:
            q = check_vectors(queries, self._dim, "queries")
            n = q.shape[0]
            ids = np.full((n, k), None, dtype=object)
            scores = np.full((n, k), -np.inf, dtype=np.float32)
            if not self._templates:
                return ids, scores
            matrix, names, starts = self._index()
            sims = q @ matrix.T                                        # (N, T), one BLAS call
            per_id = np.maximum.reduceat(sims, starts, axis=1)         # best template per identity
        kk = min(k, per_id.shape[1])
        if kk < per_id.shape[1]:
            top = np.argpartition(-per_id, kk - 1, axis=1)[:, :kk]
        else:
            top = np.broadcast_to(np.arange(kk), (n, kk))
        top_scores = np.take_along_axis(per_id, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
        name_arr = np.array(names, dtype=object)
        ids[:, :kk] = name_arr[top]
        return ids, scores

    @property
    def identities(self) -> List[str]:
        with self._lock:
            return list(self._templates)

    def metadata(self, identity: str) -> Dict[str, Any]:
        with self._lock:
            return dict(self._meta[identity])

    def num_templates(self, identity: Optional[str] = None) -> int:
        """Templates of one identity, or of all."""
        with self._lock:
            if identity is not None:
                return len(self._templates[identity])
            return sum(len(t) for t in self._templates.values())

    def __len__(self) -> int:
        return len(self._templates)


def gallery_keys(config: "GalleryConfig"):
    """The data key's provider that ``config`` names: ``keys_dir`` files, else the ``key_env`` variable.

    Raises:
        ConfigError: neither is available (the message says how to make keys).
    """
    import os

    from hsst.core.errors import ConfigError
    from hsst.gallery import EnvKeys, FileKeys

    if config.keys_dir:
        return FileKeys.from_dir(config.keys_dir)
    if os.environ.get(config.key_env):
        return EnvKeys(data_var=config.key_env)
    raise ConfigError(f"gallery.path is {config.path} but there is no key for it: set gallery.keys_dir to a folder "
                      f"made by `hsst-gallery keygen --out DIR` (data.key, 0600), or set the environment variable "
                      f"{config.key_env} to the 64 hex characters of the data key")


def open_store(config: "GalleryConfig", model: Union[str, Path], dim: Optional[int] = None):
    """Open (or create) the encrypted gallery file of ``config``, bound to the model file ``model``.

    Args:
        config: the gate config's ``gallery`` section (``path`` must be set).
        model: the embedding model file in use; its SHA-256 binds the templates.
        dim: embedding dimension of a created gallery.

    Returns:
        A :class:`hsst.gallery.GalleryStore` (it answers the :class:`Gallery` interface).

    Raises:
        ModelMismatch: the gallery's templates come from another model (the message says how to re-embed).
        WrongKey, KeySourceError, StoreError: see :meth:`hsst.gallery.GalleryStore.open`.
    """
    from hsst.gallery import GalleryStore, IndexOptions, model_hash

    if not config.path:
        raise InputError("open_store needs gallery.path (None means an in-memory gallery)")
    return GalleryStore.open(config.path, gallery_keys(config), model_hash(model),
                             index=IndexOptions(storage=config.index_storage), create=True, dim=dim,
                             on_tampered=config.on_tampered)
