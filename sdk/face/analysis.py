"""insightface-shaped front end: ``FaceAnalysis().prepare(...)``, ``get(img) -> [Face]``.

``get`` detects faces, aligns each to the shared 5-point template (:func:`hsst.core.alignment.align_face`)
and, when a recognizer is attached, adds embeddings. A recognizer is any object with
``embed(crops: list[np.ndarray]) -> np.ndarray`` of shape (N, D), taking the aligned crops.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Protocol, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.alignment import align_face
from hsst.core.errors import ConfigError, ModelError
from hsst.core.image import check_frame, to_uint8
from hsst.face.detector import BlazeFaceDetector, FaceDetector
from hsst.face.types import Face

logger = logging.getLogger(__name__)


class Recognizer(Protocol):
    """What :class:`FaceAnalysis` needs from an embedding model."""

    def embed(self, crops: List[np.ndarray]) -> np.ndarray:
        """(N, D) embeddings of N aligned crops."""


class FaceAnalysis:
    """Detect, align and (optionally) embed faces.

    Args:
        detector: a detector object (anything with ``detect(image) -> (boxes, scores, kps)``), a detector name
            (``auto``, ``blazeface``, ``mtcnn``) or None for ``auto``; built by :meth:`prepare`.
        crop_size: side of the aligned crops (112 or 144; the template scales with it).
        recognizer: optional embedding model (see :class:`Recognizer`).
        with_mesh: also return the 468-point mesh per face (BlazeFace detector only).

    Example:
        >>> app = FaceAnalysis()
        >>> app.prepare(ctx_id=-1, det_thresh=0.5)
        >>> faces = app.get(frame)
        >>> faces[0].bbox, faces[0].kps, faces[0].aligned.shape
    """

    def __init__(self, detector: Union[None, str, object] = None, crop_size: int = 112,
                 recognizer: Optional[Recognizer] = None, with_mesh: bool = False) -> None:
        if crop_size <= 0:
            raise ConfigError(f"crop_size must be positive, got {crop_size}")
        if recognizer is not None and not callable(getattr(recognizer, "embed", None)):
            raise ConfigError(f"recognizer {type(recognizer).__name__} has no embed(crops) method")
        self._detector_spec = detector if detector is not None else "auto"
        self.detector = None if isinstance(self._detector_spec, str) else self._detector_spec
        self.crop_size = int(crop_size)
        self.recognizer = recognizer
        self.with_mesh = with_mesh
        self.det_size: Optional[Tuple[int, int]] = None

    def prepare(self, ctx_id: int = -1, det_size: Optional[Sequence[int]] = (640, 640),
                det_thresh: float = 0.5, min_face: int = 40) -> "FaceAnalysis":
        """Build the detector.

        Args:
            ctx_id: -1 for CPU, >= 0 for the CUDA device of that index (onnxruntime-gpu).
            det_size: frames larger than this (w, h) are downscaled for detection (boxes and landmarks are
                mapped back, alignment uses the full frame); None: never.
            det_thresh: minimum face score.
            min_face: smallest face side in frame pixels.
        """
        providers = (["CPUExecutionProvider"] if ctx_id < 0 else
                     [("CUDAExecutionProvider", {"device_id": int(ctx_id)}), "CPUExecutionProvider"])
        if isinstance(self._detector_spec, str):
            self.detector = FaceDetector(self._detector_spec, det_thresh=det_thresh, min_face=min_face,
                                         providers=providers)
        self.det_size = tuple(int(v) for v in det_size) if det_size else None
        return self

    def _backend(self):
        if self.detector is None:
            raise ModelError("FaceAnalysis.get called before prepare(); call app.prepare(ctx_id=-1) first")
        return getattr(self.detector, "backend", self.detector)

    def get(self, img: np.ndarray, max_num: int = 0) -> List[Face]:
        """Faces in ``img`` (HxW gray or HxWx3 BGR, uint8 or uint16), largest first when ``max_num`` > 0.

        Aligned crops are uint8 (a 16-bit frame is range-scaled once), with the frame's channels.
        """
        check_frame(img)
        backend = self._backend()
        frame = to_uint8(img)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        scale = 1.0
        small = frame
        if self.det_size and (frame.shape[1] > self.det_size[0] or frame.shape[0] > self.det_size[1]):
            scale = min(self.det_size[0] / frame.shape[1], self.det_size[1] / frame.shape[0])
            small = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        meshes = None
        if self.with_mesh and isinstance(backend, BlazeFaceDetector):
            boxes, scores, mesh_results = backend.detect_meshes(small)
            kps = (np.stack([m.keypoints() for m in mesh_results]) if mesh_results
                   else np.zeros((0, 5, 2), np.float32))
            meshes = [m.vertices for m in mesh_results]
        else:
            boxes, scores, kps = backend.detect(small)
        if scale != 1.0:
            boxes, kps = boxes / scale, kps / scale
            if meshes is not None:
                meshes = [m / scale for m in meshes]  # x, y and z share the scale
        faces = [Face(bbox=boxes[i].astype(np.float32), kps=kps[i].astype(np.float32), det_score=float(scores[i]),
                      mesh=None if meshes is None else meshes[i].astype(np.float32)) for i in range(len(boxes))]
        if max_num > 0 and len(faces) > max_num:
            faces = sorted(faces, key=lambda f: f.area, reverse=True)[:max_num]
        for face in faces:
            face.aligned = align_face(frame, face.kps, self.crop_size)
        if self.recognizer is not None and faces:
            emb = np.asarray(self.recognizer.embed([f.aligned for f in faces]), dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != len(faces):
                raise ModelError(f"recognizer returned embeddings of shape {emb.shape} for {len(faces)} crops; "
                                 f"expected ({len(faces)}, D)")
            for face, vec in zip(faces, emb):
                face.embedding = vec
        return faces
