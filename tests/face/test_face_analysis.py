"""FaceAnalysis (insightface-shaped): detect + align + recognizer hook; alignment accuracy on real faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hsst.core.alignment import estimate_alignment, reference_points, transform_points
from hsst.core.errors import ConfigError, ModelError
from hsst.face import Face, FaceAnalysis


class HistogramRecognizer:
    """A real (if weak) embedding: the normalised intensity histogram of the aligned crop."""

    def embed(self, crops):
        return np.stack([np.histogram(c, bins=16, range=(0, 256))[0].astype(np.float32) for c in crops])


@pytest.fixture(scope="module")
def app(need_blazeface):
    return FaceAnalysis(crop_size=112, with_mesh=True).prepare(ctx_id=-1, det_thresh=0.5)


def test_get_returns_aligned_faces(app, lfw_faces):
    for image in lfw_faces[:3]:
        faces = app.get(image)
        assert faces and all(isinstance(f, Face) for f in faces)
        face = faces[0]
        assert face.bbox.shape == (4,) and face.kps.shape == (5, 2) and 0.5 <= face.det_score <= 1
        assert face.aligned.shape == (112, 112, 3) and face.aligned.dtype == np.uint8
        assert face.mesh.shape == (468, 3)
        assert face.embedding is None and face.normed_embedding is None
        assert face["bbox"] is face.bbox


def test_aligned_landmarks_are_on_the_template_geometry(app, lfw_faces):
    """Landmarks placed exactly in template geometry on a real face land on the template within 1 px."""
    image = lfw_faces[0]
    face = app.get(image)[0]
    matrix = estimate_alignment(face.kps, 112)
    inverse = cv2.invertAffineTransform(matrix)
    kps_exact = transform_points(reference_points(112), inverse)    # template shape on the real face
    assert np.linalg.norm(kps_exact - face.kps, axis=1).max() < 12  # (real landmarks differ by a few px)
    aligned = transform_points(kps_exact, estimate_alignment(kps_exact, 112))
    assert np.abs(aligned - reference_points(112)).max() < 1.0


def test_alignment_is_consistent_across_views(app, lfw_faces):
    """The same face rotated 10 deg, scaled 1.3 and shifted aligns to the same crop positions (<= 1 px mean)."""
    errors = []
    for image in lfw_faces:
        kps = app.get(image)[0].kps
        warp = cv2.getRotationMatrix2D((125, 125), 10, 1.3)
        warp[:, 2] += (30, 20)
        faces = app.get(cv2.warpAffine(image, warp, (320, 320)))
        moved = transform_points(kps, warp)
        kps2 = min(faces, key=lambda f: np.abs(f.kps - moved).mean()).kps
        a = transform_points(kps, estimate_alignment(kps, 112))
        b = transform_points(kps2, estimate_alignment(kps2, 112))
        errors.append(np.linalg.norm(a - b, axis=1).mean())
    assert np.mean(errors) < 1.0 and max(errors) < 1.5, errors


def test_recognizer_hook_and_max_num(need_blazeface, lfw_faces, paste):
    app = FaceAnalysis(crop_size=144, recognizer=HistogramRecognizer()).prepare()
    frame = np.full((480, 640), 80, np.uint8)
    frame, _ = paste(frame, lfw_faces[0], 100, 40, 150)
    frame, _ = paste(frame, lfw_faces[1], 170, 330, 90)
    faces = app.get(frame)
    assert len(faces) == 2
    assert all(f.aligned.shape == (144, 144) and f.embedding.shape == (16,) for f in faces)
    assert all(abs(np.linalg.norm(f.normed_embedding) - 1) < 1e-5 for f in faces)
    largest = app.get(frame, max_num=1)
    assert len(largest) == 1 and largest[0].area == max(f.area for f in faces)


def test_det_size_downscales_large_frames(need_blazeface, lfw_faces):
    app = FaceAnalysis().prepare(det_size=(320, 320))
    big = cv2.resize(lfw_faces[2], (1000, 1000))
    face = app.get(big)[0]
    assert 250 < face.bbox[2] - face.bbox[0] < 700  # mapped back to the full frame
    assert face.aligned.shape == (112, 112, 3)


def test_misuse_is_reported():
    with pytest.raises(ConfigError):
        FaceAnalysis(recognizer=object())
    with pytest.raises(ModelError, match="prepare"):
        FaceAnalysis().get(np.zeros((50, 50), np.uint8))
    assert FaceAnalysis(detector="mtcnn")._detector_spec == "mtcnn"
