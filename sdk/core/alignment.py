"""The one 5-point alignment used everywhere: template, similarity fit, warp.

The standard template is the ArcFace 112x112 five-point layout (left eye, right eye, nose tip, left and
right mouth corner, in image coordinates of the *viewer*: "left eye" is the eye on the left of the image).
Other crop sizes scale it uniformly, so a 144x144 crop (the paper's size) sees the same face framing. A model
records the template it was trained with in its metadata (``Preprocess.template``); the gate aligns with that.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from hsst.core.errors import InputError

#: Five reference points for a 112x112 crop (x, y).
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def reference_points(crop_size: int) -> np.ndarray:
    """Template landmarks for a square crop of ``crop_size`` pixels.

    Args:
        crop_size: side of the aligned crop in pixels (112 and 144 are the sizes used by hsst).

    Returns:
        (5, 2) float64 array of template points.
    """
    if crop_size <= 0:
        raise InputError(f"crop_size must be positive, got {crop_size}")
    return TEMPLATE_112 * (crop_size / 112.0)


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 2:
        raise InputError(f"{name} must have shape (N>=2, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or inf: {arr.tolist()}")
    return arr


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping src to dst.

    Umeyama's closed form (IEEE TPAMI 1991), the estimator insightface and skimage use; no outlier
    rejection, because five detector landmarks have no outliers to reject.

    Args:
        src: (N, 2) source points, e.g. detected landmarks.
        dst: (N, 2) destination points, e.g. :func:`reference_points`.

    Returns:
        (2, 3) float64 affine matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    src = _check_points(src, "src")
    dst = _check_points(dst, "dst")
    if src.shape != dst.shape:
        raise InputError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_src = (src_c ** 2).sum() / n
    if var_src <= 1e-12:
        raise InputError("landmarks are degenerate (all points coincide); cannot align")
    scale = (s * d).sum() / var_src
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def estimate_alignment(kps: np.ndarray, crop_size: int = 112, template: Optional[np.ndarray] = None) -> np.ndarray:
    """Affine matrix that maps the 5 landmarks ``kps`` onto ``template`` (None: the standard one of ``crop_size``)."""
    kps = _check_points(kps, "kps")
    if kps.shape != (5, 2):
        raise InputError(f"alignment needs 5 landmarks of shape (5, 2), got {kps.shape}")
    return similarity_transform(kps, reference_points(crop_size) if template is None else template)


def align_face(image: np.ndarray, kps: np.ndarray, crop_size: int = 112,
               template: Optional[np.ndarray] = None) -> np.ndarray:
    """Warp ``image`` so that its landmarks ``kps`` land on the template.

    Args:
        image: HxW (gray) or HxWxC image, any dtype OpenCV can warp (uint8, uint16, float32).
        kps: (5, 2) landmarks in ``image`` coordinates, order of :data:`KEYPOINT_NAMES`.
        crop_size: side of the output crop.
        template: (5, 2) points for a ``crop_size`` crop, e.g. the model's ``Preprocess.template``
            (None: :func:`reference_points`).

    Returns:
        ``crop_size`` x ``crop_size`` crop with the channels and dtype of ``image``.
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise InputError(f"image must be a non-empty HxW or HxWxC array, got shape {image.shape}")
    matrix = estimate_alignment(kps, crop_size, template)
    return cv2.warpAffine(image, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine ``matrix`` to (N, 2) ``points``."""
    points = _check_points(points, "points")
    return points @ matrix[:, :2].T + matrix[:, 2]
