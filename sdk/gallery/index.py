"""Exact cosine top-k over templates: numpy for small galleries, FAISS flat for large ones, behind one API.

:class:`TemplateIndex` holds L2-normalised templates (each with an int64 label and the identity that owns it)
and answers top-k by inner product, exhaustively: every stored template is scored. Storage is ``float32``
(exact) or compact: ``float16`` or ``int8`` (a fixed symmetric scale; 4x smaller than float32, its effect on
top-1 is measured by ``bench/bench_gallery.py``). Backends, chosen by storage and size (``backend="auto"``)
or forced: numpy (float32 in feature-major blocks, BLAS), onnxruntime (int8: ``MatMulInteger`` over the codes
prepacked as a session initializer, MLAS's integer SIMD kernels) and FAISS (``IndexFlatIP``, or
``IndexScalarQuantizer`` over the same codes for compact storage) when ``faiss`` imports. All score the same
codes, so switching backends (done once, when a growing gallery crosses a size) changes timings, not results.

Thread safety: searches share a reader/writer lock and run together (numpy and FAISS release the GIL);
``add``/``remove`` take it exclusively for the short in-memory update, so an enrolment lands between two
searches and the next search sees it.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hsst.core.errors import ConfigError, InputError
from hsst.gallery.flat import (ORT_MAX_TEMPLATES, STORAGES, Codec, FaissFlat, NumpyFlat, OnnxInt8Flat, check_vectors,
                               faiss_available)
from hsst.gallery.locks import ReadWriteLock

logger = logging.getLogger(__name__)

_FLOAT32 = np.dtype(np.float32)
BACKENDS = ("auto", "numpy", "onnxruntime", "faiss")
#: Gallery size (templates) from which ``backend="auto"`` uses FAISS, per storage, from bench/bench_gallery.py
#: (docs/GALLERY.md): float32 in numpy's feature-major blocks was 1.6-1.8x faster than FAISS flat from 10k to 1M
#: templates and level with it at 1k (both on one thread), so float32 stays in numpy; int8 in onnxruntime was
#: 2-4x faster than FAISS flat at every size, so it moves to FAISS only beyond what one session holds; numpy has
#: no fast float16 kernel, so float16 goes to FAISS whenever it is installed.
FAISS_MIN = {"float32": 1 << 62, "float16": 0, "int8": ORT_MAX_TEMPLATES}
#: What ``auto`` uses below the FAISS size (or without faiss), per storage.
SMALL_BACKEND = {"float32": "numpy", "float16": "numpy", "int8": "onnxruntime"}


@dataclass(frozen=True)
class IndexOptions:
    """How templates are stored and searched.

    Attributes:
        storage: ``float32`` (exact), ``float16`` or ``int8`` (compact).
        backend: ``auto`` (:data:`SMALL_BACKEND` below ``faiss_min`` templates, FAISS from there when
            installed), ``numpy``, ``onnxruntime`` (int8 storage only) or ``faiss`` (an error when faiss is not
            installed).
        faiss_min: size from which ``auto`` uses FAISS (None: :data:`FAISS_MIN` for the storage).
        faiss_threads: OpenMP threads FAISS may use (process-wide ``faiss.omp_set_num_threads``); one search
            is one query, which FAISS runs fastest on one thread; None leaves FAISS's setting alone.
    """

    storage: str = "float32"
    backend: str = "auto"
    faiss_min: Optional[int] = None
    faiss_threads: Optional[int] = 1

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ConfigError(f"index storage {self.storage!r} is not one of {STORAGES}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"index backend {self.backend!r} is not one of {BACKENDS}")
        if self.backend == "faiss" and not faiss_available():
            raise ConfigError("index backend 'faiss' needs faiss-cpu: pip install 'hsst[faiss]' "
                              "(or use backend 'auto', which falls back to numpy)")
        if self.backend == "onnxruntime" and self.storage != "int8":
            raise ConfigError(f"index backend 'onnxruntime' scores int8 codes; storage {self.storage!r} needs "
                              "backend 'numpy', 'faiss' or 'auto'")
        if self.faiss_min is not None and self.faiss_min < 0:
            raise ConfigError(f"faiss_min must be >= 0, got {self.faiss_min}")

    @property
    def threshold(self) -> int:
        return FAISS_MIN[self.storage] if self.faiss_min is None else self.faiss_min


class TemplateIndex:
    """Thread-safe exact top-k over templates, each with an int64 label and an owner (identity id).

    Args:
        dim: embedding dimension.
        options: storage and backend (:class:`IndexOptions`).
    """

    def __init__(self, dim: int, options: Optional[IndexOptions] = None) -> None:
        if not isinstance(dim, int) or dim <= 0:
            raise InputError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self._one_query = (1, dim)
        self.options = options or IndexOptions()
        self.codec = Codec(self.options.storage, dim)
        if self.options.backend == "faiss" and not self.codec.faiss_supported():
            raise ConfigError(f"index backend 'faiss' with {self.storage} storage needs a faiss-cpu with "
                              "QT_8bit_direct_signed (1.15 has it); upgrade faiss-cpu or use backend 'auto'")
        self._lock = ReadWriteLock()
        self._owners: Dict[int, str] = {}
        self._per_owner: Dict[str, int] = {}
        self._max_per_owner = 0
        self._backend = self._make_backend(0)

    def _make_backend(self, size: int):
        opts = self.options
        name = opts.backend
        if name == "auto":
            big = size >= opts.threshold and self.codec.faiss_supported()
            name = "faiss" if big else SMALL_BACKEND[self.storage]
        if name == "faiss":
            return FaissFlat(self.codec, opts.faiss_threads)
        return OnnxInt8Flat(self.codec) if name == "onnxruntime" else NumpyFlat(self.codec)

    @property
    def backend(self) -> str:
        """``numpy``, ``onnxruntime`` or ``faiss``: what scores templates now."""
        return self._backend.name

    @property
    def storage(self) -> str:
        return self.options.storage

    def __len__(self) -> int:
        return len(self._backend)

    @property
    def num_owners(self) -> int:
        return len(self._per_owner)

    def __contains__(self, label: object) -> bool:
        return label in self._owners

    def add(self, vectors: np.ndarray, labels: np.ndarray, owners: Sequence[str]) -> None:
        """Add (N, D) float32 L2-normalised templates with unique int64 labels and their owners.

        Raises:
            InputError: wrong dtype / shape, a label already present, or owners of another length.
        """
        x = check_vectors(vectors, self.dim, "templates")
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (len(x),):
            raise InputError(f"labels must be {len(x)} integers, got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        if len(owners) != len(x):
            raise InputError(f"{len(owners)} owners for {len(x)} templates")
        if len(np.unique(labels)) != len(labels):
            raise InputError("labels of one add must be distinct")
        codes = self.codec.encode(x)
        with self._lock.write():
            clash = [int(v) for v in labels if int(v) in self._owners]
            if clash:
                raise InputError(f"labels already in the index: {clash[:5]}")
            self._maybe_switch(len(self._backend) + len(codes))
            self._backend.add(codes, labels)
            for label, owner in zip(labels.tolist(), owners):
                self._owners[label] = owner
                count = self._per_owner.get(owner, 0) + 1
                self._per_owner[owner] = count
                self._max_per_owner = max(self._max_per_owner, count)

    def _maybe_switch(self, size: int) -> None:
        """Move a gallery about to reach ``size`` templates to FAISS once that crosses the threshold (auto backend;
        never back, no flapping)."""
        if self._backend.name == "faiss" or self.options.backend != "auto":
            return
        if size < self.options.threshold or not self.codec.faiss_supported():
            return
        source, target = self._backend, FaissFlat(self.codec, self.options.faiss_threads)
        codes, labels = source.codes(), source.labels
        for start in range(0, len(codes), 65536):  # bounded float32 copies on the way in
            target.add(codes[start:start + 65536], labels[start:start + 65536])
        logger.info("template index: %d templates on the way, switched from %s to FAISS (%s)", size, source.name,
                    self.storage)
        self._backend = target

    def remove(self, labels: Sequence[int]) -> int:
        """Remove templates by label; returns how many were present."""
        wanted = np.asarray(list(labels), np.int64)
        if len(wanted) == 0:
            return 0
        with self._lock.write():
            removed = self._backend.remove(wanted)
            recount = False
            for label in wanted.tolist():
                owner = self._owners.pop(label, None)
                if owner is None:
                    continue
                count = self._per_owner[owner] - 1
                recount |= self._per_owner[owner] == self._max_per_owner
                if count:
                    self._per_owner[owner] = count
                else:
                    del self._per_owner[owner]
            if recount:
                self._max_per_owner = max(self._per_owner.values(), default=0)
            return removed

    def clear(self) -> None:
        """Remove everything."""
        with self._lock.write():
            self._owners.clear()
            self._per_owner.clear()
            self._max_per_owner = 0
            self._backend = self._make_backend(0)

    def _check_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        if k == 1 and type(queries) is np.ndarray and queries.shape == self._one_query \
                and queries.dtype is _FLOAT32 and queries.flags.c_contiguous:
            # the gate's call: the general checks cost a quarter of a 1k search. Not even a finiteness test: a
            # NaN or inf component makes every score NaN or infinite, which _scored finds in the top score
            return queries
        if type(k) is not int and (not isinstance(k, np.integer) or isinstance(k, bool)) or k < 1:
            raise InputError(f"k must be an int >= 1, got {k!r}")
        return check_vectors(queries, self.dim, "queries")  # a NaN query never reaches a kernel

    def _scored(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The backend's top-k (read lock held); a best score that is not finite (a NaN or inf query, or values
        so large that a product overflows float32) is refused, saying why."""
        scores, labels = self._backend.search(q, k)
        if not (math.isfinite(scores[0, 0]) if scores.shape[0] == 1 else np.isfinite(scores[:, 0]).all()):
            check_vectors(q, self.dim, "queries")  # raises, saying what is wrong
        return scores, labels

    def search(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k templates per query by inner product (cosine for L2-normalised queries).

        Args:
            queries: (Q, D) or (D,) float32, C-contiguous, finite.
            k: templates per query.

        Returns:
            ``(scores, labels)``: (Q, k) float32 best first (-inf where fewer than k templates) and (Q, k)
            int64 labels (-1 there).
        """
        q = self._check_query(queries, k)
        self._lock.acquire_read()
        try:
            return self._scored(q, int(k))
        finally:
            self._lock.release_read()

    def search_owners(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k owners (identities) per query, each scored by its best template.

        Returns:
            ``(owners, scores)``: (Q, k) object array of owner ids (None where fewer than k owners) and (Q, k)
            float32 scores best first (-inf there) - the order of the gate's ``Gallery.search``.
        """
        q = self._check_query(queries, k)
        k = int(k)
        owners = np.empty((len(q), k), dtype=object)  # None throughout
        self._lock.acquire_read()
        try:
            if k == 1:  # the best template's owner is the best owner
                scores, labels = self._scored(q, 1)
                for i, label in enumerate(labels[:, 0].tolist()):
                    if label >= 0:
                        owners[i, 0] = self._owners[label]
                return owners, scores
            scores = np.full((len(q), k), -np.inf, np.float32)
            # the k best owners are among the k * (most templates of one owner) best templates
            wide = min(len(self._backend), k * max(self._max_per_owner, 1))
            if wide == 0:
                return owners, scores
            t_scores, t_labels = self._scored(q, wide)
            for i in range(len(q)):
                seen = 0
                taken = set()
                for s, label in zip(t_scores[i].tolist(), t_labels[i].tolist()):
                    if label < 0:
                        break
                    owner = self._owners[label]
                    if owner in taken:
                        continue
                    taken.add(owner)
                    owners[i, seen], scores[i, seen] = owner, s
                    seen += 1
                    if seen == k:
                        break
            return owners, scores
        finally:
            self._lock.release_read()
