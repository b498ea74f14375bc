"""Image file -> aligned face crop of the model's size, or a counted failure.

Three ways to get the crop (``--faces``):

* ``detect``: detect faces (:class:`hsst.face.FaceAnalysis`), keep the largest, align it on the shared
  5-point template. What the gate does; an image without a detected face is a failure (``no_face``).
* ``aligned``: the files are already aligned crops of the model's size (``--aligned``); any other size is an
  error, since resizing a crop of another template scale would silently change the framing.
* ``box``: the training loader's geometric framing (:class:`hsst.train.data.FaceLoader` without an
  aligner: the fixed LFW face box for 250x250 LFW images, else the centred square). Use it to evaluate a
  model on the framing it was trained with (the reproduction study).

Unreadable files are failures too (``unreadable``), reported with their path rather than aborting a long run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from hsst.core.errors import ConfigError, ImageReadError, InputError
from hsst.core.image import read_image, to_uint8

logger = logging.getLogger(__name__)

FACE_MODES = ("detect", "aligned", "box")
#: Why an image produced no crop.
FAILURES = {"no_face": "no face detected", "unreadable": "unreadable or corrupt image",
            "wrong_size": "not an aligned crop of the model's size"}

CropResult = Tuple[Optional[np.ndarray], Optional[str]]


class FaceSource:
    """Base: ``crop(path) -> (crop or None, failure reason or None)``; ``signature`` keys the cache."""

    mode = ""

    def __init__(self, crop_size: int) -> None:
        if crop_size <= 0:
            raise ConfigError(f"crop_size must be positive, got {crop_size}")
        self.crop_size = int(crop_size)

    @property
    def signature(self) -> str:
        return f"{self.mode}:{self.crop_size}"

    def crop(self, path: Path) -> CropResult:
        try:
            image = to_uint8(read_image(path))
        except ImageReadError as exc:
            logger.warning("unreadable image %s: %s", path, exc)
            return None, "unreadable"
        return self.crop_image(image, path)

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        raise NotImplementedError


class AlignedSource(FaceSource):
    """Pre-aligned crops: used as they are."""

    mode = "aligned"

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        if image.shape[:2] != (self.crop_size, self.crop_size):
            raise InputError(f"--aligned: {path} is {image.shape[1]}x{image.shape[0]}, the model expects "
                             f"{self.crop_size}x{self.crop_size} aligned crops; drop --aligned to detect and align")
        return image, None


class BoxSource(FaceSource):
    """The training loader's fixed framing (LFW face box / centred square), no detector."""

    mode = "box"

    def __init__(self, crop_size: int) -> None:
        super().__init__(crop_size)
        try:
            from hsst.train.data.loader import FaceLoader
        except ImportError as exc:
            raise ConfigError(f"--faces box uses the training loader's framing and needs hsst[train] ({exc}); "
                              "use --faces detect") from exc
        self.loader = FaceLoader(self.crop_size, crop="auto")

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        return self.loader.crop_image(image, source=str(path)), None


class DetectSource(FaceSource):
    """Detector + 5-point alignment; the largest face of each image."""

    mode = "detect"

    def __init__(self, crop_size: int, detector: str = "auto", det_thresh: float = 0.5, min_face: int = 20,
                 ctx_id: int = -1) -> None:
        super().__init__(crop_size)
        from hsst.face import FaceAnalysis

        self.detector_name = detector
        self.app = FaceAnalysis(detector=detector, crop_size=self.crop_size).prepare(
            ctx_id=ctx_id, det_thresh=det_thresh, min_face=min_face)
        self.det_thresh, self.min_face = det_thresh, min_face

    @property
    def signature(self) -> str:
        backend = getattr(self.app.detector, "backend", self.app.detector)
        light = getattr(backend, "normalize", "off")  # the hard-light retry changes which faces are found
        return f"detect:{self.detector_name}:{self.det_thresh}:{self.min_face}:{self.crop_size}:light={light}"

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        faces = self.app.get(image, max_num=1)
        if not faces:
            return None, "no_face"
        return faces[0].aligned, None


def create_face_source(mode: str, crop_size: int, **kwargs) -> FaceSource:
    """Build the face source for ``--faces`` (``detect``, ``aligned``, ``box``).

    Raises:
        ConfigError: unknown mode, or options the mode does not take.
    """
    if mode not in FACE_MODES:
        raise ConfigError(f"unknown face mode {mode!r}; choose one of {FACE_MODES}")
    if mode == "detect":
        return DetectSource(crop_size, **kwargs)
    if kwargs:
        raise ConfigError(f"options {sorted(kwargs)} only apply to --faces detect")
    return AlignedSource(crop_size) if mode == "aligned" else BoxSource(crop_size)


def failure_summary(reasons: Dict[str, int]) -> str:
    """``no face detected: 3, unreadable or corrupt image: 1``."""
    return ", ".join(f"{FAILURES.get(k, k)}: {v}" for k, v in sorted(reasons.items())) or "none"
