"""The JSON sidecar beside every exported file: :class:`~hsst.core.metadata.ModelMeta` plus export facts.

``model.onnx`` -> ``model.onnx.json``, ``m.8.10300.gpu.fp16.engine`` -> ``m.8.10300.gpu.fp16.engine.json``.
The sidecar IS the model's ModelMeta (preprocessing, alignment template, embedding size, normalisation,
FAR -> threshold table, training summary) with the exporter's facts in ``extra``:

``format``, ``file``, ``sha256``, ``size_bytes``, ``input`` / ``output`` (name, shape, layout, dtype), ``batch``
(dynamic, min/opt/max), ``opset``, ``simplified``, ``precision``, ``source`` (checkpoint name and hash),
``versions`` (hsst, python, torch, onnx, onnxruntime, onnxslim, tensorrt), ``exported_at``, ``status``
(``ok`` / ``failed``), ``parity`` (the gate's report) and, for engines, ``tensorrt`` (version, device,
device_name, builder, workspace, profile; what :func:`check_engine_compat` reads).

Face-detector files have a plain JSON record instead (they are not embedding models): :class:`JsonSidecar`.
:class:`MetaSidecar` and :class:`JsonSidecar` give the accuracy gate one way to add facts and write either;
:func:`keep_failed` is what the gate does with a file that failed.
"""
from __future__ import annotations

import copy
import datetime as _dt
import importlib.metadata as _md
import platform
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Sequence, Union

from hsst.core.errors import ModelError
from hsst.core.files import atomic_write_json, file_sha256
from hsst.core.metadata import ModelMeta, check_engine_compat, sidecar_path

__all__ = ["file_sha256", "library_versions", "make_sidecar", "write_sidecar", "read_sidecar", "sidecar_path",
           "check_engine_compat", "failed_path", "check_onnx", "Sidecar", "MetaSidecar", "JsonSidecar",
           "keep_failed", "mark_failed"]

_LIBRARIES = ("hsst", "torch", "onnx", "onnxruntime", "onnxslim", "tensorrt", "numpy", "opencv-python")


def library_versions() -> Dict[str, str]:
    """Versions of Python and the export libraries that are installed (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = _md.version(name)
        except _md.PackageNotFoundError:
            continue
    if "tensorrt" not in versions:  # JetPack installs TensorRT as a system package without dist metadata
        try:
            import tensorrt  # noqa: F401  (optional)

            versions["tensorrt"] = str(tensorrt.__version__)
        except Exception:  # ImportError, or a broken CUDA install raising OSError
            pass
    return versions


def failed_path(path: Union[str, Path]) -> Path:
    """Where a file that failed its accuracy gate is kept: ``model.onnx`` -> ``model.onnx.failed``.

    The runtime never loads it under that name; it stays for inspection (polygraphy, netron).
    """
    path = Path(path)
    return path.with_name(path.name + ".failed")


def make_sidecar(meta: ModelMeta, model_path: Union[str, Path], fmt: str, input_shape: Sequence[Any],
                 output_shape: Sequence[Any], normalized: bool, **facts: Any) -> ModelMeta:
    """A copy of ``meta`` describing the exported file ``model_path``.

    Args:
        meta: the model's metadata (from its checkpoint; thresholds and training summary are kept).
        model_path: the exported file (hashed now).
        fmt: ``onnx``, ``onnx-int8`` or ``engine``.
        input_shape: graph input shape, ``"batch"`` for a symbolic batch dimension.
        output_shape: graph output shape.
        normalized: whether the graph output is L2-normalised.
        **facts: more ``extra`` fields (opset, precision, batch, parity, tensorrt, source...).
    """
    model_path = Path(model_path)
    out = copy.deepcopy(meta)
    out.output_normalized = bool(normalized)
    extra = dict(out.extra)
    extra.update({
        "format": fmt,
        "file": model_path.name,
        "sha256": file_sha256(model_path),
        "size_bytes": model_path.stat().st_size,
        "input": {"name": meta.input_name, "shape": list(input_shape), "layout": "NCHW", "dtype": "float32",
                  "color": meta.preprocess.color},
        "output": {"name": meta.output_name, "shape": list(output_shape), "dtype": "float32",
                   "l2_normalized": bool(normalized)},
        "versions": library_versions(),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "ok",
    })
    extra.update(facts)
    out.extra = extra
    return out


def write_sidecar(meta: ModelMeta, model_path: Union[str, Path]) -> Path:
    """Write ``meta`` as ``<model_path>.json`` (atomic); returns the sidecar path."""
    return meta.save(sidecar_path(Path(model_path)))


def read_sidecar(model_path: Union[str, Path]) -> ModelMeta:
    """Read the sidecar of an exported file (``ModelMeta.load`` of ``<model_path>.json``)."""
    return ModelMeta.load(sidecar_path(Path(model_path)))


class Sidecar(Protocol):
    """The record beside one exported file, as the accuracy gate handles it."""

    def with_facts(self, **facts: Any) -> "Sidecar":
        """A copy with ``facts`` added (the gate's report, ``status``...)."""

    def write(self, model_path: Union[str, Path]) -> Path:
        """Write it as ``<model_path>.json``; returns that path."""


@dataclass(frozen=True)
class MetaSidecar:
    """An embedding model's sidecar: its :class:`ModelMeta`, export facts in ``extra``."""

    meta: ModelMeta

    def with_facts(self, **facts: Any) -> "MetaSidecar":
        meta = copy.deepcopy(self.meta)
        meta.extra = dict(meta.extra, **facts)
        return MetaSidecar(meta)

    def write(self, model_path: Union[str, Path]) -> Path:
        return write_sidecar(self.meta, model_path)


@dataclass(frozen=True)
class JsonSidecar:
    """A face detector's sidecar: a plain JSON record, facts at its top level (:mod:`hsst.export.detector_target`)."""

    record: Dict[str, Any]

    def with_facts(self, **facts: Any) -> "JsonSidecar":
        return JsonSidecar(dict(self.record, **facts))

    def write(self, model_path: Union[str, Path]) -> Path:
        return atomic_write_json(sidecar_path(Path(model_path)), self.record, sort_keys=True)


def keep_failed(model_path: Union[str, Path], sidecar: Sidecar, reason: str) -> Path:
    """Rename a file that failed its gate to ``<file>.failed`` with a ``.failed.json`` sidecar saying why.

    The sidecar gets ``status: failed``, ``failure: reason`` and the new file name; a sidecar left under the normal
    name (an earlier run) is removed, so nothing describes the file as usable.

    Returns:
        The new path of the model file.
    """
    model_path = Path(model_path)
    dest = failed_path(model_path)
    if model_path.exists():
        model_path.replace(dest)
    sidecar_path(model_path).unlink(missing_ok=True)
    sidecar.with_facts(status="failed", failure=reason, file=dest.name).write(dest)
    return dest


def mark_failed(model_path: Union[str, Path], meta: ModelMeta, reason: str,
                report: Optional[Dict[str, Any]] = None) -> Path:
    """:func:`keep_failed` for an embedding model's ``meta`` (and the gate's ``report``, when given)."""
    facts = {"parity": report} if report is not None else {}
    return keep_failed(model_path, MetaSidecar(meta).with_facts(**facts), reason)


def check_onnx(path: Union[str, Path], meta: ModelMeta) -> None:
    """:class:`ModelError` unless onnxruntime loads ``path`` and its input is the one its sidecar names.

    A truncated or foreign file then fails before any work, not as a protobuf traceback in quantisation or as
    engine-build commands printed for a broken file.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only to load it
    opts.log_severity_level = 3
    try:
        inputs = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).get_inputs()
    except Exception as exc:  # onnxruntime raises its own InvalidProtobuf / InvalidGraph / Fail types
        raise ModelError(f"{path} is not a loadable ONNX model ({type(exc).__name__}: truncated, corrupt or not "
                         "ONNX); re-copy it, or re-export it with hsst-export") from None
    want = list(meta.extra.get("input", {}).get("shape") or [])
    got = list(inputs[0].shape) if len(inputs) == 1 else []
    if not want or len(got) != len(want) or got[1:] != want[1:]:
        raise ModelError(f"{path} takes input(s) {[list(i.shape) for i in inputs]}, but its sidecar "
                         f"{sidecar_path(path).name} says {want}: they do not belong together; re-export the model "
                         "with hsst-export")
