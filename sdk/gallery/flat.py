"""Exhaustive scoring over stored template codes: the storages' codecs and the three backends.

:class:`Codec` turns float32 templates into a storage's codes (``float32``; compact ``float16`` or ``int8``) and
queries into what scores them. A backend keeps the codes and their labels and answers top-k by scoring every
one: :class:`NumpyFlat` (feature-major blocks, one BLAS call per block), :class:`OnnxInt8Flat` (int8 codes as
a prepacked onnxruntime initializer, MLAS's integer kernels) and :class:`FaissFlat` (FAISS's flat indexes). All
compute the same numbers for the same codes; :class:`hsst.gallery.index.TemplateIndex` picks one and adds the
locking, the owners and the checks. The backends are not thread-safe for writes.
"""
from __future__ import annotations

import importlib.util
import math
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from hsst.core.errors import ConfigError, InputError

STORAGES = ("float32", "float16", "int8")

#: onnxruntime keeps a model in one protobuf (at most 2 GB): the most int8 templates one session holds.
ORT_MAX_TEMPLATES = 8_000_000
#: int8 queries are quantised to 7 bits (|q| <= 63): onnxruntime's AVX2 kernel multiplies unsigned by signed
#: bytes and adds pairs of products in int16, which 8-bit queries (2 x 255 x 127) overflow and 7-bit ones
#: (2 x 127 x 127 = 32,258) cannot; numpy and FAISS quantise the query the same way, so all three agree.
QUERY_LEVELS = 63
_TINY = np.float32(1e-30)  # the smallest query peak divided by: an all-zero query scores 0, not NaN
#: Templates per numpy block (one BLAS call each; a gallery of up to 16,400 is one block). Not a power of two:
#: a row stride of 2^k bytes maps every row to the same cache sets (gemv 1.7x slower at 16384 columns).
BLOCK_COLUMNS = 16400


def faiss_available() -> bool:
    """Whether ``faiss`` (faiss-cpu, the ``hsst[faiss]`` extra) can be imported."""
    return importlib.util.find_spec("faiss") is not None



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
    query ``round(q * s_q)`` with its own scale (:data:`QUERY_LEVELS` / its largest component), and the score
    is the integer dot product over ``scale * s_q``. numpy (float32 BLAS on integer values below 2^24: exact),
    onnxruntime (``MatMulInteger``, int32) and FAISS's ``QT_8bit_direct_signed`` (given the same quantised
    query) then compute the very same numbers.

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
        """``(scoring_queries, factor)``: scores are ``codes . scoring_query * factor`` (factor None: 1).

        int8: ``step = max(peak, tiny) / QUERY_LEVELS`` per query, ``round(q / step)`` (half to even), factor
        ``step / scale``, all in float32: the onnxruntime graph of :func:`_score_session` does the very same.
        """
        if self.storage != "int8":
            return queries, None
        peak = np.abs(queries).max(axis=1, keepdims=True)
        if not np.isfinite(peak).all():  # rounding would turn NaN / inf into ordinary integers: refuse here
            check_vectors(queries, None, "queries")
        step = np.maximum(peak, _TINY) / np.float32(QUERY_LEVELS)
        return np.rint(queries / step), step[:, 0] / np.float32(self.scale)

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


#: Templates added since the onnxruntime session was built that may wait (scored by numpy) before it is
#: rebuilt: at most this many, and at most 1/64 of the built ones (a rebuild costs milliseconds at 10k templates and
#: seconds at 1M, bench/bench_gallery.py's last line; a waiting template costs a float32 column in every search).
TAIL_MAX = 1024
#: IO bindings kept per onnxruntime session (one per searching thread; each holds a score buffer of 4 bytes per
#: template): beyond this many threads all are dropped and remade on their thread's next search.
MAX_BINDINGS = 16


def _score_session(codes: np.ndarray, scale: float):
    """An onnxruntime session scoring float32 queries (Q, D) against (D, N) int8 codes.

    Outputs ``scores`` (Q, N) int32 and ``factor`` (Q, 1) float32, computed as :meth:`Codec.prepare` does in
    numpy (float32 ops, round half to even): the query is quantised inside the graph, where eight small kernels
    cost less than numpy's per-call overhead on a 192-d vector.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    dim, n = codes.shape
    const = numpy_helper.from_array
    nodes = [
        helper.make_node("Abs", ["query"], ["magnitude"]),
        helper.make_node("ReduceMax", ["magnitude"], ["peak"], axes=[1], keepdims=1),
        helper.make_node("Max", ["peak", "tiny"], ["peak_safe"]),
        helper.make_node("Div", ["peak_safe", "levels"], ["step"]),
        helper.make_node("Div", ["query", "step"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Add", ["rounded", "zero_f"], ["shifted"]),  # 7 bits, 1..127: unsigned bytes
        helper.make_node("Cast", ["shifted"], ["query_u8"], to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", ["query_u8", "codes", "zero_u8"], ["scores"]),
        helper.make_node("Div", ["step", "scale"], ["factor"]),
    ]
    graph = helper.make_graph(
        nodes, "template_scores",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, ["queries", dim])],
        [helper.make_tensor_value_info("scores", TensorProto.INT32, ["queries", n]),
         helper.make_tensor_value_info("factor", TensorProto.FLOAT, ["queries", 1])],
        # the codes are an initializer, not an input: onnxruntime prepacks them once for its kernels
        [const(np.ascontiguousarray(codes), "codes"), const(np.array(QUERY_LEVELS + 1, np.uint8), "zero_u8"),
         const(np.array(QUERY_LEVELS + 1, np.float32), "zero_f"), const(np.array(_TINY, np.float32), "tiny"),
         const(np.array(QUERY_LEVELS, np.float32), "levels"), const(np.array(scale, np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one query per search: threads would only wait on each other
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class OnnxInt8Flat(_Flat):
    """int8 codes scored by onnxruntime's ``MatMulInteger`` (MLAS's integer SIMD kernels; not thread-safe for
    writes: see TemplateIndex).

    All codes sit in one feature-major (D, capacity) int8 matrix. A session holds the first ``_sealed`` of them as
    its initializer, which onnxruntime prepacks when it loads: a search is one run over them. Templates added
    later wait as float32 columns (``_tail``, scored by numpy, exact on these integers) until more than
    :data:`TAIL_MAX` (or 1/64 of the sealed ones) wait; then the session is rebuilt over all codes. A removal
    rebuilds it at once. One-query searches reuse a per-thread IO binding whose buffers are bound once (cheaper
    than a run that allocates its outputs).
    """

    name = "onnxruntime"

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._codes = np.zeros((codec.dim, 0), np.int8)
        self._labels = np.zeros(0, np.int64)
        self._n = 0
        self._sealed = 0
        self._session = None
        self._tail = np.zeros((codec.dim, 0), np.float32)
        self._bindings: Dict[int, tuple] = {}  # thread id -> (binding, its buffers, their OrtValues), this session's

    def codes(self) -> np.ndarray:
        """(N, D) codes, row by row (a copy)."""
        return np.ascontiguousarray(self._codes[:, :self._n].T)

    def add(self, codes: np.ndarray, labels: np.ndarray) -> None:
        need = self._n + len(codes)
        if need > ORT_MAX_TEMPLATES:
            raise ConfigError(f"{need:,} int8 templates exceed what one onnxruntime session holds "
                              f"({ORT_MAX_TEMPLATES:,}); install faiss-cpu (backend 'auto' moves to it)")
        if need > self._codes.shape[1]:
            cap = max(need, 2 * self._codes.shape[1], 1024)
            grown = np.zeros((self.codec.dim, cap), np.int8)
            grown[:, :self._n] = self._codes[:, :self._n]
            grown_labels = np.zeros(cap, np.int64)
            grown_labels[:self._n] = self._labels[:self._n]
            self._codes, self._labels = grown, grown_labels
        self._codes[:, self._n:need] = codes.T
        self._labels[self._n:need] = labels
        self._n = need
        waiting = need - self._sealed
        if waiting > min(TAIL_MAX, max(16, self._sealed // 64)):
            self._seal()
        else:
            self._tail = self._codes[:, self._sealed:need].astype(np.float32)

    def remove(self, labels: np.ndarray) -> int:
        n = self._n
        keep = ~np.isin(self._labels[:n], labels)
        gone = n - int(keep.sum())
        if gone:
            self._codes = np.ascontiguousarray(self._codes[:, :n][:, keep])
            self._labels = self._labels[:n][keep]
            self._n = n - gone
            self._seal()
        return gone

    def _seal(self) -> None:
        """Rebuild the session over every code (none waiting afterwards)."""
        self._session = _score_session(self._codes[:, :self._n], self.codec.scale) if self._n else None
        self._bindings = {}
        self._sealed = self._n
        self._tail = np.zeros((self.codec.dim, 0), np.float32)

    def _run_one(self, query: np.ndarray) -> Tuple[np.ndarray, np.float32]:
        """``(scores, factor)`` of one float32 query against the sealed codes, through this thread's IO
        binding (bound once: the run writes into its buffers)."""
        bound = self._bindings.get(threading.get_ident())
        if bound is None:
            import onnxruntime as ort

            if len(self._bindings) >= MAX_BINDINGS:  # threads come and go (a server's): bound the buffers kept
                self._bindings.clear()
            buffers = (np.empty((1, self.codec.dim), np.float32), np.empty((1, self._sealed), np.int32),
                       np.empty((1, 1), np.float32))
            values = [ort.OrtValue.ortvalue_from_numpy(b) for b in buffers]
            binding = self._session.io_binding()
            binding.bind_ortvalue_input("query", values[0])
            binding.bind_ortvalue_output("scores", values[1])
            binding.bind_ortvalue_output("factor", values[2])
            bound = self._bindings[threading.get_ident()] = (binding, buffers, values)
        binding, (buf_q, buf_s, buf_f), _ = bound
        buf_q[...] = query
        self._session.run_with_iobinding(binding)
        return buf_s[0], buf_f[0, 0]

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        n, sealed = self._n, self._sealed
        nq = len(queries)
        if nq == 1 and k == 1 and n and sealed == n:  # the gate's call, nothing waiting
            scores, factor = self._run_one(queries)
            i = int(scores.argmax())
            return (np.float32(scores[i]) * factor).reshape(1, 1), self._labels[i:i + 1].reshape(1, 1).copy()
        scores = np.empty((n, nq), np.float32)
        if sealed:  # the graph quantises the queries itself and gives their factor
            sealed_scores, factor = self._session.run(None, {"query": queries})
            scores[:sealed], factor = sealed_scores.T, factor[:, 0]
        if n > sealed:  # the codec's numpy quantisation: the same numbers
            q, factor = self.codec.prepare(queries)
            scores[sealed:] = np.matmul(q, self._tail).T
        top_s, top_l = _top_k(scores, self._labels[:n], k)
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
