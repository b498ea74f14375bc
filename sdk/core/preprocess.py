"""Aligned crops -> network input tensor, exactly as the model metadata says.

The trainer feeds its tensors through this same function (via numpy), so training, evaluation, export
parity checks and the gate all see identical pixels.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from hsst.core.errors import InputError
from hsst.core.image import check_frame, to_bgr, to_gray
from hsst.core.metadata import Preprocess


def convert_color(crop: np.ndarray, color: str) -> np.ndarray:
    """Convert a gray or BGR crop to the colour mode ``gray``/``rgb``/``bgr`` (HxW or HxWx3 uint8)."""
    if color == "gray":
        return to_gray(crop)
    bgr = to_bgr(crop)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if color == "rgb" else bgr


def to_input(crops: Sequence[np.ndarray], pre: Preprocess) -> np.ndarray:
    """Stack aligned crops into a float32 NCHW batch.

    Args:
        crops: aligned crops of ``pre.crop_size`` (gray HxW or BGR HxWx3; uint8 or uint16).
        pre: the model's preprocessing.

    Returns:
        (N, C, S, S) float32 C-contiguous array.
    """
    if len(crops) == 0:
        raise InputError("no crops to preprocess")
    size = pre.crop_size
    batch = np.empty((len(crops), pre.channels, size, size), dtype=np.float32)
    for i, crop in enumerate(crops):
        check_frame(crop, f"crop {i}")
        if crop.shape[:2] != (size, size):
            raise InputError(f"crop {i} is {crop.shape[1]}x{crop.shape[0]}, the model expects {size}x{size}; "
                             "crop faces with hsst.face.FaceCropper.for_model(detector, meta.preprocess)")
        pixels = convert_color(crop, pre.color).astype(np.float32)
        if pixels.ndim == 2:
            batch[i, 0] = pixels
        else:
            batch[i] = pixels.transpose(2, 0, 1)
    batch -= np.float32(pre.mean)
    batch /= np.float32(pre.std)
    return batch


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)
