"""Aligned face crops -> L2-normalised embeddings, through a backend and the model's own preprocessing."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from hsst.core.errors import ModelError
from hsst.core.metadata import ModelMeta
from hsst.core.preprocess import l2_normalize, to_input
from hsst.core.backends.base import Backend, create_backend
from hsst.runtime.config import EmbedderConfig
from hsst.runtime.model_files import check_engine_meta, resolve_model

logger = logging.getLogger(__name__)


class Embedder:
    """Embeds aligned crops with one batched backend call per chunk.

    All crops passed to :meth:`embed` (all faces of a frame) go through the network together; models with a
    static batch dimension are fed in chunks of exactly that size (the last chunk padded).

    Args:
        backend: a loaded :class:`~hsst.core.backends.base.Backend`.
        meta: the model's metadata (preprocessing, embedding size, thresholds).
        max_batch: largest chunk for dynamic-batch models.
    """

    def __init__(self, backend: Backend, meta: ModelMeta, max_batch: int = 8) -> None:
        self.backend = backend
        self.meta = meta
        spec = backend.inputs[0]
        pre = meta.preprocess
        expected = (pre.channels, pre.crop_size, pre.crop_size)
        if tuple(spec.shape[1:]) != expected:
            raise ModelError(f"model input {spec.name!r} has shape {spec.shape} but its metadata describes "
                             f"(N, {expected[0]}, {expected[1]}, {expected[2]}); the sidecar does not belong to "
                             "this model file")
        limit = backend.batch_limit
        self.static_batch = backend.static_batch
        self.chunk = limit if self.static_batch else min(max_batch, limit or max_batch)
        self.input_name = spec.name
        self.output_name = backend.outputs[0].name

    @classmethod
    def from_config(cls, config: EmbedderConfig) -> "Embedder":
        """Load the configured model (or the shipped default) with the configured backend."""
        path, meta = resolve_model(config.model)
        if config.backend == "tensorrt":
            check_engine_meta(path, meta, config.precision)
            backend = create_backend("tensorrt", path, device=config.device, max_batch=config.max_batch)
        else:
            if path.suffix == ".engine":
                raise ModelError(f"{path} is a TensorRT engine but embedder.backend is onnxruntime; "
                                 "set embedder.backend: tensorrt or point embedder.model at the .onnx file")
            backend = create_backend("onnxruntime", path, providers=config.providers, threads=config.threads,
                                     device=config.device)
        return cls(backend, meta, max_batch=config.max_batch)

    @classmethod
    def from_file(cls, model: Union[str, Path], backend: str = "onnxruntime", **options) -> "Embedder":
        """Shortcut: ``Embedder.from_file("model.onnx")``."""
        return cls.from_config(EmbedderConfig(model=str(model), backend=backend, **options))

    @property
    def crop_size(self) -> int:
        return self.meta.preprocess.crop_size

    @property
    def dim(self) -> int:
        return self.meta.embedding_dim

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of aligned crops.

        Args:
            crops: crops of ``crop_size`` x ``crop_size`` (gray or BGR, uint8 or uint16).

        Returns:
            (N, D) float32, each row L2-normalised; (0, D) for no crops.
        """
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = to_input(crops, self.meta.preprocess)
        outputs: List[np.ndarray] = []
        for start in range(0, len(batch), self.chunk):
            part = batch[start:start + self.chunk]
            n = len(part)
            if self.static_batch and n < self.chunk:
                part = np.concatenate([part, np.zeros((self.chunk - n,) + part.shape[1:], np.float32)])
            out = self.backend.run({self.input_name: np.ascontiguousarray(part)}, [self.output_name])
            outputs.append(np.asarray(out[self.output_name], np.float32).reshape(len(part), -1)[:n])
        emb = np.concatenate(outputs)
        if emb.shape[1] != self.dim:
            raise ModelError(f"model output has {emb.shape[1]} values per face, metadata says {self.dim}")
        return l2_normalize(emb)

    def close(self) -> None:
        self.backend.close()
