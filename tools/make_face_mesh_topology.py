"""Regenerate the face mesh topology assets in sdk/assets/ (run once; the outputs are committed).

The MediaPipe face landmark model outputs 468 vertices but no triangle list. This script derives one:

1. run :class:`hsst.face.mesh.FaceMesh` on the first image of the first ``--num`` identity folders of a face
   dataset (LFW: faces are centred in 250x250 frames, so a fixed central box plus one refinement pass from
   the mesh itself needs no detector);
2. keep near-frontal, confident meshes (nose tip within ``--max-yaw`` eye distances of the eye midpoint,
   level eyes) and normalise each by a similarity transform that puts the eye centres at (-1, 0) and (1, 0);
3. average them into ``face_mesh_canonical.npy`` ((468, 3) float32, x right, y down, z away from camera);
4. Delaunay-triangulate the canonical x, y; keep triangles whose centroid lies inside the face oval and that
   are not slivers along the outline; orient all with positive signed area in image coordinates
   (x right, y down): ``face_mesh_triangles.npy`` ((T, 3) int16).

Only geometry is stored (a mean of landmark coordinates), no image content.

Usage:
    python tools/make_face_mesh_topology.py --data ../shared/datasets/lfw --num 300
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from hsst.samples import shared_dir
from hsst.core.alignment import similarity_transform
from hsst.core.image import read_image
from hsst.face.mesh import (FACE_OVAL, LEFT_EYE_CONTOUR, NOSE_TIP, RIGHT_EYE_CONTOUR, FaceMesh, MeshRoi,
                            mesh_keypoints)

logger = logging.getLogger("make_face_mesh_topology")
ASSETS = Path(__file__).resolve().parents[1] / "sdk" / "assets"


def frontal_meshes(data: Path, num: int, max_yaw: float) -> list:
    mesh = FaceMesh(threads=1)
    shapes = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir())[:num]:
        files = sorted(folder.iterdir())
        if not files:
            continue
        image = read_image(files[0])
        h, w = image.shape[:2]
        result = mesh.predict(image, box=[w * 0.3, h * 0.3, w * 0.7, h * 0.7])
        result = mesh.predict(image, roi=MeshRoi.from_vertices(result.vertices))
        if result.score < 0.9:
            continue
        kps = mesh_keypoints(result.vertices)
        eye_dist = np.linalg.norm(kps[1] - kps[0])
        yaw = abs(kps[2, 0] - (kps[0, 0] + kps[1, 0]) / 2) / eye_dist
        roll = abs(kps[1, 1] - kps[0, 1]) / eye_dist
        if yaw > max_yaw or roll > 0.1:
            continue
        matrix = similarity_transform(kps[:2], np.array([[-1.0, 0.0], [1.0, 0.0]]))
        scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
        v = result.vertices.astype(np.float64)
        xy = v[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        z = v[:, 2] * scale
        shapes.append(np.column_stack([xy, z - z.mean()]))
    return shapes


def triangulate(canonical: np.ndarray) -> np.ndarray:
    xy = canonical[:, :2]
    tri = Delaunay(xy).simplices
    oval = xy[list(FACE_OVAL)].astype(np.float32)
    on_oval = np.isin(tri, FACE_OVAL)
    keep = []
    for t, oval_flags in zip(tri, on_oval):
        a, b, c = xy[t]
        centroid = (a + b + c) / 3
        if cv2.pointPolygonTest(oval, (float(centroid[0]), float(centroid[1])), False) < 0:
            continue
        area = 0.5 * ((b - a)[0] * (c - a)[1] - (b - a)[1] * (c - a)[0])
        longest = max(np.linalg.norm(b - a), np.linalg.norm(c - b), np.linalg.norm(a - c))
        if oval_flags.all() and abs(area) < 0.02 * longest ** 2:
            continue  # a sliver spanning the outline
        keep.append(t if area > 0 else t[[0, 2, 1]])
    return np.array(keep, dtype=np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "datasets" / "lfw")
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--max-yaw", type=float, default=0.04)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shapes = frontal_meshes(args.data, args.num, args.max_yaw)
    if len(shapes) < 10:
        raise SystemExit(f"only {len(shapes)} frontal faces found in {args.data}; need >= 10")
    canonical = np.mean(shapes, axis=0)
    tris = triangulate(canonical)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "face_mesh_canonical.npy", canonical.astype(np.float32))
    np.save(args.out / "face_mesh_triangles.npy", tris)
    logger.info("%d frontal faces averaged; %d triangles over %d vertices -> %s", len(shapes), len(tris),
                len(np.unique(tris)), args.out)
    assert len(np.unique(tris)) == 468, "every vertex must belong to a triangle"
    assert NOSE_TIP in tris and set(LEFT_EYE_CONTOUR) | set(RIGHT_EYE_CONTOUR) <= set(np.unique(tris).tolist())


if __name__ == "__main__":
    main()
