"""Is the lower face covered? A linear classifier on HOG features of the aligned crop (numpy + OpenCV).

Enrolment refuses a masked photo: a template made from it matches its owner badly forever after. The check
reads the 112 px aligned crop in gray (colour and NIR photos alike), describes the nose-to-chin region with a
histogram of oriented gradients (a mouth, lips and nostrils against the smooth fabric and the straight edges
of a mask) and scores it with logistic regression. The weights are trained by ``tools/train_mask_check.py``
on LFW crops with synthesized masks and shipped in ``hsst/assets/models/mask-check.npz`` with their
validation numbers (docs/MASKS.md, "Enrolment mask check").
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from hsst.core.errors import InputError, ModelError
from hsst.core.image import to_gray

#: The shipped weights.
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "models" / "mask-check.npz"
#: Crop side the features are computed at, and the region (x0, y0, x1, y1) they describe: nose to chin, cheek
#: to cheek on the 5-point template of hsst.core.alignment (eyes near row 52, mouth near row 92 of 112).
CROP = 112
REGION = (16, 48, 96, 112)


@dataclass(frozen=True)
class HogSpec:
    """The HOG layout over :data:`REGION`: square cells of ``cell`` px, unsigned orientation histograms of ``bins``
    bins (votes split between the two nearest bins), blocks of 2 x 2 cells at a one-cell stride, each
    L2-Hys normalised (Dalal and Triggs; OpenCV's ``HOGDescriptor`` defaults, which OpenCV 5 no longer ships)."""

    cell: int = 8
    bins: int = 9

    def features(self, gray: np.ndarray) -> np.ndarray:
        """HOG features (float32, 1-D) of a gray image whose sides are multiples of ``cell``."""
        image = gray.astype(np.float32)
        gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1)
        gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1)
        magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
        position = (angle % 180.0) * (self.bins / 180.0)
        low = np.floor(position).astype(np.int64)
        upper = position - low
        low %= self.bins
        rows, cols = image.shape[0] // self.cell, image.shape[1] // self.cell
        cell_index = (np.arange(image.shape[0]) // self.cell)[:, None] * cols + np.arange(image.shape[1]) // self.cell
        size = rows * cols * self.bins
        hist = (np.bincount((cell_index * self.bins + low).ravel(), (magnitude * (1 - upper)).ravel(), size)
                + np.bincount((cell_index * self.bins + (low + 1) % self.bins).ravel(), (magnitude * upper).ravel(),
                              size)).reshape(rows, cols, self.bins)
        blocks = np.concatenate([hist[:-1, :-1], hist[:-1, 1:], hist[1:, :-1], hist[1:, 1:]], axis=2)
        blocks = blocks.reshape(-1, 4 * self.bins)
        blocks = np.minimum(blocks / np.sqrt((blocks ** 2).sum(axis=1, keepdims=True) + 1e-6), 0.2)  # L2, clip
        blocks = blocks / np.sqrt((blocks ** 2).sum(axis=1, keepdims=True) + 1e-6)  # L2 again: L2-Hys
        return blocks.astype(np.float32).ravel()


def mask_features(crop: np.ndarray, spec: HogSpec = HogSpec()) -> np.ndarray:
    """HOG features (float32, 1-D) of an aligned face crop (square, gray or BGR, uint8)."""
    if not isinstance(crop, np.ndarray) or crop.ndim not in (2, 3) or crop.shape[0] != crop.shape[1] \
            or crop.dtype != np.uint8:
        raise InputError(f"mask check needs a square uint8 aligned crop, got "
                         f"{getattr(crop, 'shape', type(crop).__name__)} {getattr(crop, 'dtype', '')}")
    gray = to_gray(crop)
    if gray.shape[0] != CROP:
        gray = cv2.resize(gray, (CROP, CROP), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = REGION
    return spec.features(gray[y0:y1, x0:x1])


class MaskCheck:
    """Probability that the lower face of an aligned crop is covered (mask, scarf, hand).

    Args:
        weights: (F,) float32 weights over standardised features.
        bias: the intercept.
        mean, scale: feature standardisation (training set statistics).
        threshold: the probability from which a crop counts as masked (chosen on the validation split).
        info: what the weights came from (training data, validation numbers), for reports.
    """

    def __init__(self, weights: np.ndarray, bias: float, mean: np.ndarray, scale: np.ndarray,
                 threshold: float = 0.5, spec: HogSpec = HogSpec(), info: Optional[dict] = None) -> None:
        self.weights = np.asarray(weights, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)
        if not (self.weights.shape == self.mean.shape == self.scale.shape) or self.weights.ndim != 1:
            raise ModelError(f"mask check weights, mean and scale must be equal 1-D shapes, got "
                             f"{self.weights.shape}, {self.mean.shape}, {self.scale.shape}")
        self.bias = float(bias)
        self.threshold = float(threshold)
        self.spec = spec
        self.info = info or {}

    @classmethod
    def from_file(cls, path: Union[str, Path, None] = None) -> "MaskCheck":
        """Load weights written by :meth:`save` (default: the shipped ones)."""
        path = Path(path or DEFAULT_WEIGHTS)
        if not path.is_file():
            raise ModelError(f"mask check weights not found: {path}; train them with tools/train_mask_check.py "
                             "or reinstall hsst (they ship in hsst/assets/models)")
        try:
            with np.load(path, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                return cls(z["weights"], float(z["bias"]), z["mean"], z["scale"], float(z["threshold"]),
                           HogSpec(**info.get("hog", {})), info)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path} is not a mask check file ({exc}); re-train it with tools/train_mask_check.py")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the weights and ``info`` (JSON) to one ``.npz``."""
        path = Path(path)
        info = {**self.info, "hog": self.spec.__dict__}
        with open(path, "wb") as f:
            np.savez(f, weights=self.weights, bias=np.float32(self.bias), mean=self.mean, scale=self.scale,
                     threshold=np.float32(self.threshold), info=json.dumps(info, sort_keys=True))
        return path

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Probabilities of (N, F) features."""
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))

    def probability(self, crop: np.ndarray) -> float:
        """Probability that the aligned crop's lower face is covered."""
        features = mask_features(crop, self.spec)
        if features.shape != self.weights.shape:
            raise ModelError(f"mask check expects {self.weights.shape[0]} features, the crop gave "
                             f"{features.shape[0]}: weights and HOG layout disagree")
        return float(self.scores(features[None])[0])

    def is_masked(self, crop: np.ndarray) -> bool:
        return self.probability(crop) >= self.threshold
