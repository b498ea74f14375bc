"""Model metadata: the one description of how a model sees faces.

Trainer, exporter and runtime all read :class:`ModelMeta`: it is saved in every checkpoint, written as the
JSON sidecar beside every ONNX file and TensorRT engine, and read back by the runtime. Nothing downstream
guesses preprocessing from tensor shapes.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from hsst.core.files import atomic_write_json
from hsst.core.alignment import reference_points
from hsst.core.errors import ModelError

SCHEMA_VERSION = 1
COLOR_MODES = ("gray", "rgb", "bgr")


@dataclass
class Preprocess:
    """How an aligned crop becomes the network input: ``(pixel - mean) / std`` in NCHW float32.

    Attributes:
        color: channel order the network expects: ``gray`` (1 channel), ``rgb`` or ``bgr``.
        mean: per-channel mean subtracted from 0..255 pixels.
        std: per-channel divisor.
        crop_size: side of the aligned square crop (also the network's H and W).
        template: the 5 alignment points (x, y) of a ``crop_size`` crop the model was trained on; every face
            path aligns with them (None, or absent from a sidecar: the standard template scaled to
            ``crop_size``, :func:`hsst.core.alignment.reference_points`).
    """

    color: str = "gray"
    mean: float = 127.5
    std: float = 128.0
    crop_size: int = 112
    template: Optional[List[List[float]]] = None

    def __post_init__(self) -> None:
        if self.color not in COLOR_MODES:
            raise ModelError(f"unknown colour mode {self.color!r}; expected one of {COLOR_MODES}")
        if self.crop_size <= 0 or self.std == 0:
            raise ModelError(f"invalid preprocessing: crop_size={self.crop_size}, std={self.std}")
        points = np.asarray(reference_points(112) if self.template is None else self.template, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise ModelError(f"preprocess.template must be 5 finite (x, y) points, got {self.template!r}")
        if self.template is None or (self.crop_size != 112 and np.allclose(points, reference_points(112))):
            # absent, or the unscaled 112 default that sidecars of other sizes kept while nothing read it
            self.template = reference_points(self.crop_size).tolist()

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @classmethod
    def for_size(cls, crop_size: int, color: str = "gray", mean: float = 127.5, std: float = 128.0) -> "Preprocess":
        return cls(color=color, mean=mean, std=std, crop_size=crop_size)


@dataclass
class ModelMeta:
    """Everything a consumer of an embedding model needs besides its weights.

    Attributes:
        name: model name, e.g. ``hsst-mobilefacenet-112``.
        arch: backbone registry name (``mobilefacenet``, ``resnet50``).
        embedding_dim: length of the output embedding.
        preprocess: input preprocessing.
        input_name: graph input name (ONNX / TensorRT).
        output_name: graph output name.
        output_normalized: whether the graph output is already L2-normalised.
        thresholds: FAR -> cosine threshold table from evaluation (``{"1e-3": 0.41, ...}``).
        training: summary of how the model was trained (method, loss, data, iterations).
        extra: free-form fields added by exporters (opset, precision, TensorRT version, hashes...).
    """

    name: str = "hsst-mobilefacenet-112"
    arch: str = "mobilefacenet"
    embedding_dim: int = 512
    preprocess: Preprocess = field(default_factory=Preprocess)
    input_name: str = "input"
    output_name: str = "embedding"
    output_normalized: bool = False
    thresholds: Dict[str, float] = field(default_factory=dict)
    training: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelMeta":
        data = dict(data)
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ModelError(f"model metadata schema {version} is newer than this hsst ({SCHEMA_VERSION}); "
                             "upgrade hsst")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"unknown model metadata fields {sorted(unknown)}")
        data["preprocess"] = Preprocess(**data.get("preprocess", {}))
        return cls(**data)

    def save(self, path: Path) -> Path:
        """Write the metadata as JSON (atomically: a killed process never leaves half a file)."""
        return atomic_write_json(path, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> "ModelMeta":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model metadata not found: {path}; export the model with hsst-export, "
                             "which writes this sidecar beside the model file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: JSON syntax, or bytes that are not text at all
            raise ModelError(f"cannot read model metadata {path}: {exc}; re-export the model with hsst-export, "
                             "which writes this sidecar") from exc
        return cls.from_dict(data)

    def threshold_for_far(self, far: float) -> Optional[float]:
        """Cosine threshold for a false-accept rate from the evaluation table, or None if absent."""
        for key, value in self.thresholds.items():
            if abs(float(key) - far) <= 1e-12 * max(1.0, far):
                return float(value)
        return None


def sidecar_path(model_path: Path) -> Path:
    """Where the metadata sidecar of a model file lives: ``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def check_engine_compat(sidecar: Any, trt_version: str, device_name: str) -> None:
    """Raise :class:`ModelError` unless a TensorRT engine may be loaded with this TensorRT on this GPU.

    Engines are not portable: TensorRT refuses ("Version tag does not match") or misbehaves with an engine
    serialised by another TensorRT release or tuned for another GPU model. The engine's sidecar records both.

    Args:
        sidecar: the engine's :class:`ModelMeta` (``extra["tensorrt"]``) or its JSON dict (``tensorrt`` at the
            top level or under ``extra``).
        trt_version: ``tensorrt.__version__`` of this process, e.g. ``"10.3.0.30"``.
        device_name: this GPU's name as the exporter records it (CUDA device name, e.g. ``"Orin"``).

    Rules: same TensorRT major.minor.patch (same major only when built with ``version_compatible``), same GPU
    name (any GPU when built with ``hardware_compatible``, which TensorRT supports on Ampere and newer).
    """
    extra = sidecar.extra if isinstance(sidecar, ModelMeta) else dict(sidecar or {}).get("extra", sidecar) or {}
    info = extra.get("tensorrt") if isinstance(extra, dict) else None
    if not info and isinstance(sidecar, dict):
        info = sidecar.get("tensorrt")
    if not isinstance(info, dict) or not info.get("version"):
        raise ModelError("the engine's sidecar has no TensorRT build record (extra.tensorrt.version); it was not "
                         "written by hsst-export: rebuild the engine on this device with hsst-export --trt")
    built, here = str(info["version"]), str(trt_version)
    rebuild = (" Rebuild the engine on this device: hsst-export --trt --weights <checkpoint> (or the trtexec "
               "command in docs/EXPORT.md); engines are not portable across TensorRT versions or GPU models.")
    same_version = _version_tuple(built) == _version_tuple(here)
    if info.get("version_compatible"):
        same_version = _version_tuple(built)[0] == _version_tuple(here)[0] and \
            _version_tuple(here) >= _version_tuple(built)
    if not same_version:
        raise ModelError(f"engine built with TensorRT {built} cannot be loaded by TensorRT {here}." + rebuild)
    built_dev = str(info.get("device_name", "")).strip()
    if built_dev and not info.get("hardware_compatible") and built_dev != str(device_name).strip():
        raise ModelError(f"engine built for GPU {built_dev!r} cannot run on {str(device_name).strip()!r}." + rebuild)
