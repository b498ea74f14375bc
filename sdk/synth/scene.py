"""Synthetic gate scenes: people from identity photos walking into a 640x480 NIR camera view.

Each photo becomes the probe a gate camera would see (3D-synthesised mask, **simulated NIR**), and people
enter, stand and leave along lanes; the ground-truth face boxes are kept per frame. Used by the runtime's
end-to-end test and ``bench/bench_gate.py``; useful to try a gate configuration without a camera.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.boxes import iou_matrix
from hsst.core.errors import DatasetError, HsstError
from hsst.core.image import IMAGE_SUFFIXES, read_image


def identity_photos(root: Path, min_images: int, count: int, skip: int = 0,
                    identities: Optional[Sequence[str]] = None) -> List[Tuple[str, List[Path]]]:
    """``count`` identities of an identity-folder dataset with at least ``min_images`` photos (sorted order).

    ``identities`` restricts the choice to those names (for example a test split no model was trained on).
    """
    people = []
    allowed = set(identities) if identities is not None else None
    for person in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        if allowed is not None and person.name not in allowed:
            continue
        files = sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) >= min_images:
            people.append((person.name, files))
    if len(people) < skip + count:
        raise DatasetError(f"{root} has fewer than {skip + count} identities with {min_images}+ photos")
    return people[skip:skip + count]


@dataclass
class Appearance:
    """One person walking through the scene."""

    identity: str
    photo: Path
    start: int
    enter: int = 10
    stand: int = 24
    leave: int = 10
    lane: int = 0
    boxes: Dict[int, Tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.enter + self.stand + self.leave


@dataclass
class Scene:
    """A rendered gate video and its ground truth."""

    path: Path
    frames: int
    appearances: List[Appearance]
    size: Tuple[int, int]

    def who_at(self, frame: int, bbox: Sequence[float]) -> Optional[Appearance]:
        """The appearance whose face box at ``frame`` overlaps ``bbox`` most (IoU >= 0.2)."""

        best, best_iou = None, 0.2
        for app in self.appearances:
            for f in (frame, frame - 1, frame + 1):
                if f in app.boxes:
                    iou = float(iou_matrix(np.array([app.boxes[f]]), np.array([bbox]))[0, 0])
                    if iou > best_iou:
                        best, best_iou = app, iou
        return best


class SceneBuilder:
    """Renders people (LFW photos -> optional mask -> simulated NIR) sliding into a 640x480 gray scene.

    Each person enters from the left (or right) edge, stands in a lane, and leaves. The face photo is the whole
    250x250 LFW image scaled to ``photo_px`` so the face is about 45 % of it.
    """

    def __init__(self, size: Tuple[int, int] = (640, 480), photo_px: int = 220, seed: int = 0,
                 nir: bool = True, masks: bool = True) -> None:
        self.size = size
        self.photo_px = photo_px
        self.rng = np.random.default_rng(seed)
        self.nir = nir
        self.masker = None
        if masks:
            try:
                from hsst.synth.mask import MaskSynthesizer

                self.masker = MaskSynthesizer(types=("surgical", "kn95", "cloth"), seed=seed)
            except ImportError:
                self.masker = None
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        self.background = (40 + 30 * xx / w + 10 * np.sin(yy / 23.0)).astype(np.uint8)
        self.masked = 0
        self._faces: Dict[Path, np.ndarray] = {}
        self._masked: set = set()

    def face_image(self, photo: Path) -> np.ndarray:
        """The person's probe as it reaches the camera: masked when possible, simulated NIR, gray uint8
        (drawn once per photo: every appearance of a photo looks the same)."""
        if photo not in self._faces:
            self._faces[photo] = self._make_face(photo)
        return self._faces[photo]

    def _make_face(self, photo: Path) -> np.ndarray:
        bgr = read_image(photo)
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if self.masker is not None:
            result = self.masker.synthesize(bgr, self.rng, nir=self.nir)
            if result is not None:
                bgr = result.image
                self._masked.add(photo)
        if self.nir:
            from hsst.synth.nir import simulate_nir

            gray = simulate_nir(bgr, self.rng)
        else:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        return cv2.resize(gray, (self.photo_px, self.photo_px), interpolation=cv2.INTER_AREA)

    def render(self, appearances: List[Appearance], path: Path, fps: float = 15.0) -> Scene:
        w, h = self.size
        frames = max(a.end for a in appearances) + 4
        faces = {id(a): self.face_image(a.photo) for a in appearances}
        self.masked = sum(1 for a in appearances if a.photo in self._masked)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), isColor=False)
        if not writer.isOpened():
            raise HsstError(f"this OpenCV build cannot write MJPG .avi files ({path})")
        p = self.photo_px
        lanes = [(w - p) // 2, 20, w - p - 20]
        for f in range(frames):
            frame = self.background.copy()
            for a in appearances:
                if not a.start <= f < a.end:
                    continue
                target = lanes[a.lane % len(lanes)]
                t = f - a.start
                from_left = a.lane != 2
                outside = -p if from_left else w
                if t < a.enter:
                    x = outside + (target - outside) * (t + 1) / a.enter
                elif t < a.enter + a.stand:
                    x = target + 2 * np.sin(t / 3.0)  # people sway a little while standing
                else:
                    x = target + (outside - target) * (t - a.enter - a.stand + 1) / a.leave
                x, y = int(round(x)), (h - p) // 2
                x0, x1 = max(x, 0), min(x + p, w)
                if x1 <= x0:
                    continue
                frame[y:y + p, x0:x1] = faces[id(a)][:, x0 - x:x1 - x]
                # LFW faces sit in the centre ~45 % of the photo
                a.boxes[f] = (x + 0.27 * p, y + 0.25 * p, x + 0.73 * p, y + 0.78 * p)
            writer.write(frame)
        writer.release()
        return Scene(path, frames, appearances, self.size)
