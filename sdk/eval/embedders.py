"""Load "what ships" for evaluation: a training checkpoint, an ONNX file or a TensorRT engine.

Every kind embeds aligned crops through :func:`hsst.core.preprocess.to_input` with the model's own
:class:`~hsst.core.metadata.ModelMeta` (the runtime's :class:`~hsst.runtime.embedder.Embedder` for ONNX and
TensorRT, the same function feeding torch for checkpoints), so evaluation sees the pixels the gate sees.
Checkpoints are run by the trainer's :class:`hsst.train.models.evaluation.CheckpointModel`, found through an
entry point: this package never imports torch or the trainer.
"""
from __future__ import annotations

import json
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.core.metadata import ModelMeta, sidecar_path

from hsst.eval.cache import file_sha256

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth")
KINDS = ("checkpoint", "onnx", "tensorrt")


class EvalModel:
    """An embedding model under evaluation.

    Attributes:
        path: the model file.
        kind: ``checkpoint``, ``onnx`` or ``tensorrt``.
        meta: its metadata (preprocessing, embedding size, thresholds).
        sha256: hash of the model file (keys the embedding cache, recorded in reports).
    """

    kind = ""

    def __init__(self, path: Path, meta: ModelMeta) -> None:
        self.path = Path(path)
        self.meta = meta
        self.sha256 = file_sha256(self.path)

    @property
    def crop_size(self) -> int:
        return self.meta.preprocess.crop_size

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings of aligned crops."""
        raise NotImplementedError

    def describe(self) -> Dict[str, object]:
        """Model fields for reports."""
        return {"path": str(self.path), "kind": self.kind, "sha256": self.sha256, "name": self.meta.name,
                "arch": self.meta.arch, "embedding_dim": self.meta.embedding_dim,
                "preprocess": {"color": self.meta.preprocess.color, "crop_size": self.crop_size,
                               "mean": self.meta.preprocess.mean, "std": self.meta.preprocess.std},
                "training": self.meta.training}

    def close(self) -> None:
        pass


class RuntimeModel(EvalModel):
    """An ONNX file or TensorRT engine through the runtime's :class:`~hsst.runtime.embedder.Embedder`."""

    def __init__(self, path: Path, backend: str, batch_size: int = 64, threads: int = 0, device: int = 0) -> None:
        from hsst.runtime.embedder import Embedder

        self.kind = "tensorrt" if backend == "tensorrt" else "onnx"
        self.embedder = Embedder.from_file(path, backend=backend, max_batch=batch_size, threads=threads,
                                           device=device)
        super().__init__(path, self.embedder.meta)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return self.embedder.embed(list(crops))

    def close(self) -> None:
        self.embedder.close()


def checkpoint_model_class(path: Path) -> type:
    """The class that evaluates a training checkpoint: provided by the trainer (torch) through the entry point
    ``hsst.eval_models: checkpoint`` (setup.py), so this torch-free package never imports the trainer.

    Raises:
        ModelError: the trainer (``hsst[train]``, torch) is not installed.
    """
    found = [ep for ep in entry_points(group="hsst.eval_models") if ep.name == "checkpoint"]
    try:
        if not found:
            raise ImportError("no 'hsst.eval_models' entry point named 'checkpoint' (reinstall hsst)")
        return found[0].load()
    except ImportError as exc:
        raise ModelError(f"{path} is a training checkpoint; evaluating it needs torch (pip install 'hsst[train]') "
                         f"({exc}); or export it with hsst-export and evaluate the .onnx") from None


def model_kind(path: Union[str, Path]) -> str:
    """``checkpoint`` (.pt/.pth), ``onnx`` or ``tensorrt`` (.engine/.plan/.trt) by file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    raise ConfigError(f"cannot tell the model kind of {path}: expected a training checkpoint (.pt), an ONNX file "
                      "(.onnx) or a TensorRT engine (.engine)")


def load_model(path: Union[str, Path], device: str = "auto", batch_size: int = 64, threads: int = 0) -> EvalModel:
    """Load a model for evaluation by its file kind.

    Args:
        path: ``.pt`` probe-net checkpoint, ``.onnx`` with its JSON sidecar, or ``.engine`` with its sidecar.
        device: checkpoint: ``cpu``, ``cuda[:N]`` or ``auto``; engines: ``cuda:N`` picks the GPU.
        batch_size: crops per forward pass.
        threads: onnxruntime intra-op threads (0: its default).

    Raises:
        ModelError: missing file or sidecar, or a model that does not load.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    kind = model_kind(path)
    if kind == "checkpoint":
        return checkpoint_model_class(path)(path, device=device, batch_size=batch_size)
    gpu = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    return RuntimeModel(path, backend="tensorrt" if kind == "tensorrt" else "onnxruntime", batch_size=batch_size,
                        threads=threads, device=gpu)


def write_thresholds(model_path: Union[str, Path], thresholds: Dict[str, float],
                     source: Optional[Dict[str, object]] = None) -> Path:
    """Store a FAR -> cosine threshold table in the model's metadata (what the gate's decision policy reads).

    ONNX files and engines: their JSON sidecar is rewritten (atomically). Checkpoints: the ``meta`` entry of the
    checkpoint is rewritten (atomically; needs torch). ``source`` (protocol, dataset fingerprint) is recorded
    under ``meta.extra["thresholds_from"]``.

    Returns:
        The file that was written.
    """
    path = Path(model_path)
    table = {str(k): float(v) for k, v in thresholds.items()}
    if model_kind(path) != "checkpoint":
        side = sidecar_path(path)
        meta = ModelMeta.load(side)
        meta.thresholds = table
        if source:
            meta.extra = {**meta.extra, "thresholds_from": json.loads(json.dumps(source))}
        return meta.save(side)
    return checkpoint_model_class(path).write_thresholds(path, table, source)
