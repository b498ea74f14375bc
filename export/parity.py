"""Accuracy gates: the exported model must compute the same embeddings as the trained one.

* ONNX gate: onnxruntime vs torch on real aligned faces, cosine >= 0.99999 for every face.
* TensorRT gate: engine vs onnxruntime FP32, mean cosine >= 0.999 (FP16) / >= 0.99 (INT8).
* onnxruntime INT8 gate: INT8 vs FP32 ONNX, mean cosine >= 0.99.
* Face detectors (several outputs each): every output compared per image, the worst one reported
  (:func:`compare_outputs`).

Each gate returns a :class:`ParityReport` (min / mean cosine, max absolute difference) that goes into the
sidecar, passed or not; :mod:`hsst.export.gate` is the one place that acts on it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from hsst.core.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["ParityReport", "GATES", "Outputs", "compare_embeddings", "compare_outputs", "batched_outputs",
           "run_in_batches", "onnx_session", "onnx_outputs", "onnx_embeddings", "torch_embeddings", "polygraphy_hint"]

#: Named outputs of one runtime on the gate's inputs: output name -> (N, ...) array.
Outputs = Dict[str, np.ndarray]

#: gate name -> (statistic, threshold).
GATES: Dict[str, tuple] = {
    "onnx": ("min", 0.99999),
    "fp32": ("mean", 0.9999),
    "fp16": ("mean", 0.999),
    "int8": ("mean", 0.99),
    "onnx-int8": ("mean", 0.99),
}


@dataclass
class ParityReport:
    """Embedding agreement of a candidate runtime with a reference on the same faces.

    Attributes:
        gate: which gate (a key of :data:`GATES`).
        reference: what the candidate was compared with (``torch``, ``onnxruntime-fp32``).
        candidate: what was checked (``onnxruntime``, ``tensorrt-fp16``...).
        faces: number of faces compared.
        cosine_min: lowest per-face cosine similarity.
        cosine_mean: mean per-face cosine similarity.
        max_abs_diff: largest absolute difference of any embedding component.
        statistic: ``min`` or ``mean``: which cosine the gate tests.
        threshold: the gate's threshold.
        passed: whether the statistic reached the threshold.
    """

    gate: str
    reference: str
    candidate: str
    faces: int
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float
    statistic: str
    threshold: float
    passed: bool

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} {self.candidate} vs {self.reference} on {self.faces} faces: cosine min "
                f"{self.cosine_min:.6f} mean {self.cosine_mean:.6f} (gate: {self.statistic} >= {self.threshold}), "
                f"max |diff| {self.max_abs_diff:.3g}")


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray, gate: str, reference_name: str = "reference",
                       candidate_name: str = "candidate") -> ParityReport:
    """Per-face cosine and max absolute difference of two (N, D) embedding arrays, judged by ``gate``."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2 or ref.shape[0] == 0:
        raise InputError(f"embeddings to compare must be equal (N>0, D) arrays, got {ref.shape} and {cand.shape}")
    if gate not in GATES:
        raise InputError(f"unknown gate {gate!r}; known: {sorted(GATES)}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cand))):
        cos = np.full(ref.shape[0], -1.0)  # NaN / inf output is a failure, not a number to average
    else:
        denom = np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-30)
        cos = (ref * cand).sum(axis=1) / denom
    diff = float(np.nanmax(np.abs(ref - cand))) if np.all(np.isfinite(cand)) else float("inf")
    statistic, threshold = GATES[gate]
    value = float(cos.min() if statistic == "min" else cos.mean())
    return ParityReport(gate=gate, reference=reference_name, candidate=candidate_name, faces=int(ref.shape[0]),
                        cosine_min=float(cos.min()), cosine_mean=float(cos.mean()), max_abs_diff=diff,
                        statistic=statistic, threshold=threshold, passed=bool(value >= threshold))


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], gate: str,
                    reference_name: str = "reference", candidate_name: str = "candidate") -> ParityReport:
    """The worst agreement over every output (each flattened per input, as :func:`compare_embeddings` compares).

    A one-output model (the probe-net) gets exactly :func:`compare_embeddings`; a model with several outputs (the
    face detectors) gets the report of its worst output, the output's name in ``candidate``.
    """
    if not reference:
        raise InputError("the reference runtime gave no outputs to compare")
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise InputError(f"candidate runtime lacks output(s) {missing}")
    reports = []
    for name, ref in reference.items():
        got = np.asarray(candidate[name])
        label = f"{candidate_name} ({name})" if len(reference) > 1 else candidate_name
        reports.append(compare_embeddings(ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1), gate,
                                          reference_name, label))
    return min(reports, key=lambda r: (r.passed, r.cosine_mean))


def batched_outputs(fn: Callable[[np.ndarray], Mapping[str, np.ndarray]], x: np.ndarray, batch: int,
                    static: bool) -> Outputs:
    """Run ``fn`` (input batch -> named outputs) over ``x`` in chunks of ``batch``.

    A static-batch model gets its last chunk zero-padded; the outputs of the padding are dropped.
    """
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    parts: Dict[str, List[np.ndarray]] = {}
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch]
        n = chunk.shape[0]
        if static and n < batch:
            pad = np.zeros((batch - n,) + chunk.shape[1:], dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        for name, value in fn(np.ascontiguousarray(chunk)).items():
            parts.setdefault(name, []).append(np.asarray(value)[:n])
    return {name: np.concatenate(values) for name, values in parts.items()}


def run_in_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int, static: bool) -> np.ndarray:
    """:func:`batched_outputs` of a one-output ``fn`` (input batch -> array)."""
    return batched_outputs(lambda chunk: {"": fn(chunk)}, x, batch, static)[""]


def onnx_session(path: Union[str, Path], threads: Optional[int] = None, optimization: str = "all") -> Any:
    """An onnxruntime CPU session with full graph optimisation (``threads`` = intra-op threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    opts.graph_optimization_level = levels[optimization]
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_outputs(path_or_session: Any, x: np.ndarray, batch: int, static: bool) -> Outputs:
    """Every output of an ONNX file or session on ``x`` (N, ...), run in batches of ``batch``."""
    sess = onnx_session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    return batched_outputs(lambda b: dict(zip(names, sess.run(names, {name: b}))), x, batch, static)


def onnx_embeddings(path_or_session: Any, x: np.ndarray, batch: int, static: bool) -> np.ndarray:
    """Embeddings of ``x`` (N, C, S, S) from an ONNX file or session (its first output)."""
    return next(iter(onnx_outputs(path_or_session, x, batch, static).values()))


def torch_embeddings(model: Any, x: np.ndarray, normalize: bool = False, batch: int = 32) -> np.ndarray:
    """Embeddings of ``x`` from the torch model (CPU float32, eval mode, optional L2 normalisation)."""
    import torch

    model = model.eval()
    device = next(model.parameters()).device

    def fn(chunk: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.from_numpy(chunk).to(device).float())
            if normalize:
                out = torch.nn.functional.normalize(out, p=2.0, dim=1, eps=1e-12)
        return out.cpu().numpy()

    return run_in_batches(fn, x, batch, static=False)


def polygraphy_hint(onnx_path: Union[str, Path], precision: str, input_name: str,
                    shape: Sequence[int], calib_cache: Optional[Union[str, Path]] = None) -> str:
    """The polygraphy command that compares TensorRT with onnxruntime layer by layer (for a failed gate)."""
    flags = {"fp16": " --fp16", "int8": " --int8", "fp32": ""}[precision]
    calib = f" --calibration-cache {calib_cache}" if calib_cache and precision == "int8" else ""
    shape_arg = ",".join(str(int(d)) for d in shape)
    return (f"polygraphy run {onnx_path} --onnxrt --trt{flags}{calib} --input-shapes {input_name}:[{shape_arg}] "
            "--onnx-outputs mark all --trt-outputs mark all --atol 1e-2 --rtol 1e-2 --fail-fast")
