"""Quality on real LFW faces: a blurred copy scores lower, small faces and turned heads fail the gate."""
import cv2
import numpy as np
import pytest

from hsst.core.alignment import TEMPLATE_112, align_face
from hsst.core.image import read_image
from hsst.runtime.config import QualityConfig
from hsst.runtime.quality import QualityAssessor, blur_score, pose_from_landmarks


@pytest.fixture(scope="module")
def lfw_faces(lfw_dir, finder):
    faces = []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:40]:
        image = read_image(sorted(person.glob("*.jpg"))[0])
        boxes, scores, kps = finder.detect(image)
        if len(boxes) == 1:
            faces.append((image, boxes[0], float(scores[0]), kps[0]))
        if len(faces) == 8:
            break
    assert len(faces) >= 5, "the detector found too few single faces in LFW"
    return faces


def test_blurred_copy_scores_lower(lfw_faces):
    assessor = QualityAssessor(QualityConfig())
    for image, box, score, kps in lfw_faces:
        sharp = assessor.assess(box, kps, score, align_face(image, kps, 112))
        blurred_img = cv2.GaussianBlur(image, (0, 0), 3.0)
        blurred = assessor.assess(box, kps, score, align_face(blurred_img, kps, 112))
        assert blurred.blur < 0.5 * sharp.blur
        assert blurred.score < sharp.score
        assert sharp.passed, sharp.reasons
        assert not blurred.passed and any("blurred" in r for r in blurred.reasons)


def test_small_face_and_low_score_fail(lfw_faces):
    image, box, score, kps = lfw_faces[0]
    small = cv2.resize(image, (60, 60), interpolation=cv2.INTER_AREA)
    s = 60 / image.shape[0]
    q = QualityAssessor(QualityConfig()).assess(box * s, kps * s, score, align_face(small, kps * s, 112))
    assert any("too small" in r for r in q.reasons)
    q = QualityAssessor(QualityConfig(min_det_score=0.99)).assess(box, kps, 0.5, align_face(image, kps, 112))
    assert any("detector score" in r for r in q.reasons)


def test_pose_from_landmarks():
    yaw, pitch, roll = pose_from_landmarks(TEMPLATE_112)
    assert abs(yaw) < 2 and abs(pitch) < 2 and abs(roll) < 1
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    yaw, pitch, roll = pose_from_landmarks(TEMPLATE_112 @ rot.T)
    assert abs(roll - 30) < 1 and abs(yaw) < 2
    turned = TEMPLATE_112.copy()
    turned[2, 0] = turned[1, 0] - 2  # nose next to the right eye: head turned far
    yaw, _, _ = pose_from_landmarks(turned)
    assert yaw > 50
    q = QualityAssessor().assess(np.array([0, 0, 112, 112]), turned, 0.9, np.full((112, 112), 128, np.uint8))
    assert any("turned" in r for r in q.reasons)


def test_blur_score_is_size_independent(lfw_faces):
    image, box, score, kps = lfw_faces[0]
    crop = align_face(image, kps, 112)
    big = align_face(image, kps, 224)
    assert blur_score(big) == pytest.approx(blur_score(crop), rel=0.5)
