"""The UV space mask templates live in, and the pose that maps it onto a fitted face mesh.

The 468-vertex face mesh has a fixed topology, so (as PRNet's UV map does for the paper) every vertex gets one
texture coordinate, once: its ``x, y`` in the frontal canonical mesh (:func:`hsst.face.mesh.canonical_vertices`,
eye centres at (-1, 0) and (1, 0), y down; nose tip ~1.27, mouth ~2.07, chin ~3.48). A mask template is a
region plus a texture in that plane. A face seen at any pose is related to the canonical shape by a 3D
similarity (scale, rotation, translation), estimated here in closed form (Umeyama) from all 468 vertices.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from hsst.core.errors import InputError
from hsst.face.mesh import FACE_OVAL, NUM_VERTICES, canonical_vertices, mesh_triangles


def vertex_uv() -> np.ndarray:
    """(468, 2) float32 UV coordinate of every mesh vertex: the canonical frontal ``x, y``."""
    return np.ascontiguousarray(canonical_vertices()[:, :2], dtype=np.float32)


@dataclass
class FacePose:
    """3D similarity between the canonical mesh and a fitted mesh: ``vertices ~= scale * R @ canonical + t``.

    Attributes:
        rotation: (3, 3) rotation (det +1), image axes: x right, y down, z away from the camera.
        scale: image pixels per canonical unit (half the inter-ocular distance in pixels).
        translation: (3,) offset in image pixels.
        rms: root-mean-square fit residual in canonical units (expression and identity, not pose).
    """

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    rms: float

    @property
    def forward(self) -> np.ndarray:
        """Unit vector the face looks along, in image axes (frontal: (0, 0, -1), towards the camera)."""
        return self.rotation @ np.array([0.0, 0.0, -1.0])

    @property
    def yaw(self) -> float:
        """Degrees; positive when the face turns towards the image right (the viewer sees its left cheek)."""
        f = self.forward
        return math.degrees(math.atan2(f[0], -f[2]))

    @property
    def pitch(self) -> float:
        """Degrees; positive when the face looks up."""
        f = self.forward
        return math.degrees(math.atan2(-f[1], math.hypot(f[0], f[2])))

    @property
    def roll(self) -> float:
        """Degrees; in-plane rotation of the eye line (clockwise on screen is positive)."""
        return math.degrees(math.atan2(self.rotation[1, 0], self.rotation[0, 0]))

    def to_image(self, canonical_points: np.ndarray) -> np.ndarray:
        """Map (N, 3) canonical-frame points to image space (x, y pixels, z depth)."""
        return canonical_points @ (self.scale * self.rotation).T + self.translation

    def to_canonical(self, image_points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_image`: (N, 3) image-space points in the canonical frame (frontalised)."""
        return (image_points - self.translation) @ self.rotation / self.scale

    def direction_to_image(self, canonical_dirs: np.ndarray) -> np.ndarray:
        """Rotate and scale (N, 3) canonical-frame offsets into image space (no translation)."""
        return canonical_dirs @ (self.scale * self.rotation).T


def fit_pose(vertices: np.ndarray) -> FacePose:
    """Closed-form 3D similarity (Umeyama 1991) from the canonical mesh to ``vertices``.

    Args:
        vertices: (468, 3) fitted mesh, x, y in image pixels, z relative depth in the same scale.

    Raises:
        InputError: wrong shape, non-finite values or a degenerate mesh.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.shape != (NUM_VERTICES, 3):
        raise InputError(f"face mesh vertices must have shape ({NUM_VERTICES}, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError("face mesh vertices contain NaN or inf")
    c = canonical_vertices().astype(np.float64)
    c_mean, v_mean = c.mean(0), v.mean(0)
    cc, vc = c - c_mean, v - v_mean
    cov = vc.T @ cc / len(c)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_c = (cc ** 2).sum() / len(c)
    scale = float((s * d).sum() / var_c)
    if not scale > 1e-6:
        raise InputError("face mesh is degenerate (zero extent); cannot fit a pose")
    t = v_mean - scale * rot @ c_mean
    resid = (v - (c @ (scale * rot).T + t)) / scale
    return FacePose(rot, scale, t, float(np.sqrt((resid ** 2).sum(1).mean())))


def oval_outward_normals() -> Tuple[np.ndarray, np.ndarray]:
    """Face-oval vertex ids and their outward unit normals in the canonical x, y plane.

    Returns:
        ``(ids (K,), normals (K, 2))`` in the order of :data:`hsst.face.mesh.FACE_OVAL`.
    """
    ids = np.asarray(FACE_OVAL, dtype=np.int64)
    pts = canonical_vertices()[ids, :2].astype(np.float64)
    tangent = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    # the oval's orientation decides the sign: make the normals point away from the centroid
    if np.mean(((pts - pts.mean(0)) * normal).sum(1)) < 0:
        normal = -normal
    return ids, normal


def _boundary_path(tris: np.ndarray, start: int, goal: int) -> list:
    """Shortest path from ``start`` to ``goal`` along the mesh's boundary edges (edges of one triangle)."""
    count: dict = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            key = (min(e), max(e))
            count[key] = count.get(key, 0) + 1
    adjacency: dict = {}
    for (a, b), n in count.items():
        if n == 1:
            adjacency.setdefault(a, []).append(b)
            adjacency.setdefault(b, []).append(a)
    previous, frontier = {start: None}, [start]
    while frontier and goal not in previous:
        nxt = []
        for node in frontier:
            for other in adjacency.get(node, []):
                if other not in previous:
                    previous[other] = node
                    nxt.append(other)
        frontier = nxt
    if goal not in previous:
        return []
    path, node = [], goal
    while node is not None:
        path.append(node)
        node = previous[node]
    return path[::-1]


@functools.lru_cache(maxsize=1)
def closed_triangles() -> np.ndarray:
    """The mesh triangles plus the few that close it up to the face oval polyline.

    :func:`hsst.face.mesh.mesh_triangles` keeps Delaunay triangles whose centroid is inside the oval; a few mesh
    vertices lie just outside the oval, so along the jaw below the ear some oval edges are not mesh edges and
    notches open between the oval and the mesh, which would show as holes in a mask extruded from the oval.
    Each notch (the oval edge plus the mesh boundary path between its ends) is closed with a triangle fan.

    Returns:
        (T', 3) int64, oriented like the mesh (positive signed area in UV, y down).
    """
    tris = mesh_triangles().astype(np.int64)
    have = {(min(e), max(e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    oval = list(FACE_OVAL)
    extra = []
    for i in range(len(oval)):
        a, b = oval[i], oval[(i + 1) % len(oval)]
        if (min(a, b), max(a, b)) in have:
            continue
        path = _boundary_path(tris, a, b)
        extra += [(path[0], path[k], path[k + 1]) for k in range(1, len(path) - 1)]
    if not extra:
        return tris
    return np.vstack([tris, orient_like(tris, np.asarray(extra, np.int64))])


def orient_like(tris: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Orient ``new`` triangles consistently with the surface ``tris`` they attach to.

    Two triangles sharing an edge traverse it in opposite directions on an oriented surface. The sides of the
    face are folded in the frontal UV projection (the oval near the ears lies behind the cheek vertices), so
    the sign of a triangle's UV area cannot orient triangles there; adjacency can.

    Args:
        tris: (T, 3) oriented triangles.
        new: (K, 3) triangles each sharing at least one edge with ``tris`` or an earlier row of ``new``.
    """
    directed = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            directed[(int(e[0]), int(e[1]))] = True
    out = []
    pending = [tuple(int(v) for v in t) for t in new]
    for _ in range(len(pending) + 1):
        rest = []
        for a, b, c in pending:
            edges = ((a, b), (b, c), (c, a))
            if any(e in directed for e in edges):            # same direction as a neighbour: flip
                tri = (a, c, b)
            elif any((e[1], e[0]) in directed for e in edges):
                tri = (a, b, c)
            else:
                rest.append((a, b, c))
                continue
            out.append(tri)
            for e in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
                directed[e] = True
        if not rest:
            break
        pending = rest
    out += rest   # unattached (should not happen): keep as given
    return np.asarray(out, np.int64).reshape(-1, 3)
