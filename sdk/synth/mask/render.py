"""Render a textured mesh back into the image: per-triangle texture mapping with depth order.

A small rasteriser: back faces are culled by their on-screen orientation, the remaining triangles are drawn
far to near (painter's algorithm, by mean depth) into a triangle-id buffer with ``cv2.fillConvexPoly``
(sub-pixel vertices), then every pixel of a textured triangle gets its barycentric coordinates, from which
texture coordinates and per-vertex attributes are interpolated and the texture sampled (``cv2.remap``).
Untextured triangles (the rest of the face) only occlude; their pixels keep the original image, which is
exactly the kept face texture :math:`\\hat{T}_I` rendered back at its own pose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

SUBPIXEL_BITS = 4


@dataclass
class RenderMesh:
    """Geometry to rasterise.

    Attributes:
        xy: (N, 2) float image coordinates of the vertices.
        z: (N,) depth (larger is farther from the camera).
        uv: (N, 2) texture pixel coordinates.
        shade: (N,) per-vertex factor interpolated over textured pixels (geometric shading).
        triangles: (T, 3) vertex ids, positive signed area (x right, y down) when facing the camera.
        textured: (T,) bool: drawn with the texture (True) or occluder only (False).
    """

    xy: np.ndarray
    z: np.ndarray
    uv: np.ndarray
    shade: np.ndarray
    triangles: np.ndarray
    textured: np.ndarray


@dataclass
class Raster:
    """Result of :func:`rasterize` over a region of interest.

    Attributes:
        origin: (x0, y0) of the region in the image.
        ids: (h, w) int32 triangle id per pixel, -1 where none.
        textured: (h, w) bool: pixel shows a textured triangle.
        map_x, map_y: (h, w) float32 texture coordinates (-1 outside textured pixels), for ``cv2.remap``.
        shade: (h, w) float32 interpolated per-vertex shade (1 outside).
    """

    origin: Tuple[int, int]
    ids: np.ndarray
    textured: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    shade: np.ndarray

    @property
    def slices(self) -> Tuple[slice, slice]:
        """(rows, cols) slices of the region in the full image."""
        h, w = self.ids.shape
        x0, y0 = self.origin
        return slice(y0, y0 + h), slice(x0, x0 + w)


def signed_areas(xy: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle (positive: counter-clockwise as seen with y down... i.e. the
    orientation of the canonical frontal mesh)."""
    a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])


def rasterize(mesh: RenderMesh, image_size: Tuple[int, int], margin: int = 2) -> Optional[Raster]:
    """Rasterise ``mesh`` over the bounding box of its textured, visible triangles.

    Args:
        mesh: the geometry.
        image_size: (width, height) of the target image.
        margin: extra pixels around the box.

    Returns:
        The raster, or None when no textured triangle is visible inside the image.
    """
    width, height = image_size
    xy = np.asarray(mesh.xy, dtype=np.float64)
    tris = np.asarray(mesh.triangles, dtype=np.int64)
    area = signed_areas(xy, tris)
    visible = area > 1e-3                     # back faces and degenerate triangles are culled
    if not np.any(visible & mesh.textured):
        return None
    tex_pts = xy[tris[visible & mesh.textured].ravel()]
    x0 = int(max(0, np.floor(tex_pts[:, 0].min()) - margin))
    y0 = int(max(0, np.floor(tex_pts[:, 1].min()) - margin))
    x1 = int(min(width, np.ceil(tex_pts[:, 0].max()) + margin + 1))
    y1 = int(min(height, np.ceil(tex_pts[:, 1].max()) + margin + 1))
    if x1 <= x0 or y1 <= y0:
        return None
    h, w = y1 - y0, x1 - x0
    # keep only triangles that touch the region; draw far to near
    tri_xy = xy[tris]                                               # (T, 3, 2)
    lo, hi = tri_xy.min(1), tri_xy.max(1)
    touches = (hi[:, 0] >= x0) & (lo[:, 0] < x1) & (hi[:, 1] >= y0) & (lo[:, 1] < y1)
    order = np.flatnonzero(visible & touches)
    order = order[np.argsort(-mesh.z[tris[order]].mean(1), kind="stable")]
    ids = np.full((h, w), -1, np.int32)
    fixed = np.round((tri_xy - np.float64([x0, y0])) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    for t in order:
        cv2.fillConvexPoly(ids, fixed[t], int(t), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    map_x = np.full((h, w), -1.0, np.float32)
    map_y = np.full((h, w), -1.0, np.float32)
    shade = np.ones((h, w), np.float32)
    textured = np.zeros((h, w), bool)
    valid = ids >= 0
    textured[valid] = mesh.textured[ids[valid]]
    rows, cols = np.nonzero(textured)
    if rows.size:
        t = ids[rows, cols]
        a, b, c = tri_xy[t, 0], tri_xy[t, 1], tri_xy[t, 2]
        px = np.stack([cols + x0, rows + y0], axis=1).astype(np.float64)
        e1, e2, d = b - a, c - a, px - a
        det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
        l1 = (d[:, 0] * e2[:, 1] - e2[:, 0] * d[:, 1]) / det
        l2 = (e1[:, 0] * d[:, 1] - d[:, 0] * e1[:, 1]) / det
        l0 = 1.0 - l1 - l2
        vid = tris[t]
        uv = (l0[:, None] * mesh.uv[vid[:, 0]] + l1[:, None] * mesh.uv[vid[:, 1]]
              + l2[:, None] * mesh.uv[vid[:, 2]])
        map_x[rows, cols] = uv[:, 0]
        map_y[rows, cols] = uv[:, 1]
        shade[rows, cols] = (l0 * mesh.shade[vid[:, 0]] + l1 * mesh.shade[vid[:, 1]]
                             + l2 * mesh.shade[vid[:, 2]])
    return Raster((x0, y0), ids, textured, map_x, map_y, shade)


def sample(texture: np.ndarray, raster: Raster) -> np.ndarray:
    """Texture values at the raster's texture coordinates (zeros outside textured pixels)."""
    return cv2.remap(texture, raster.map_x, raster.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def vertex_normals_z(xyz: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-vertex unit normal's component towards the camera (1: facing it, 0: edge-on), area weighted."""
    a, b, c = xyz[triangles[:, 0]], xyz[triangles[:, 1]], xyz[triangles[:, 2]]
    n = np.cross(b - a, c - a)
    acc = np.zeros_like(xyz)
    for k in range(3):
        np.add.at(acc, triangles[:, k], n)
    acc /= np.linalg.norm(acc, axis=1, keepdims=True) + 1e-12
    # a front-facing triangle (positive signed area, y down) has a normal with negative z (towards camera)
    return np.clip(-acc[:, 2], 0.0, 1.0)


def fit_shading(lum: np.ndarray, mask: np.ndarray, max_samples: int = 1200,
                rng: Optional[np.random.Generator] = None) -> Optional[np.ndarray]:
    """Smooth illumination field over an image region: a robust quadratic fit of log luminance.

    Dark details of the skin under the mask (nostrils, lips, beard) are outliers to a smooth light field and
    are down-weighted (two reweighting passes), so the mask receives the light, not the features.

    Args:
        lum: (h, w) float32 luminance (> 0).
        mask: (h, w) bool pixels to fit on.
        max_samples: pixels used for the fit (evenly strided).
        rng: unused (the sampling is deterministic); kept for API symmetry.

    Returns:
        (h, w) float32 fitted luminance, or None when too few pixels.
    """
    rows, cols = np.nonzero(mask)
    if rows.size < 20:
        return None
    step = max(1, rows.size // max_samples)
    rows, cols = rows[::step], cols[::step]
    h, w = lum.shape
    sx, sy = 2.0 / max(w, 1), 2.0 / max(h, 1)

    def design(x, y):
        x, y = x * sx - 1.0, y * sy - 1.0
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)

    a = design(cols.astype(np.float64), rows.astype(np.float64))
    target = np.log(np.maximum(lum[rows, cols].astype(np.float64), 1.0))
    weights = np.ones_like(target)
    coef = None
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a * weights[:, None], target * weights, rcond=None)
        resid = target - a @ coef
        scale = 1.4826 * np.median(np.abs(resid)) + 1e-3
        weights = 1.0 / np.maximum(1.0, np.abs(resid) / (2.0 * scale))   # Huber weights
    x = (np.arange(w, dtype=np.float64) * sx - 1.0)[None, :]
    y = (np.arange(h, dtype=np.float64) * sy - 1.0)[:, None]
    field = coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * x + coef[4] * x * y + coef[5] * y * y
    return np.exp(field).astype(np.float32)
