"""Image file -> aligned face crop of the model's size, or a counted failure.

Three ways to get the crop (``--faces``):

* ``detect``: detect faces with the gate's detector and its settings (a gate config's ``detector`` section,
  :class:`hsst.runtime.config.DetectorConfig`), keep the largest, align it on the shared 5-point template
  (:class:`hsst.face.FaceAnalysis`). What the gate does; an image without a detected face is a failure
  (``no_face``).
* ``aligned``: the files are already aligned crops of the model's size (``--aligned``); any other size is an
  error, since resizing a crop of another template scale would silently change the framing.
* ``box``: the training loader's geometric framing (:class:`hsst.data.FaceLoader` without an
  aligner: the fixed LFW face box for 250x250 LFW images, else the centred square). Use it to evaluate a
  model on the framing it was trained with (the reproduction study).

Unreadable files are failures too (``unreadable``), reported with their path rather than aborting a long run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from hsst.data.loader import FaceLoader
from hsst.core.errors import ConfigError, ImageReadError, InputError
from hsst.core.image import read_image, to_uint8
from hsst.runtime.config import DETECTOR_RUN_FIELDS, DetectorConfig

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

    def describe(self) -> Dict[str, Any]:
        """What the report records about the crops."""
        return {"mode": self.mode, "signature": self.signature}

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
        self.loader = FaceLoader(self.crop_size, crop="auto")

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        return self.loader.crop_image(image, source=str(path)), None


class DetectSource(FaceSource):
    """The gate's detector with its settings, then 5-point alignment; the largest face of each image.

    Args:
        crop_size: side of the aligned crop (the model's).
        detector: the gate's detector settings (None: the runtime's defaults); run on onnxruntime here.
        template: the model's 5-point alignment template (None: the standard one for ``crop_size``).
    """

    mode = "detect"

    def __init__(self, crop_size: int, detector: Optional[DetectorConfig] = None,
                 template: Optional[Sequence] = None) -> None:
        super().__init__(crop_size)
        from hsst.face import FaceAnalysis
        from hsst.runtime.pipeline import create_face_detector

        self.detector = on_onnxruntime(detector or DetectorConfig())
        self.app = FaceAnalysis(detector=create_face_detector(self.detector), crop_size=self.crop_size,
                                template=template).prepare()

    @property
    def signature(self) -> str:
        """Every setting that changes which faces are found (a new DetectorConfig field is in it by default)."""
        found_by = {k: v for k, v in dataclasses.asdict(self.detector).items() if k not in DETECTOR_RUN_FIELDS}
        # the detector that runs: model "auto" falls back to MTCNN where BlazeFace is not installed
        return f"detect:{self.app.detector.name}:{self.crop_size}:{json.dumps(found_by, sort_keys=True)}"

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "detector": dataclasses.asdict(self.detector),
                "detector_name": self.app.detector.name}

    def crop_image(self, image: np.ndarray, path: Path) -> CropResult:
        faces = self.app.get(image, max_num=1)
        if not faces:
            return None, "no_face"
        return faces[0].aligned, None


def on_onnxruntime(config: DetectorConfig) -> DetectorConfig:
    """``config`` run on onnxruntime: a TensorRT gate's engines are built from the same networks, and its engine
    folder (``model_dir``) is of no use to onnxruntime."""
    if config.backend == "onnxruntime":
        return config
    logger.info("detector backend %s of the gate config: evaluating its networks on onnxruntime", config.backend)
    return dataclasses.replace(config, backend="onnxruntime", model_dir=None)


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
