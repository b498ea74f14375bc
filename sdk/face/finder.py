"""Detector front of the face path: boxes on every frame, the 5 landmarks only for the faces that need them."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.face.types import Face


class FaceFinder:
    """Two-step detection: boxes (every frame), then 5 landmarks per face.

    Works with any detector exposing ``detect(image) -> (boxes, scores, kps)``; with hsst's BlazeFace
    detector the (more costly) face-mesh landmarks are computed on demand, with the mesh's face-presence score.

    Args:
        detector: a :class:`hsst.face.FaceDetector` or any object with ``detect``.
    """

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        backend = getattr(detector, "backend", detector)
        self._two_step = hasattr(backend, "detect_boxes") and hasattr(backend, "mesh")
        self._meshes = hasattr(backend, "detect_meshes")
        self._backend = backend

    def boxes(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,) and per-face auxiliary points (detector keypoints)."""
        if self._two_step:
            return self._backend.detect_boxes(image)
        return self.detector.detect(image)

    def landmarks(self, frame_u8: np.ndarray, box: np.ndarray, aux: np.ndarray) -> Tuple[np.ndarray, float]:
        """The 5 alignment landmarks of one face and the landmark model's face-presence score (1.0 when the
        detector gave the landmarks itself)."""
        if self._two_step:
            mesh = self._backend.mesh.predict(frame_u8, box=box, eyes=aux[:2])
            return mesh.keypoints().astype(np.float32), float(mesh.score)
        return np.asarray(aux, np.float32), 1.0

    def detect(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full detection with landmarks: boxes (N, 4), scores (N,), kps (N, 5, 2)."""
        return self.detector.detect(image)

    def faces(self, image: np.ndarray, det_size: Optional[Sequence[int]] = None) -> List[Face]:
        """Every face of a still image with its landmarks (and, with BlazeFace, its mesh and presence score).

        Args:
            image: a checked frame.
            det_size: detect on a copy downscaled to fit this (w, h); boxes, landmarks and meshes are mapped
                back to ``image`` (None: detect at full size).
        """
        small, scale = _downscaled(image, det_size)
        if self._meshes:
            boxes, scores, meshes = self._backend.detect_meshes(small)
            faces = [Face(bbox=b, kps=m.keypoints(), det_score=float(s), mesh=m.vertices, presence=float(m.score))
                     for b, s, m in zip(boxes, scores, meshes)]
        else:
            boxes, scores, kps = self.detector.detect(small)
            faces = [Face(bbox=b, kps=k, det_score=float(s)) for b, s, k in zip(boxes, scores, kps)]
        for face in faces:
            face.bbox = (face.bbox / scale).astype(np.float32)
            face.kps = (face.kps / scale).astype(np.float32)
            if face.mesh is not None:
                face.mesh = (face.mesh / scale).astype(np.float32)  # x, y and z share the scale
        return faces


def _downscaled(image: np.ndarray, det_size: Optional[Sequence[int]]) -> Tuple[np.ndarray, float]:
    """``image`` shrunk to fit ``det_size`` (w, h) and the scale applied (1.0: unchanged)."""
    h, w = image.shape[:2]
    if not det_size or (w <= det_size[0] and h <= det_size[1]):
        return image, 1.0
    scale = min(det_size[0] / w, det_size[1] / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale
