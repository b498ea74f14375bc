"""The ``Face`` record: one detected face, shaped like insightface's (``bbox``, ``kps``, ``det_score`` ...)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hsst.core.preprocess import l2_normalize


@dataclass
class Face:
    """One face in a frame.

    Attributes:
        bbox: (4,) float32 ``x1, y1, x2, y2`` in frame pixels.
        kps: (5, 2) float32 landmarks, order of :data:`hsst.core.alignment.KEYPOINT_NAMES`.
        det_score: detector confidence.
        embedding: (D,) float32 raw embedding, set by a recognizer.
        mesh: (468, 3) float32 face mesh vertices in frame pixels (see :mod:`hsst.face.mesh`), when requested.
        aligned: aligned square crop (uint8, gray or BGR like the frame), when requested.
        presence: face-presence score of the landmark model (1.0 when the detector gave the landmarks itself).
        quality: the quality gate's verdict on the aligned face (e.g. :class:`hsst.runtime.quality.FaceQuality`),
            when the face path has a gate.
    """

    bbox: np.ndarray
    kps: np.ndarray
    det_score: float
    embedding: Optional[np.ndarray] = None
    mesh: Optional[np.ndarray] = field(default=None, repr=False)
    aligned: Optional[np.ndarray] = field(default=None, repr=False)
    presence: float = 1.0
    quality: Optional[Any] = None

    @property
    def embedding_norm(self) -> Optional[float]:
        return None if self.embedding is None else float(np.linalg.norm(self.embedding))

    @property
    def normed_embedding(self) -> Optional[np.ndarray]:
        """The embedding scaled to unit L2 norm (None without an embedding)."""
        if self.embedding is None:
            return None
        return l2_normalize(self.embedding)

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    def __getitem__(self, key: str):
        """Dict-style access (``face['bbox']``) as in insightface."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None
