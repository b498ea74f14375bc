"""Face quality before embedding: size, sharpness, pose from the five landmarks, detector score.

Cheap measures only (a few hundred microseconds per face) so the gate can score every face of every frame
and embed the ones worth it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import cv2
import numpy as np

from hsst.core.alignment import TEMPLATE_112
from hsst.core.image import to_gray
from hsst.face.mask_check import MaskCheck
from hsst.runtime.config import QualityConfig

# Nose height between the eye line and the mouth line on the frontal template (0.49).
_T_EYES = (TEMPLATE_112[0, 1] + TEMPLATE_112[1, 1]) / 2
_T_MOUTH = (TEMPLATE_112[3, 1] + TEMPLATE_112[4, 1]) / 2
_FRONTAL_NOSE_T = float((TEMPLATE_112[2, 1] - _T_EYES) / (_T_MOUTH - _T_EYES))


@dataclass
class FaceQuality:
    """Quality measures of one face.

    Attributes:
        size: short side of the detection box in pixels.
        blur: variance of the Laplacian of the aligned gray crop (higher is sharper).
        yaw: estimated left/right turn in degrees (0 frontal).
        pitch: estimated up/down tilt in degrees (0 frontal).
        roll: in-plane rotation in degrees.
        det_score: detector confidence.
        score: overall 0..1 (product of the normalised measures), used to compare faces of one track.
        reasons: why the face fails the gate (empty when it passes).
    """

    size: float
    blur: float
    yaw: float
    pitch: float
    roll: float
    det_score: float
    score: float
    reasons: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"size": round(self.size, 1), "blur": round(self.blur, 1), "yaw": round(self.yaw, 1),
                "pitch": round(self.pitch, 1), "roll": round(self.roll, 1), "det_score": round(self.det_score, 3),
                "score": round(self.score, 3), "passed": self.passed, "reasons": list(self.reasons)}


def blur_score(crop: np.ndarray, size: int = 112) -> float:
    """Variance of the Laplacian of a face crop, measured at ``size`` px so values compare across crops."""
    gray = to_gray(crop)
    if gray.shape[0] != size or gray.shape[1] != size:
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def pose_from_landmarks(kps: np.ndarray) -> tuple:
    """(yaw, pitch, roll) in degrees estimated from 5 landmarks (eyes, nose, mouth corners).

    Roll is the eye-line angle; yaw from where the nose sits between the eyes; pitch from where it sits
    between the eye line and the mouth line, relative to the frontal template. Rough (+-10 degrees) but
    monotonic, which is what a quality gate needs.
    """
    p = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    le, re, nose, ml, mr = p
    dx, dy = re - le
    roll = math.degrees(math.atan2(dy, dx))
    # Undo roll around the eye centre so yaw/pitch are measured on an upright face.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    centre = (le + re) / 2
    q = (p - centre) @ rot.T
    le, re, nose, ml, mr = q
    eye_span = max(re[0] - le[0], 1e-6)
    r = (nose[0] - le[0]) / eye_span                          # 0.5 frontal
    yaw = math.degrees(math.asin(float(np.clip((r - 0.5) * 2.0, -1.0, 1.0))))
    mouth_y = (ml[1] + mr[1]) / 2
    t = nose[1] / max(mouth_y, 1e-6)                          # eyes at y=0 after centring
    pitch = math.degrees(math.asin(float(np.clip((t - _FRONTAL_NOSE_T) * 2.0, -1.0, 1.0))))
    return yaw, pitch, roll


class QualityAssessor:
    """Scores faces and applies the configured gate.

    Args:
        config: thresholds.
    """

    def __init__(self, config: Optional[QualityConfig] = None) -> None:
        self.config = config or QualityConfig()

    def assess(self, bbox: np.ndarray, kps: np.ndarray, det_score: float, crop: np.ndarray,
               presence: float = 1.0) -> FaceQuality:
        """Quality of one face.

        Args:
            bbox: x1, y1, x2, y2 in frame pixels.
            kps: (5, 2) landmarks.
            det_score: detector score.
            crop: the aligned crop (any size; blur is measured at 112 px).
            presence: face-presence score of the landmark model (rejects detector false positives).
        """
        cfg = self.config
        x1, y1, x2, y2 = [float(v) for v in np.asarray(bbox).reshape(-1)[:4]]
        size = max(0.0, min(x2 - x1, y2 - y1))
        blur = blur_score(crop)
        yaw, pitch, roll = pose_from_landmarks(kps)
        reasons = []
        if size < cfg.min_face_px:
            reasons.append(f"face too small ({size:.0f} px < {cfg.min_face_px:.0f} px)")
        if blur < cfg.min_blur:
            reasons.append(f"too blurred (sharpness {blur:.1f} < {cfg.min_blur:.1f})")
        if abs(yaw) > cfg.max_yaw_deg:
            reasons.append(f"head turned ({yaw:+.0f} deg yaw, limit {cfg.max_yaw_deg:.0f})")
        if abs(pitch) > cfg.max_pitch_deg:
            reasons.append(f"head tilted ({pitch:+.0f} deg pitch, limit {cfg.max_pitch_deg:.0f})")
        if abs(roll) > cfg.max_roll_deg:
            reasons.append(f"head rotated ({roll:+.0f} deg roll, limit {cfg.max_roll_deg:.0f})")
        if presence < cfg.min_landmark_score:
            reasons.append(f"landmarks unsure a face is there (presence {presence:.2f} < {cfg.min_landmark_score:.2f})")
        if det_score < cfg.min_det_score:
            reasons.append(f"low detector score ({det_score:.2f} < {cfg.min_det_score:.2f})")
        size_s = min(1.0, size / max(2.0 * cfg.min_face_px, 1.0))
        blur_s = min(1.0, blur / max(5.0 * cfg.min_blur, 1.0))
        pose_s = max(0.0, math.cos(math.radians(min(abs(yaw), 90.0))) * math.cos(math.radians(min(abs(pitch), 90.0))))
        score = float(np.clip(det_score, 0.0, 1.0) * size_s * blur_s * pose_s)
        return FaceQuality(size, blur, yaw, pitch, roll, float(det_score), score, reasons)


class EnrolmentCheck:
    """Checks an enrolment photo needs beyond the gate's: exposure, and no mask over the lower face.

    A template made from a dark, burnt-out or masked face matches that person badly forever after, so
    enrolment refuses such photos with the reason. All measures run on the aligned crop; the mask check is
    :class:`hsst.face.mask_check.MaskCheck` (HOG + logistic regression on the nose-to-chin region, colour and
    gray photos alike; its threshold refuses about 2% of unmasked validation crops, docs/MASKS.md).

    Args:
        min_brightness, max_brightness: accepted mean gray level of the crop (0..255).
        max_clipped: largest fraction of pixels at 0-5 or 250-255 (crushed shadows, blown highlights).
        mask_check: the classifier (default: the shipped weights, loaded on first use); its ``threshold``
            decides.
    """

    def __init__(self, min_brightness: float = 40.0, max_brightness: float = 215.0, max_clipped: float = 0.25,
                 mask_check: Optional[MaskCheck] = None) -> None:
        self.min_brightness, self.max_brightness = min_brightness, max_brightness
        self.max_clipped = max_clipped
        self._mask_check = mask_check

    @property
    def mask_check(self) -> MaskCheck:
        if self._mask_check is None:
            self._mask_check = MaskCheck.from_file()
        return self._mask_check

    def reasons(self, crop: np.ndarray) -> List[str]:
        """Why the aligned crop is unfit for enrolment (empty: fit)."""
        found = []
        gray = to_gray(crop)
        mean = float(gray.mean())
        clipped = float(np.mean((gray <= 5) | (gray >= 250)))
        if mean < self.min_brightness:
            found.append(f"under-exposed (mean level {mean:.0f} < {self.min_brightness:.0f}); add light")
        elif mean > self.max_brightness:
            found.append(f"over-exposed (mean level {mean:.0f} > {self.max_brightness:.0f}); reduce light")
        if clipped > self.max_clipped:
            found.append(f"{clipped:.0%} of the face is black or white (limit {self.max_clipped:.0%}); "
                         "avoid backlight and flash glare")
        covered = self.mask_check.probability(crop)
        if covered >= self.mask_check.threshold:
            found.append(f"the lower face looks covered (mask check {covered:.2f} >= "
                         f"{self.mask_check.threshold:.2f}); enrol a photo without a mask")
        return found
