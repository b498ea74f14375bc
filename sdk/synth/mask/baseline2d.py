"""2D-landmark mask pasting (MaskTheFace-style), kept only as the baseline the 3D method is measured against.

A flat frontal mask image (the same procedural template, rendered once on the frontal canonical mesh) is
warped onto the face by a homography fitted to six 2D landmarks (eye centres, nose tip, mouth corners,
chin). A plane cannot follow the face's depth: at yaw the far cheek is over-covered and the near side
under-covered, which is what the paper's 3D pipeline avoids.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.errors import InputError
from hsst.core.image import check_frame, to_uint8
from hsst.face.mesh import (CHIN, LEFT_EYE_CONTOUR, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP, RIGHT_EYE_CONTOUR,
                            canonical_vertices)
from hsst.synth.mask.render import rasterize, sample
from hsst.synth.mask.synthesizer import MASK_TYPES, MaskGeometryBuilder, MaskResult
from hsst.synth.mask.templates import TEXTURE_GRID, MaskStyle, albedo_at, get_template, render_texture, sample_style

#: Pixels per canonical unit of the flat template images.
FLAT_SCALE = 40.0


def six_landmarks(vertices: np.ndarray) -> np.ndarray:
    """(6, 2) eye centres, nose tip, mouth corners and chin of a mesh (what a 2D landmarker provides)."""
    v = np.asarray(vertices, dtype=np.float64)
    return np.stack([v[list(LEFT_EYE_CONTOUR), :2].mean(0), v[list(RIGHT_EYE_CONTOUR), :2].mean(0),
                     v[NOSE_TIP, :2], v[MOUTH_LEFT, :2], v[MOUTH_RIGHT, :2], v[CHIN, :2]])


class LandmarkMaskPaster:
    """Pastes a flat frontal mask image by a 6-point homography (the 2D baseline).

    Args:
        types: mask types to draw from.
        seed: seed used when :meth:`paste` gets no ``rng``.
    """

    def __init__(self, types: Sequence[str] = MASK_TYPES, seed: int = 0) -> None:
        self.templates = [get_template(t) for t in types]
        self.seed = seed
        self._builder = MaskGeometryBuilder()
        canon = canonical_vertices().astype(np.float64)
        self._offset = -canon[:, :2].min(0) + 1.5           # room for the extrusion
        self._anchors = six_landmarks(canon) * FLAT_SCALE + self._offset * FLAT_SCALE
        self._flat: Dict[Tuple, tuple] = {}

    def _flat_geometry(self, style: MaskStyle) -> Tuple[np.ndarray, np.ndarray, Tuple[np.ndarray, np.ndarray],
                                                         np.ndarray, np.ndarray, Tuple[int, int]]:
        """Per template (and valve): alpha, structure, painted pixels and their UV on the flat frontal image."""
        key = (style.mask_type, style.valve)
        if key not in self._flat:
            template = get_template(style.mask_type)
            canon = canonical_vertices().astype(np.float64)
            frontal = np.column_stack([(canon[:, :2] + self._offset) * FLAT_SCALE, canon[:, 2] * FLAT_SCALE])
            geom = self._builder.build(frontal, template, {"dv": 0.0, "standoff": 0.0, "extrude": 1.0})
            size = (int((canon[:, 0].max() + 2 * self._offset[0]) * FLAT_SCALE),
                    int((canon[:, 1].max() + 2 * self._offset[1]) * FLAT_SCALE))
            raster = rasterize(geom.mesh, size, margin=0)
            maps = sample(render_texture(style).maps, raster).astype(np.float32)
            a = maps[:, :, 1] / 255.0 * raster.textured
            rows, cols = raster.slices
            alpha = np.zeros((size[1], size[0]), np.float32)
            alpha[rows, cols] = a
            structure = np.zeros_like(alpha)
            structure[rows, cols] = maps[:, :, 0] / 127.0
            override = np.zeros_like(alpha)
            override[rows, cols] = maps[:, :, 2] / 255.0
            local = np.nonzero(a > 0)
            painted = (local[0] + rows.start, local[1] + cols.start)
            u = (raster.map_x[local] + 0.5) / TEXTURE_GRID.ppu + TEXTURE_GRID.u0
            v = (raster.map_y[local] + 0.5) / TEXTURE_GRID.ppu + TEXTURE_GRID.v0
            self._flat[key] = (alpha, structure, painted, u, v, override[painted])
        return self._flat[key]

    def flat_mask(self, style: MaskStyle) -> Tuple[np.ndarray, np.ndarray]:
        """Flat frontal mask image of ``style``: (H, W, 3) float32 colour in [0, 1] and (H, W) float32 alpha."""
        alpha, structure, painted, u, v, override = self._flat_geometry(style)
        albedo, _ = albedo_at(u, v, style, override)
        colour = np.zeros(alpha.shape + (3,), np.float32)
        colour[painted] = albedo * structure[painted][:, None]
        return colour, alpha

    def paste(self, image: np.ndarray, vertices: Optional[np.ndarray] = None, landmarks: Optional[np.ndarray] = None,
              rng: Optional[np.random.Generator] = None, mask_type: Optional[str] = None) -> MaskResult:
        """Paste a mask using six landmarks (given, or taken from a mesh's 2D vertices).

        Args:
            image: BGR or gray uint8 frame.
            vertices: (468, 3) mesh of the face (only its 2D landmarks are used).
            landmarks: (6, 2) landmarks in the order of :func:`six_landmarks` (instead of ``vertices``).
            rng: random generator (default: seeded with ``seed``).
            mask_type: force a type.
        """
        check_frame(image)
        img = to_uint8(image)
        if landmarks is None:
            if vertices is None:
                raise InputError("LandmarkMaskPaster.paste needs vertices (468, 3) or landmarks (6, 2)")
            landmarks = six_landmarks(vertices)
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.shape != (6, 2):
            raise InputError(f"landmarks must have shape (6, 2), got {landmarks.shape}")
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        template = get_template(mask_type) if mask_type else self.templates[int(rng.integers(len(self.templates)))]
        style = sample_style(template, rng)
        colour, alpha = self.flat_mask(style)
        h, w = img.shape[:2]
        homography, _ = cv2.findHomography(self._anchors, landmarks, 0)
        if homography is None:
            raise InputError("landmarks are degenerate; cannot fit a homography")
        warped = cv2.warpPerspective(colour, homography, (w, h), flags=cv2.INTER_LINEAR)
        a = cv2.warpPerspective(alpha, homography, (w, h), flags=cv2.INTER_LINEAR)
        base = img.astype(np.float32)
        exposure = float(np.clip(np.mean(base) / 120.0, 0.5, 1.2))
        fabric = warped * 255.0 * exposure
        if base.ndim == 2:
            fabric = style.nir_reflectance * np.median(base) * cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY) / \
                max(float(np.median(warped[a > 0.5])) if (a > 0.5).any() else 1.0, 1e-3)
            out = base * (1 - a) + fabric * a
        else:
            out = base * (1 - a[:, :, None]) + fabric * a[:, :, None]
        result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        params = {"style": style.to_dict(), "method": "2d-homography-6pt"}
        return MaskResult(result, template.name, params, a > 0.5, landmarks[:5].astype(np.float32),
                          None if vertices is None else np.asarray(vertices, np.float32))
