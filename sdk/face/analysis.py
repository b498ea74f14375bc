"""insightface-shaped front end: ``FaceAnalysis().prepare(...)``, ``get(img) -> [Face]``.

``get`` runs the face path (:class:`hsst.face.cropper.FaceCropper`: detection, landmarks, alignment on the
5-point template) and, when a recognizer is attached, adds embeddings. A recognizer is any object with
``embed(crops: list[np.ndarray]) -> np.ndarray`` of shape (N, D), taking the aligned crops; one that carries
model metadata (``recognizer.meta.preprocess``, as :class:`hsst.runtime.Embedder` does) also sets the crop size
and template.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.face.cropper import FaceCropper
from hsst.face.detector import FaceDetector
from hsst.face.types import Face

logger = logging.getLogger(__name__)


class Recognizer(Protocol):
    """What :class:`FaceAnalysis` needs from an embedding model."""

    def embed(self, crops: List[np.ndarray]) -> np.ndarray:
        """(N, D) embeddings of N aligned crops."""


def _framing(recognizer: Any, crop_size: Optional[int], template: Optional[Sequence]) -> Tuple[int, Any]:
    """Crop size and template: the given ones, else the recognizer model's own (metadata), else 112 / standard."""
    pre = getattr(getattr(recognizer, "meta", None), "preprocess", None)
    if pre is not None and template is None and crop_size in (None, pre.crop_size):
        return pre.crop_size, pre.template
    return (112 if crop_size is None else int(crop_size)), template


class FaceAnalysis:
    """Detect, align and (optionally) embed faces.

    Args:
        detector: a detector object (anything with ``detect(image) -> (boxes, scores, kps)``), a detector name
            (``auto``, ``blazeface``, ``mtcnn``) or None for ``auto``; built by :meth:`prepare`.
        crop_size: side of the aligned crops (None: the recognizer model's, else 112; the standard template
            scales with it).
        recognizer: optional embedding model (see :class:`Recognizer`).
        with_mesh: also return the 468-point mesh per face (BlazeFace detector only).
        template: (5, 2) alignment points of a ``crop_size`` crop (None: the recognizer model's, else standard).

    Example:
        >>> app = FaceAnalysis()
        >>> app.prepare(ctx_id=-1, det_thresh=0.5)
        >>> faces = app.get(frame)
        >>> faces[0].bbox, faces[0].kps, faces[0].aligned.shape
    """

    def __init__(self, detector: Union[None, str, object] = None, crop_size: Optional[int] = None,
                 recognizer: Optional[Recognizer] = None, with_mesh: bool = False,
                 template: Optional[Sequence] = None) -> None:
        if crop_size is not None and crop_size <= 0:
            raise ConfigError(f"crop_size must be positive, got {crop_size}")
        if recognizer is not None and not callable(getattr(recognizer, "embed", None)):
            raise ConfigError(f"recognizer {type(recognizer).__name__} has no embed(crops) method")
        self._detector_spec = detector if detector is not None else "auto"
        self.crop_size, self.template = _framing(recognizer, crop_size, template)
        self.recognizer = recognizer
        self.with_mesh = with_mesh
        self.det_size: Optional[Tuple[int, int]] = None
        self.detector = None
        self.cropper: Optional[FaceCropper] = None
        if not isinstance(self._detector_spec, str):
            self._use(self._detector_spec)

    def _use(self, detector: Any) -> None:
        self.detector = detector
        self.cropper = FaceCropper(detector, self.crop_size, self.template)

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
            self._use(FaceDetector(self._detector_spec, det_thresh=det_thresh, min_face=min_face,
                                   providers=providers))
        self.det_size = tuple(int(v) for v in det_size) if det_size else None
        return self

    def get(self, img: np.ndarray, max_num: int = 0) -> List[Face]:
        """Faces in ``img`` (HxW gray or HxWx3 BGR, uint8 or uint16), largest first when ``max_num`` > 0.

        Aligned crops are uint8 (a 16-bit frame is range-scaled once), with the frame's channels.
        """
        if self.cropper is None:
            raise ModelError("FaceAnalysis.get called before prepare(); call app.prepare(ctx_id=-1) first")
        faces = self.cropper.faces(img, self.det_size)
        if not self.with_mesh:
            for face in faces:
                face.mesh = None
        if max_num > 0 and len(faces) > max_num:
            faces = sorted(faces, key=lambda f: f.area, reverse=True)[:max_num]
        if self.recognizer is not None and faces:
            self._embed(faces)
        return faces

    def _embed(self, faces: List[Face]) -> None:
        emb = np.asarray(self.recognizer.embed([f.aligned for f in faces]), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(faces):
            raise ModelError(f"recognizer returned embeddings of shape {emb.shape} for {len(faces)} crops; "
                             f"expected ({len(faces)}, D)")
        for face, vec in zip(faces, emb):
            face.embedding = vec
