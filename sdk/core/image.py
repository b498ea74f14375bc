"""Image reading and pixel-format conversion shared by every component.

NIR cameras deliver single-channel frames, sometimes 16-bit; VIS photos are 8-bit BGR. These helpers read
any of them with clear errors and convert to what a model's :class:`~hsst.core.metadata.Preprocess` asks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

import cv2
import numpy as np

from hsst.core.errors import ImageReadError, InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def image_files(root: Union[str, Path]) -> List[Path]:
    """Image files under ``root``, recursively and following symlinked folders (split trees link identities)."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def read_image(path: Union[str, Path], min_side: int = 8) -> np.ndarray:
    """Read an image as stored: HxW (gray, 8 or 16 bit) or HxWx3 BGR (alpha dropped).

    Raises:
        ImageReadError: the file is missing, unreadable, not an image, or smaller than ``min_side``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"cannot decode image {path} ({data.size} bytes): corrupt or not an image file")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    image = squeeze_single_channel(image)
    if min(image.shape[:2]) < min_side:
        raise ImageReadError(f"image {path} is {image.shape[1]}x{image.shape[0]} px, smaller than {min_side} px")
    return image


_JPEG, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_PNG, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _looks_complete(path: Path, size: int) -> bool:
    """A cheap yes for the common formats: a JPEG, PNG or BMP that starts and ends as one does. No is no verdict."""
    with open(path, "rb") as fh:
        head = fh.read(16)
        fh.seek(max(0, size - 64))
        tail = fh.read()
    if head.startswith(_JPEG):
        return _JPEG_END in tail
    if head.startswith(_PNG):
        return tail.endswith(_PNG_END)
    return head.startswith(b"BM") and int.from_bytes(head[2:6], "little") == size


def image_problem(path: Union[str, Path]) -> Optional[str]:
    """Why :func:`read_image` would fail on ``path``, or None; cheap for complete JPEG / PNG / BMP files.

    Lets a dataset scan leave out corrupt, truncated and mislabelled files without decoding every image: only a
    file that does not look complete (or is of another format) is decoded to decide.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        if _looks_complete(path, size):
            return None
        read_image(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    except ImageReadError as exc:
        return str(exc)
    return None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Bring a frame to uint8: 16-bit NIR frames are scaled by their own range (robust 0.5/99.5 percentiles)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16 or np.issubdtype(image.dtype, np.floating):
        arr = image.astype(np.float32)
        lo, hi = np.percentile(arr, (0.5, 99.5))
        if hi <= lo:
            hi = lo + 1.0
        return np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    raise InputError(f"unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def check_frame(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate a frame passed to the API: HxW or HxWx{1,3,4}, non-empty, a supported dtype."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.size == 0 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"{name} must be HxW or HxWx(1|3|4) and non-empty, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{name} has unsupported dtype {image.dtype}; use uint8, uint16 or float32")
    return image


def squeeze_single_channel(image: np.ndarray) -> np.ndarray:
    """HxWx1 -> HxW (a view); any other shape unchanged.

    Mono cameras and decoders hand out either form; OpenCV and the models treat a 2-D array as gray.
    """
    return image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image


def to_gray_or_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 HxW gray or HxWx3 BGR of any supported frame, keeping gray gray (16-bit is range-scaled, alpha
    dropped)."""
    image = squeeze_single_channel(to_uint8(check_frame(image)))
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.ndim == 3 and image.shape[2] == 4 else image


def to_gray(image: np.ndarray) -> np.ndarray:
    """HxW uint8 luminance of any supported frame."""
    image = to_gray_or_bgr(image)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 BGR of any supported frame (gray is replicated)."""
    image = to_gray_or_bgr(image)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
