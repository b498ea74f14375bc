"""468-point face mesh on real faces, its ROI geometry and the committed triangulation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hsst.core.errors import InputError
from hsst.face.mesh import (CHIN, FACE_OVAL, LEFT_EYE_CONTOUR, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP,
                            RIGHT_EYE_CONTOUR, MeshRoi, canonical_vertices, mesh_triangles)

LFW_BOX = [70, 70, 180, 180]  # LFW centres the face in the 250x250 frame


def test_mesh_lands_on_the_face(face_mesh, lfw_faces):
    for image in lfw_faces:
        result = face_mesh.predict(image, box=LFW_BOX)
        v = result.vertices
        assert v.shape == (468, 3) and v.dtype == np.float32 and result.score > 0.5
        le, re = v[list(LEFT_EYE_CONTOUR), :2].mean(0), v[list(RIGHT_EYE_CONTOUR), :2].mean(0)
        assert le[0] < v[NOSE_TIP, 0] < re[0]                             # image-left eye on the left
        assert max(le[1], re[1]) < v[NOSE_TIP, 1] < v[MOUTH_LEFT, 1] < v[CHIN, 1]
        assert v[MOUTH_LEFT, 0] < v[MOUTH_RIGHT, 0]
        eye_dist = np.linalg.norm(re - le)
        assert 25 < eye_dist < 70                                          # LFW eyes are ~40 px apart
        assert v[NOSE_TIP, 2] < np.median(v[:, 2])                        # nose tip is nearer the camera
        assert 0.3 * eye_dist < np.ptp(v[:, 2]) < 3 * eye_dist             # z in the scale of x


def test_mesh_on_gray_and_16bit_agrees_with_colour(face_mesh, lfw_faces):
    image = lfw_faces[0]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    ref = face_mesh.predict(image, box=LFW_BOX).vertices[:, :2]
    for variant in (gray, gray.astype(np.uint16) * 257, gray[:, :, None]):
        got = face_mesh.predict(variant, box=LFW_BOX).vertices[:, :2]
        assert np.median(np.linalg.norm(got - ref, axis=1)) < 2.0


def test_roi_round_trip_is_stable(face_mesh, lfw_faces):
    image = lfw_faces[1]
    first = face_mesh.predict(image, box=LFW_BOX)
    second = face_mesh.predict(image, roi=MeshRoi.from_vertices(first.vertices))
    assert np.median(np.linalg.norm(second.vertices[:, :2] - first.vertices[:, :2], axis=1)) < 2.0


def test_mesh_follows_a_rotated_face(face_mesh, lfw_faces):
    image = lfw_faces[2]
    ref = face_mesh.predict(image, box=LFW_BOX).vertices
    rot = cv2.getRotationMatrix2D((125, 125), 30, 1.0)
    rotated = cv2.warpAffine(image, rot, (250, 250))
    eyes = np.stack([ref[list(LEFT_EYE_CONTOUR), :2].mean(0), ref[list(RIGHT_EYE_CONTOUR), :2].mean(0)])
    eyes = eyes @ rot[:, :2].T + rot[:, 2]
    got = face_mesh.predict(rotated, box=LFW_BOX, eyes=eyes).vertices[:, :2]
    expected = ref[:, :2] @ rot[:, :2].T + rot[:, 2]
    assert np.median(np.linalg.norm(got - expected, axis=1)) < 2.5


def test_invalid_roi_and_frames_are_rejected(face_mesh):
    with pytest.raises(InputError, match="ROI"):
        face_mesh.predict(np.zeros((50, 50), np.uint8), roi=MeshRoi(10, 10, 0.0))
    with pytest.raises(InputError):
        face_mesh.predict(np.zeros((0, 5), np.uint8), box=[0, 0, 4, 4])


def test_triangulation_asset_is_a_consistent_surface():
    tris = mesh_triangles()
    canon = canonical_vertices()
    assert tris.ndim == 2 and tris.shape[1] == 3 and 800 <= len(tris) <= 950
    assert tris.min() == 0 and tris.max() == 467 and len(np.unique(tris)) == 468
    assert canon.shape == (468, 3)
    a, b, c = canon[tris[:, 0], :2], canon[tris[:, 1], :2], canon[tris[:, 2], :2]
    area = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert (area > 0).all()                             # one orientation in image coordinates
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 2                            # a 2-manifold: every edge borders at most 2 triangles
    oval = canon[list(FACE_OVAL), :2].astype(np.float32)
    centroids = (a + b + c) / 3
    assert all(cv2.pointPolygonTest(oval, (float(x), float(y)), False) >= 0 for x, y in centroids)


def test_face_mesh_exposes_triangles(face_mesh):
    assert face_mesh.triangles.shape == mesh_triangles().shape
