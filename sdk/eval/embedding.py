"""Streaming, batched, cached embedding of protocol images.

Images are decoded, cropped and transformed one batch at a time (optionally on a thread pool: OpenCV and
onnxruntime release the GIL), so memory holds one batch of crops plus the (N, D) embeddings: 50k images of a
512-d model take 100 MB. A tqdm bar shows images/s.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from hsst.eval.cache import NullCache, image_key
from hsst.eval.faces import FaceSource
from hsst.eval.embedders import EvalModel
from hsst.eval.protocols import ImageItem
from hsst.eval.transforms import ProbeTransform

logger = logging.getLogger(__name__)


@dataclass
class EmbeddingSet:
    """Embeddings of a list of images, with the ones that produced no crop.

    Attributes:
        embeddings: (N, D) float32, L2-normalised; rows of failed images are zero.
        ok: (N,) bool, False where the image gave no crop.
        failures: reason -> count.
        failed_paths: (path, reason) of the failed images (first 50).
        cache_hits: images answered by the cache.
        computed: images run through the model.
    """

    embeddings: np.ndarray
    ok: np.ndarray
    failures: Dict[str, int] = field(default_factory=dict)
    failed_paths: List[Tuple[str, str]] = field(default_factory=list)
    cache_hits: int = 0
    computed: int = 0
    failure_reasons: Dict[int, str] = field(default_factory=dict, repr=False)


class EmbeddingExtractor:
    """Embeds protocol images with one model, one face source and a cache.

    Args:
        model: the model under evaluation.
        faces: how crops are made.
        cache: an :class:`~hsst.eval.cache.EmbeddingCache` (or :class:`~hsst.eval.cache.NullCache`).
        batch_size: crops per model call.
        workers: threads decoding / cropping / transforming (0: in the calling thread).
        progress: show a tqdm bar.
    """

    def __init__(self, model: EvalModel, faces: FaceSource, cache=None, batch_size: int = 64, workers: int = 0,
                 progress: bool = True) -> None:
        if faces.crop_size != model.crop_size:
            raise ValueError(f"face source crops {faces.crop_size} px but the model takes {model.crop_size} px")
        self.model = model
        self.faces = faces
        self.cache = cache if cache is not None else NullCache()
        self.batch_size = max(1, int(batch_size))
        self.workers = max(0, int(workers))
        self.progress = progress

    def embed(self, items: Sequence[ImageItem], transform: Optional[ProbeTransform] = None,
              desc: str = "embedding") -> EmbeddingSet:
        """Embeddings of ``items`` (probe ``transform`` applied to each crop, seeded per image key)."""
        transform = transform or ProbeTransform()
        fn = transform.build() if transform.active else None
        dim = self.model.meta.embedding_dim
        n = len(items)
        emb = np.zeros((n, dim), np.float32)
        ok = np.zeros(n, bool)
        result = EmbeddingSet(emb, ok)
        keys = [image_key(it.path, self.model.sha256, self.faces.signature, transform.signature) for it in items]
        cached = self.cache.get_many(set(keys))
        todo: List[int] = []
        first_of: Dict[str, int] = {}
        repeats: List[int] = []  # an image listed twice (pairs files) is embedded once
        for i, key in enumerate(keys):
            if key in cached:
                vec, failure = cached[key]
                self._record(result, i, items[i], vec, failure)
                result.cache_hits += 1
            elif key in first_of:
                repeats.append(i)
            else:
                first_of[key] = i
                todo.append(i)
        if todo:
            self._compute(items, keys, todo, fn, transform, result, desc)
        for i in repeats:
            j = first_of[keys[i]]
            vec = result.embeddings[j] if result.ok[j] else None
            self._record(result, i, items[i], vec, None if vec is not None else self._failure_of(result, j))
        return result

    @staticmethod
    def _failure_of(result: EmbeddingSet, j: int) -> str:
        return result.failure_reasons.get(j, "no_face")

    def _compute(self, items, keys, todo, fn, transform, result: EmbeddingSet, desc: str) -> None:
        dim = self.model.meta.embedding_dim
        pool = ThreadPoolExecutor(self.workers) if self.workers else None
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not self.progress, dynamic_ncols=True,
                   smoothing=0.1)
        try:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                prepare = lambda i: self._prepare(items[i], fn, transform)  # noqa: E731
                prepared = list(pool.map(prepare, chunk)) if pool else [prepare(i) for i in chunk]
                good = [(i, crop) for i, (crop, _) in zip(chunk, prepared) if crop is not None]
                vectors = self.model.embed([crop for _, crop in good]) if good else np.zeros((0, dim), np.float32)
                entries = {}
                for (i, _), vec in zip(good, vectors):
                    self._record(result, i, items[i], vec, None)
                    entries[keys[i]] = (vec, None)
                for i, (crop, failure) in zip(chunk, prepared):
                    if crop is None:
                        self._record(result, i, items[i], None, failure)
                        entries[keys[i]] = (None, failure)
                self.cache.put_many(entries)
                result.computed += len(good)
                bar.update(len(chunk))
        finally:
            bar.close()
            if pool:
                pool.shutdown()

    def _prepare(self, item: ImageItem, fn, transform: ProbeTransform):
        crop, failure = self.faces.crop(item.path)
        if crop is not None and fn is not None:
            crop = fn(crop, transform.rng_for(item.key))
        return crop, failure

    @staticmethod
    def _record(result: EmbeddingSet, i: int, item: ImageItem, vec, failure) -> None:
        if vec is None:
            reason = failure or "no_face"
            result.failure_reasons[i] = reason
            result.failures[reason] = result.failures.get(reason, 0) + 1
            if len(result.failed_paths) < 50:
                result.failed_paths.append((str(item.path), reason))
            return
        result.embeddings[i] = vec
        result.ok[i] = True
