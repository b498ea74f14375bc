"""Image file -> aligned square face crop, the input of every training transform.

With an ``aligner`` (a detector + 5-point alignment onto :mod:`hsst.core.alignment`'s template, plugged in
by the face package) full images are aligned properly. Without one a geometric fallback frames the face:

* LFW deep-funneled images (250x250) are already roughly aligned by the funnelling, so one fixed box
  frames them. :data:`LFW_FACE_BOX` was measured on the mean of 1,500 random LFW images: the eye centres of
  the mean face lie at (104, 112) and (146, 111) and the mouth at (125, 156.5); the least-squares scale +
  shift that maps these three points onto the template's eyes and mouth centre gives the 128 px square at
  (61, 52). Crops through that box put the template's eyes and mouth on the faces' eyes and mouth.
* Any other size (e.g. AT&T/ORL 92x112 head crops) gets the centred square crop, resized.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import cv2
import numpy as np

from hsst.core.errors import ConfigError, InputError
from hsst.core.image import read_image, to_uint8

logger = logging.getLogger(__name__)

#: (x, y, side) of the face box in a 250x250 LFW deep-funneled image (see the module docstring).
LFW_FACE_BOX: Tuple[int, int, int] = (61, 52, 128)
LFW_SIZE = (250, 250)
CROP_MODES = ("auto", "center", "none")

Aligner = Callable[[np.ndarray], np.ndarray]


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of ``image``."""
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return image[y:y + side, x:x + side]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class FaceLoader:
    """Reads an image file and returns a ``crop_size`` x ``crop_size`` uint8 face crop.

    Args:
        crop_size: side of the output crop (the model's ``Preprocess.crop_size``).
        aligner: maps a full image to an aligned ``crop_size`` crop (detector + 5-point alignment); when
            given it is used for every image that is not already ``crop_size`` square.
        crop: fallback without an aligner: ``auto`` (the LFW face box for 250x250 images, else the centred
            square), ``center`` (always the centred square) or ``none`` (resize the whole image).

    Raises:
        ConfigError: invalid ``crop_size`` or ``crop``.
    """

    def __init__(self, crop_size: int, aligner: Optional[Aligner] = None, crop: str = "auto") -> None:
        if crop_size <= 0:
            raise ConfigError(f"crop_size must be positive, got {crop_size}")
        if crop not in CROP_MODES:
            raise ConfigError(f"unknown crop mode {crop!r}; expected one of {CROP_MODES}")
        self.crop_size = crop_size
        self.aligner = aligner
        self.crop = crop

    def __repr__(self) -> str:
        aligner = getattr(self.aligner, "__name__", type(self.aligner).__name__) if self.aligner else None
        return f"FaceLoader(crop_size={self.crop_size}, aligner={aligner}, crop={self.crop!r})"

    def load(self, path: Union[str, Path]) -> np.ndarray:
        """Read ``path`` and return its face crop (gray HxW or BGR HxWx3, as stored; 16-bit is scaled to 8).

        Raises:
            hsst.core.errors.ImageReadError: the file is missing or cannot be decoded.
            hsst.core.errors.InputError: the aligner returned a crop of the wrong size.
        """
        return self.crop_image(to_uint8(read_image(path)), source=str(path))

    __call__ = load

    def crop_image(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """Face crop of an already decoded uint8 image."""
        size = self.crop_size
        if image.shape[:2] == (size, size):
            return image
        if self.aligner is not None:
            crop = self.aligner(image)
            if not isinstance(crop, np.ndarray) or crop.shape[:2] != (size, size):
                shape = getattr(crop, "shape", type(crop).__name__)
                raise InputError(f"aligner {self.aligner!r} returned {shape} for {source}, expected a "
                                 f"{size}x{size} crop")
            return to_uint8(crop)
        return _resize(self._fallback_box(image), size)

    def _fallback_box(self, image: np.ndarray) -> np.ndarray:
        if self.crop == "none":
            return image
        if self.crop == "auto" and image.shape[:2] == LFW_SIZE:
            x, y, side = LFW_FACE_BOX
            return image[y:y + side, x:x + side]
        return center_square(image)
