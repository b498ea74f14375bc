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


# ------------------------------------------------------------------------------------------- hard light
def _gate_detector(normalize: str):
    """BlazeFace with the gate runtime's settings (firmware_configs/laptop-cpu.yaml)."""
    from hsst.face.detector import BlazeFaceDetector

    return BlazeFaceDetector(det_thresh=0.35, min_face=40, models="blazeface_short", threads=1, normalize=normalize)


@pytest.fixture(scope="module")
def gate_off(need_blazeface):
    return _gate_detector("off")


@pytest.fixture(scope="module")
def gate_retry(need_blazeface):
    return _gate_detector("retry")


def _centre_hits(boxes, size=250):
    c = size / 2
    return (boxes[:, 0] <= c) & (boxes[:, 2] >= c) & (boxes[:, 1] <= c) & (boxes[:, 3] >= c)


def test_contrast_normalizer():
    from hsst.face.detector import ContrastNormalizer

    norm = ContrastNormalizer()
    rng = np.random.default_rng(0)
    dim = np.clip(rng.normal(40, 4, (128, 128)), 0, 255).astype(np.uint8)  # under-exposed, low contrast
    out = norm(dim)
    assert out.shape == dim.shape and out.dtype == np.uint8
    assert out.std() > 2 * dim.std()
    bgr = norm(cv2.cvtColor(dim, cv2.COLOR_GRAY2BGR))
    assert bgr.shape == (128, 128, 3) and bgr.dtype == np.uint8
    # the highlight tone curve only runs on frames with burned-out pixels: it darkens the glow around them
    burned = np.clip(rng.normal(200, 10, (128, 128)), 0, 255).astype(np.uint8)
    burned[40:80, 40:80] = 255
    plain = ContrastNormalizer(highlight_gamma=1.0)
    assert norm(burned)[:30, :30].mean() < plain(burned)[:30, :30].mean() - 20
    assert np.array_equal(norm(dim), plain(dim))  # no burned-out pixels: CLAHE only
    with pytest.raises(ConfigError):
        ContrastNormalizer(clip_limit=0)
    with pytest.raises(ConfigError):
        ContrastNormalizer(highlight_gamma=0.5)


def test_normalize_option_is_validated(need_blazeface):
    from hsst.face.detector import BlazeFaceDetector

    det = BlazeFaceDetector(threads=1)
    assert det.normalize == "retry"  # the default
    assert [m.name for m in det.retry_models] == ["blazeface_short"]  # the cheap network retries
    with pytest.raises(ConfigError, match="retry_models"):
        BlazeFaceDetector(threads=1, models="blazeface_short", retry_models=["blazeface_full"])
    with pytest.raises(ConfigError, match="normalize"):
        BlazeFaceDetector(threads=1, normalize="sometimes")
    with pytest.raises(ConfigError, match="retry_below"):
        BlazeFaceDetector(threads=1, retry_below=1.5)


# An LFW face that BlazeFace with the gate's settings loses under simulated hard light and the retry on the
# contrast-normalised frame finds, with margin: the centred face scores 0.15 without the fix (a background
# face is found instead, below retry_below), 0.57 with it (searched over 400 LFW identities, 2 frame kinds
# and 4 conditions; see docs/DETECTION.md, "Hard light").
HARD_LIGHT_CASES = [
    # (LFW file, frame: gray or simulated NIR with seed 0, light condition with seed 0)
    ("Ariel_Sharon/Ariel_Sharon_0001.jpg", "nir", "over-2ev"),
]


@pytest.mark.parametrize("rel, kind, light", HARD_LIGHT_CASES)
def test_retry_finds_a_real_face_lost_under_hard_light(gate_off, gate_retry, lfw_dir, rel, kind, light):
    from hsst.core.image import to_gray
    from hsst.synth.lighting import apply_light
    from hsst.synth.nir import simulate_nir

    path = lfw_dir / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in the shared LFW copy at {lfw_dir}")
    image = read_image(path)
    frame = apply_light(to_gray(image) if kind == "gray" else simulate_nir(image, 0), light, 0)
    boxes, _, _ = gate_off.detect_boxes(frame)
    assert not _centre_hits(boxes).any(), "without the fix the face is lost (the case no longer shows the fix)"
    boxes, scores, kps = _check(gate_retry.detect(frame))
    assert _centre_hits(boxes).any(), "the retry on the normalised frame finds the face"
    assert scores[_centre_hits(boxes)].max() >= 0.35


def test_retry_keeps_what_the_first_pass_finds(gate_off, gate_retry, lfw_faces):
    from hsst.synth.lighting import apply_light

    for i, image in enumerate(lfw_faces):
        frame = apply_light(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), "hotspot", i)
        first, _, _ = gate_off.detect_boxes(frame)
        both, _, _ = gate_retry.detect_boxes(frame)
        for box in first:
            assert any(np.abs(b - box).max() < 1e-3 for b in both), "a first-pass face was replaced or dropped"


def test_gate_config_sets_the_detector_option(tmp_path, need_blazeface):
    from hsst.face.detector import NORMALIZE_MODES
    from hsst.runtime import config as gate_config
    from hsst.runtime.pipeline import create_face_finder

    assert gate_config.NORMALIZE_MODES == NORMALIZE_MODES
    path = tmp_path / "gate.yaml"
    path.write_text('detector:\n  variant: blazeface_short\n  normalize: "off"\n  retry_below: 0.4\n')
    cfg = gate_config.load_config(path).detector
    assert cfg.normalize == "off" and cfg.retry_below == 0.4
    det = create_face_finder(cfg).detector
    assert det.backend.normalize == "off" and det.backend.retry_below == 0.4
    assert gate_config.load_config().detector.normalize == "retry"  # the default
    path.write_text("detector:\n  normalize: sometimes\n")
    with pytest.raises(ConfigError, match="detector.normalize must be one of"):
        gate_config.load_config(path)
    path.write_text("detector:\n  normalize: off\n")  # YAML 1.1 reads a bare off as false
    with pytest.raises(ConfigError, match="quote the word"):
        gate_config.load_config(path)


def test_mtcnn_ignores_the_light_options(need_mtcnn, lfw_faces):
    det = FaceDetector("mtcnn", threads=1, normalize="retry", retry_below=0.5)
    assert det.name == "mtcnn" and len(det.detect(lfw_faces[0])[0]) >= 1
