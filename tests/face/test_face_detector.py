"""Detectors on real faces: colour, gray, 16-bit, simulated NIR, several faces, 60 px to frame-filling,
and bad input (corrupt file, 1x1, wrong shapes/dtypes, no face)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hsst.core.errors import ConfigError, ImageReadError, InputError
from hsst.core.image import read_image
from hsst.face.detector import FaceDetector


def _check(result, n=None):
    boxes, scores, kps = result
    assert boxes.dtype == scores.dtype == kps.dtype == np.float32
    assert boxes.shape == (len(scores), 4) and kps.shape == (len(scores), 5, 2)
    if n is not None:
        assert len(boxes) == n, f"expected {n} faces, got {len(boxes)}"
    return boxes, scores, kps


def _assert_face_layout(box, kps):
    """Landmarks inside the box in face order: eyes above nose above mouth, left before right."""
    x1, y1, x2, y2 = box
    assert (kps[:, 0] > x1 - 5).all() and (kps[:, 0] < x2 + 5).all()
    assert (kps[:, 1] > y1 - 5).all() and (kps[:, 1] < y2 + 5).all()
    le, re, nose, ml, mr = kps
    assert le[0] < re[0] and ml[0] < mr[0]
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])


@pytest.mark.parametrize("variant", ["bgr", "gray", "gray16", "gray1ch", "bgra"])
def test_lfw_faces_in_every_pixel_format(blazeface, lfw_faces, variant):
    for image in lfw_faces:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        frame = {"bgr": image, "gray": gray, "gray16": gray.astype(np.uint16) * 257, "gray1ch": gray[:, :, None],
                 "bgra": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)}[variant]
        boxes, scores, kps = _check(blazeface.detect(frame))
        assert len(boxes) >= 1
        centre = [(b[0] < 125 < b[2]) and (b[1] < 125 < b[3]) for b in boxes]
        assert any(centre), "the centred LFW face was not found"
        i = int(np.argmax(centre))
        assert scores[i] >= 0.5
        _assert_face_layout(boxes[i], kps[i])


def test_simulated_nir_faces(blazeface, lfw_faces):
    from hsst.synth.nir import simulate_nir

    found = sum(len(blazeface.detect(simulate_nir(img, seed))[0]) >= 1 for seed, img in enumerate(lfw_faces))
    assert found == len(lfw_faces)  # simulated NIR


def test_two_faces_in_one_gray_frame(blazeface, lfw_faces, paste):
    frame = np.full((480, 640), 70, np.uint8)
    frame, r1 = paste(frame, lfw_faces[0], 120, 40, 150)
    frame, r2 = paste(frame, lfw_faces[3], 150, 380, 100)
    boxes, _, kps = _check(blazeface.detect(frame), n=2)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for region in (r1, r2):
        inside = [(region[0] < cx < region[2]) and (region[1] < cy < region[3]) for cx, cy in centres]
        assert sum(inside) == 1
        _assert_face_layout(boxes[inside.index(True)], kps[inside.index(True)])


@pytest.mark.parametrize("side", [60, 90, 200])
def test_small_and_large_faces(blazeface, lfw_faces, paste, side):
    frame = np.full((480, 640), 90, np.uint8)
    size = int(side * 160 / 110)
    frame, _ = paste(frame, lfw_faces[4], side, (640 - size) // 2, (480 - size) // 2)
    boxes, _, kps = _check(blazeface.detect(frame), n=1)
    assert 0.6 * side < boxes[0, 2] - boxes[0, 0] < 1.6 * side
    _assert_face_layout(boxes[0], kps[0])


def test_frame_filling_face(blazeface, lfw_faces):
    face = cv2.cvtColor(lfw_faces[4][40:210, 40:210], cv2.COLOR_BGR2GRAY)   # face ~ 2/3 of the crop
    frame = cv2.copyMakeBorder(cv2.resize(face, (480, 480)), 0, 0, 80, 80, cv2.BORDER_CONSTANT, value=90)
    boxes, _, kps = _check(blazeface.detect(frame), n=1)
    assert boxes[0, 2] - boxes[0, 0] > 250
    _assert_face_layout(boxes[0], kps[0])


def test_sixteen_bit_single_channel_frame(blazeface, lfw_faces, paste):
    frame8 = np.full((480, 640), 60, np.uint8)
    frame8, _ = paste(frame8, lfw_faces[5], 140, 250, 150)
    frame16 = (frame8.astype(np.uint16) * 16 + 1000)  # a 12-bit sensor range in a 16-bit container
    boxes8, _, kps8 = _check(blazeface.detect(frame8), n=1)
    boxes16, _, kps16 = _check(blazeface.detect(frame16), n=1)
    assert np.abs(kps16 - kps8).max() < 3.0


@pytest.mark.parametrize("name", ["blazeface", "mtcnn"])
def test_no_face_blank_noise_and_tiny_frames(request, name):
    det = request.getfixturevalue(name)
    rng = np.random.default_rng(0)
    frames = [np.zeros((480, 640), np.uint8), np.full((480, 640, 3), 200, np.uint8),
              rng.integers(0, 256, (480, 640), dtype=np.uint8), np.zeros((1, 1), np.uint8),
              np.zeros((1, 1, 3), np.uint8), np.zeros((5, 300), np.uint16)]
    for frame in frames:
        _check(det.detect(frame), n=0)


def test_bad_input_is_a_clear_error(blazeface, tmp_path):
    for bad in (np.zeros((10, 10, 2), np.uint8), np.zeros((0, 10), np.uint8), np.zeros((10, 10), np.int32),
                np.zeros((2, 10, 10, 3), np.uint8)):
        with pytest.raises(InputError):
            blazeface.detect(bad)
    with pytest.raises(InputError, match="numpy array"):
        blazeface.detect([[0, 1], [2, 3]])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match="corrupt"):
        read_image(corrupt)


def test_mtcnn_baseline_agrees_with_blazeface(blazeface, mtcnn, lfw_faces):
    for image in lfw_faces[:3]:
        mb, ms, mk = _check(mtcnn.detect(image))
        bb, bs, bk = _check(blazeface.detect(image))
        assert len(mb) >= 1 and len(bb) >= 1
        i = int(np.argmin(np.linalg.norm((mb[:, :2] + mb[:, 2:]) / 2 - 125, axis=1)))
        j = int(np.argmin(np.linalg.norm((bb[:, :2] + bb[:, 2:]) / 2 - 125, axis=1)))
        _assert_face_layout(mb[i], mk[i])
        eye_dist = np.linalg.norm(bk[j, 1] - bk[j, 0])
        assert np.linalg.norm(mk[i] - bk[j], axis=1).max() < 0.35 * eye_dist


def test_face_detector_front(need_blazeface, need_mtcnn, lfw_faces):
    det = FaceDetector("auto", threads=1)
    assert det.name == "blazeface"
    assert len(det.detect(lfw_faces[0])[0]) >= 1
    assert FaceDetector("mtcnn", threads=1).name == "mtcnn"
    with pytest.raises(ConfigError, match="unknown detector"):
        FaceDetector("retinaface")
    with pytest.raises(ConfigError):
        FaceDetector("blazeface", det_thresh=1.5)
