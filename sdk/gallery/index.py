"""Exact cosine top-k over templates: numpy for small galleries, FAISS flat for large ones, behind one API.

:class:`TemplateIndex` holds L2-normalised templates (each with an int64 label and the identity that owns it)
and answers top-k by inner product, exhaustively: every stored template is scored. Storage is ``float32``
(exact) or compact: ``float16`` or ``int8`` (a fixed symmetric scale; 4x smaller than float32, its effect on
top-1 is measured by ``bench/bench_gallery.py``); the query always stays float32. The backend is numpy below
a size and FAISS (``IndexFlatIP``, or ``IndexScalarQuantizer`` over the same codes for compact storage) from
that size up when ``faiss`` imports; ``backend="numpy"``/``"faiss"`` forces one. Both score the same codes,
so switching backends (done once, when a growing gallery crosses the size) changes timings, not results.

Thread safety: searches share a reader/writer lock and run together (numpy and FAISS release the GIL);
``add``/``remove`` take it exclusively for the short in-memory update, so an enrolment lands between two
searches and the next search sees it.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from hsst.core.errors import ConfigError, InputError
from hsst.gallery.locks import ReadWriteLock

logger = logging.getLogger(__name__)

STORAGES = ("float32", "float16", "int8")
_FLOAT32 = np.dtype(np.float32)
BACKENDS = ("auto", "numpy", "faiss")
#: Gallery size (templates) from which ``backend="auto"`` uses FAISS, per storage, from bench/bench_gallery.py
#: (docs/GALLERY.md): float32 in numpy's feature-major blocks was 1.6-1.8x faster than FAISS flat from 10k to 1M
#: templates and within 10% of it at 1k (both on one thread), so float32 stays in numpy; numpy has no fast
#: float16 or int8 kernel, so those go to FAISS whenever it is installed.
FAISS_MIN = {"float32": 1 << 62, "float16": 0, "int8": 0}
#: Templates per numpy block (one BLAS call each; a gallery of up to 16,400 is one block). Not a power of two:
#: a row stride of 2^k bytes maps every row to the same cache sets (gemv 1.7x slower at 16384 columns).
BLOCK_COLUMNS = 16400


def faiss_available() -> bool:
    """Whether ``faiss`` (faiss-cpu, the ``hsst[faiss]`` extra) can be imported."""
    return importlib.util.find_spec("faiss") is not None


@dataclass(frozen=True)
class IndexOptions:
    """How templates are stored and searched.

    Attributes:
        storage: ``float32`` (exact), ``float16`` or ``int8`` (compact).
        backend: ``auto`` (numpy below ``faiss_min`` templates, FAISS from there when installed), ``numpy``
            or ``faiss`` (an error when faiss is not installed).
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
        if self.faiss_min is not None and self.faiss_min < 0:
            raise ConfigError(f"faiss_min must be >= 0, got {self.faiss_min}")

    @property
    def threshold(self) -> int:
        return FAISS_MIN[self.storage] if self.faiss_min is None else self.faiss_min


def check_vectors(x: np.ndarray, dim: Optional[int], name: str, finite: bool = True) -> np.ndarray:
    """faiss-style checks: float32, C-contiguous, (N, D) with N > 0, finite; a (D,) vector becomes (1, D).

    ``finite=False`` leaves out the NaN / inf test (searches test their top scores instead: cheaper, as sure).
    """
    if not isinstance(x, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {x.dtype}; convert with .astype(np.float32)")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"{name} must have shape (N>0, D), got {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{name} has dimension {x.shape[1]}, the gallery holds {dim}-d templates")
    if not x.flags.c_contiguous:
        raise InputError(f"{name} must be C-contiguous; use np.ascontiguousarray")
    # one reduction instead of an isfinite mask: NaN or inf anywhere makes the sum non-finite; so would an
    # overflow, which only absurd magnitudes (> 1e36) reach
    if finite and not math.isfinite(float(np.add.reduce(x, axis=None))):
        raise InputError(f"{name} contains NaN or inf (or values too large for float32 sums)")
    return x


class Codec:
    """One storage type: float32 templates to codes, queries to what scores them, and FAISS's view of both.

    int8 scores integers: templates are ``round(x * scale)`` with one fixed scale for the whole gallery, each
    query ``round(q * s_q)`` with its own scale (127 / its largest component), and the score is the integer
    dot product over ``scale * s_q``. numpy (float32 BLAS on integer values below 2^24: exact) and FAISS's
    ``QT_8bit_direct_signed`` (which quantises the query the same way and runs an int8 SIMD kernel) then
    compute the very same numbers.

    Args:
        storage: one of :data:`STORAGES`.
        dim: embedding dimension.
    """

    def __init__(self, storage: str, dim: int) -> None:
        self.storage = storage
        self.dim = dim
        self.dtype = np.dtype({"float32": np.float32, "float16": np.float16, "int8": np.int8}[storage])
        # int8: one symmetric range for all codes of a gallery. A unit D-vector's components lie within
        # 7/sqrt(D) but for vanishingly rare ones, which are clipped (bench/bench_gallery.py counts them)
        self.range = min(1.0, 7.0 / math.sqrt(dim)) if storage == "int8" else 1.0
        self.scale = 127.0 / self.range if storage == "int8" else 1.0

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes of (N, D) float32 templates."""
        if self.storage == "int8":
            return np.clip(np.rint(x * self.scale), -127, 127).astype(np.int8)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def prepare(self, queries: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``(scoring_queries, factor)``: scores are ``codes . scoring_query * factor`` (factor None: 1)."""
        if self.storage != "int8":
            return queries, None
        peak = np.abs(queries).max(axis=1)
        if not np.isfinite(peak).all():  # rounding would turn NaN / inf into ordinary integers: refuse here
            check_vectors(queries, None, "queries")
        s_q = 127.0 / np.where(peak > 0, peak, 1.0)
        q = np.rint(queries * s_q[:, None].astype(np.float32)).astype(np.float32)
        return q, (1.0 / (self.scale * s_q)).astype(np.float32)

    def widen(self, codes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Codes as float32 into ``out`` (int8 stays integer-valued)."""
        np.copyto(out, codes, casting="unsafe")
        return out

    def faiss_supported(self) -> bool:
        """Whether the installed faiss has a flat index over these codes (int8: ``QT_8bit_direct_signed``)."""
        if not faiss_available():
            return False
        if self.storage != "int8":
            return True
        import faiss

        return hasattr(faiss.ScalarQuantizer, "QT_8bit_direct_signed")

    def faiss_index(self):
        """An empty FAISS index that scores these codes exactly (inner product)."""
        import faiss

        if self.storage == "float32":
            return faiss.IndexFlatIP(self.dim)
        qtype = faiss.ScalarQuantizer.QT_fp16 if self.storage == "float16" else \
            faiss.ScalarQuantizer.QT_8bit_direct_signed
        index = faiss.IndexScalarQuantizer(self.dim, qtype, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(np.zeros((1, self.dim), np.float32))  # fixed codecs: training learns nothing
        return index

    def faiss_input(self, codes: np.ndarray) -> np.ndarray:
        """What to ``add`` to :meth:`faiss_index` so that it stores exactly ``codes``."""
        return codes.astype(np.float32)

    def from_faiss(self, x: np.ndarray) -> np.ndarray:
        """Codes from FAISS's reconstruction."""
        return np.rint(x).astype(np.int8) if self.storage == "int8" else x.astype(self.dtype)


def _top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of (N, Q) scores per query: ``(scores (Q, k), labels (Q, k))``, best first, padded."""
    n, q = scores.shape
    out_s = np.full((q, k), -np.inf, np.float32)
    out_l = np.full((q, k), -1, np.int64)
    if n == 0:
        return out_s, out_l
    if k == 1:
        best = scores.argmax(axis=0)
        out_s[:, 0] = scores[best, np.arange(q)]
        out_l[:, 0] = labels[best]
        return out_s, out_l
    kk = min(k, n)
    top = np.argpartition(-scores, kk - 1, axis=0)[:kk] if kk < n else np.broadcast_to(np.arange(n)[:, None], (n, q))
    top_s = np.take_along_axis(scores, top, axis=0)
    order = np.argsort(-top_s, axis=0, kind="stable")
    top = np.take_along_axis(top, order, axis=0)
    out_s[:, :kk] = np.take_along_axis(top_s, order, axis=0).T
    out_l[:, :kk] = labels[top].T
    return out_s, out_l


class _Flat:
    """What both flat stores share: ``_n`` filled positions and the identity label of each."""

    _labels: np.ndarray
    _n: int

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> np.ndarray:
        return self._labels[:self._n]


def _capacity(need: int, current: int) -> int:
    """Columns of a grown block: 1.25x (zero columns are scored too), a multiple of 16, never a power of two."""
    cap = -(-max(need, int(current * 1.25), 1000) // 16) * 16
    if cap & (cap - 1) == 0:
        cap += 16
    return min(BLOCK_COLUMNS, cap)


class NumpyFlat(_Flat):
    """Codes in feature-major blocks, scored with one BLAS matrix-vector product per block (not thread-safe:
    see TemplateIndex).

    Each block is a C-contiguous (D, capacity) matrix holding up to :data:`BLOCK_COLUMNS` templates as columns,
    zeros past the filled ones. ``q @ block`` (BLAS ``gemv`` over a wide matrix) runs about a third faster than
    ``templates @ q`` over the same numbers stored row by row, and the block needs no slicing (a slice would be
    copied): the zero columns are scored too and dropped, which is why the last block grows by 1.25x at a time.
    """

    name = "numpy"

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._blocks: List[np.ndarray] = []   # all full but the last
        self._labels = np.zeros(0, np.int64)
        self._n = 0
        self._scratch = threading.local()  # per-thread float32 block for widening compact codes

    def codes(self) -> np.ndarray:
        """(N, D) codes, row by row (a copy)."""
        if not self._n:
            return np.zeros((0, self.codec.dim), self.codec.dtype)
        return np.ascontiguousarray(np.concatenate([b[:, :f] for b, f in self._filled()], axis=1).T)

    def _filled(self) -> List[Tuple[np.ndarray, int]]:
        """``(block, templates in it)`` per block."""
        full = len(self._blocks) - 1
        return [(b, BLOCK_COLUMNS if i < full else self._n - full * BLOCK_COLUMNS) for i, b in enumerate(self._blocks)]

    def add(self, codes: np.ndarray, labels: np.ndarray) -> None:
        need = self._n + len(codes)
        if need > len(self._labels):  # amortised growth: copies happen log(N) times
            grown_labels = np.empty(max(need, 2 * len(self._labels), 1024), np.int64)
            grown_labels[:self._n] = self._labels[:self._n]
            self._labels = grown_labels
        self._labels[self._n:need] = labels
        done = 0
        while done < len(codes):
            filled = self._n - (len(self._blocks) - 1) * BLOCK_COLUMNS if self._blocks else BLOCK_COLUMNS
            if filled == BLOCK_COLUMNS:
                self._blocks.append(np.zeros((self.codec.dim, 0), self.codec.dtype))
                filled = 0
            take = min(BLOCK_COLUMNS - filled, len(codes) - done)
            block = self._blocks[-1]
            if filled + take > block.shape[1]:
                cap = _capacity(filled + take, block.shape[1])
                grown = np.zeros((self.codec.dim, cap), self.codec.dtype)
                grown[:, :filled] = block[:, :filled]
                self._blocks[-1] = block = grown
            block[:, filled:filled + take] = codes[done:done + take].T
            done += take
            self._n += take

    def remove(self, labels: np.ndarray) -> int:
        n = self._n
        drop = np.isin(self._labels[:n], labels)
        gone = int(drop.sum())
        if gone:  # rebuilt from the survivors: removals are rare, searches are not
            keep_codes, keep_labels = self.codes()[~drop], self._labels[:n][~drop]
            self._blocks, self._labels, self._n = [], np.zeros(0, np.int64), 0
            self.add(keep_codes, keep_labels)
        return gone

    def _widened(self, block: np.ndarray) -> np.ndarray:
        buf = getattr(self._scratch, "buf", None)
        if buf is None or buf.shape != block.shape:
            buf = self._scratch.buf = np.empty(block.shape, np.float32)
        return self.codec.widen(block, buf)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        n = self._n
        nq = len(queries)
        exact = self.codec.storage == "float32"
        if exact and nq == 1 and k == 1 and len(self._blocks) == 1:  # the gate's call on a gallery of <= 16k
            s = np.dot(queries[0], self._blocks[0])
            i = int(s[:n].argmax())
            return s[i:i + 1].reshape(1, 1), self._labels[i:i + 1].reshape(1, 1).copy()
        scores = np.empty((n, nq), np.float32)
        queries, factor = self.codec.prepare(queries)
        offset = 0
        for block, filled in self._filled():
            matrix = block if exact else self._widened(block)
            if nq == 1:
                scores[offset:offset + filled, 0] = np.dot(queries[0], matrix)[:filled]
            else:
                scores[offset:offset + filled] = np.matmul(queries, matrix)[:, :filled].T
            offset += filled
        top_s, top_l = _top_k(scores, self._labels[:n], k)
        if factor is not None:
            top_s *= factor[:, None]
        return top_s, top_l


class FaissFlat(_Flat):
    """The same codes in a FAISS flat index (exhaustive, SIMD), labels kept beside it in insertion order."""

    name = "faiss"

    def __init__(self, codec: Codec, threads: Optional[int] = 1) -> None:
        import faiss

        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self.codec = codec
        self._index = codec.faiss_index()
        self._labels = np.zeros(0, np.int64)  # position -> label, grown like NumpyFlat's matrix
        self._n = 0

    def codes(self) -> np.ndarray:
        """All codes (decoded from FAISS; used when the index is rebuilt elsewhere)."""
        return self.codec.from_faiss(self._index.reconstruct_n(0, self._n))

    def add(self, codes: np.ndarray, labels: np.ndarray) -> None:
        need = self._n + len(codes)
        if need > len(self._labels):
            grown = np.empty(max(need, 2 * len(self._labels), 1024), np.int64)
            grown[:self._n] = self._labels[:self._n]
            self._labels = grown
        self._index.add(self.codec.faiss_input(codes))
        self._labels[self._n:need] = labels
        self._n = need

    def remove(self, labels: np.ndarray) -> int:
        pos = np.flatnonzero(np.isin(self._labels[:self._n], labels)).astype(np.int64)
        if len(pos) == 0:
            return 0
        self._index.remove_ids(pos)  # flat indexes compact in order: positions stay aligned with labels
        self._labels = np.delete(self._labels[:self._n], pos)
        self._n = len(self._labels)
        return len(pos)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        n = self._n
        kk = min(k, n)
        if kk == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        queries, factor = self.codec.prepare(queries)
        dist, pos = self._index.search(queries, kk)
        if factor is not None:
            dist *= factor[:, None]
        labels = self._labels[pos]
        bad = pos < 0  # FAISS pads with -1 only when no score compares (a NaN query): make that -inf
        if bad.any():
            dist[bad], labels[bad] = -np.inf, -1
        if kk < k:
            dist = np.concatenate([dist, np.full((len(dist), k - kk), -np.inf, np.float32)], axis=1)
            labels = np.concatenate([labels, np.full((len(labels), k - kk), -1, np.int64)], axis=1)
        return dist, labels


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
        use_faiss = opts.backend == "faiss" or (opts.backend == "auto" and size >= opts.threshold
                                                 and self.codec.faiss_supported())
        return FaissFlat(self.codec, opts.faiss_threads) if use_faiss else NumpyFlat(self.codec)

    @property
    def backend(self) -> str:
        """``numpy`` or ``faiss``: what scores templates now."""
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
            self._backend.add(codes, labels)
            for label, owner in zip(labels.tolist(), owners):
                self._owners[label] = owner
                count = self._per_owner.get(owner, 0) + 1
                self._per_owner[owner] = count
                self._max_per_owner = max(self._max_per_owner, count)
            self._maybe_switch()

    def _maybe_switch(self) -> None:
        """Move a growing gallery to FAISS once it crosses the size (auto backend; never back, no flapping)."""
        if self._backend.name == "faiss" or self.options.backend != "auto":
            return
        if len(self._backend) < self.options.threshold or not self.codec.faiss_supported():
            return
        target = FaissFlat(self.codec, self.options.faiss_threads)
        codes, labels = self._backend.codes(), self._backend.labels
        for start in range(0, len(codes), 65536):  # bounded float32 copies on the way in
            target.add(codes[start:start + 65536], labels[start:start + 65536])
        logger.info("template index: %d templates, switched from numpy to FAISS (%s)", len(target), self.storage)
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
        top = scores[:, 0]
        if not (math.isfinite(top[0]) if len(top) == 1 else np.isfinite(top).all()):
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
