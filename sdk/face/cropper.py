"""The one face-crop path: detector -> 5 landmarks -> alignment on the model's template -> quality verdict.

The gate (each tracked face), single-image identification, enrolment and :class:`hsst.face.FaceAnalysis` all
crop faces here, so a face is framed and judged the same way wherever it is seen.
"""
from __future__ import annotations

from typing import Any, List, Optional, Protocol, Sequence

import numpy as np

from hsst.core.alignment import align_face, reference_points
from hsst.core.image import check_frame, squeeze_single_channel, to_uint8
from hsst.core.metadata import Preprocess
from hsst.face.finder import FaceFinder
from hsst.face.types import Face


class QualityGate(Protocol):
    """What the path needs from a quality gate (e.g. :class:`hsst.runtime.quality.QualityAssessor`)."""

    def assess(self, bbox: np.ndarray, kps: np.ndarray, det_score: float, crop: np.ndarray,
               presence: float = 1.0) -> Any:
        """The verdict on one aligned face."""


class FaceCropper:
    """Finds, aligns and judges faces.

    Args:
        finder: a :class:`FaceFinder`, or a detector it wraps.
        crop_size: side of the aligned crops.
        template: (5, 2) alignment points of a ``crop_size`` crop (None: the standard template).
        quality: gate whose verdict goes to ``Face.quality`` (None: no verdict).
    """

    def __init__(self, finder: Any, crop_size: int = 112, template: Optional[Sequence] = None,
                 quality: Optional[QualityGate] = None) -> None:
        self.finder = finder if isinstance(finder, FaceFinder) else FaceFinder(finder)
        self.crop_size = int(crop_size)
        self.template = reference_points(self.crop_size) if template is None else np.asarray(template, np.float64)
        self.quality = quality

    @classmethod
    def for_model(cls, finder: Any, preprocess: Preprocess, quality: Optional[QualityGate] = None) -> "FaceCropper":
        """Crops as a model was trained on them: its crop size and its own template (from its metadata)."""
        return cls(finder, preprocess.crop_size, preprocess.template, quality)

    @staticmethod
    def frame(image: np.ndarray) -> np.ndarray:
        """The frame the path works on: checked, uint8 (16-bit range-scaled once), HxWx1 squeezed to HxW."""
        return squeeze_single_channel(to_uint8(check_frame(image)))

    def faces(self, image: np.ndarray, det_size: Optional[Sequence[int]] = None) -> List[Face]:
        """Every face of a still image, aligned and judged (``det_size``: see :meth:`FaceFinder.faces`)."""
        frame = self.frame(image)
        return [self.finish(frame, face) for face in self.finder.faces(frame, det_size)]

    def track_face(self, frame: np.ndarray, bbox: np.ndarray, det_score: float, aux: np.ndarray) -> Face:
        """One detected box of a :meth:`frame`: its landmarks (on demand), aligned and judged.

        Raises:
            InputError: no alignment from these landmarks (degenerate or non-finite points).
        """
        kps, presence = self.finder.landmarks(frame, bbox, aux)
        return self.finish(frame, Face(bbox=bbox, kps=kps, det_score=float(det_score), presence=presence))

    def finish(self, frame: np.ndarray, face: Face) -> Face:
        """Align ``face`` on the template and attach the gate's verdict."""
        face.aligned = align_face(frame, face.kps, self.crop_size, self.template)
        if self.quality is not None:
            face.quality = self.quality.assess(face.bbox, face.kps, face.det_score, face.aligned, face.presence)
        return face
