"""FaceLoader on real LFW and ORL images: crop sizes, pass-through, aligner hook, errors, the LFW face box."""
from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from hsst.core.alignment import reference_points
from hsst.core.errors import ConfigError, ImageReadError, InputError
from hsst.core.image import read_image
from hsst.data import FaceLoader


def _lfw_files(lfw_dir, n, seed=0):
    files = sorted(lfw_dir.glob("*/*.jpg"))
    random.Random(seed).shuffle(files)
    return files[:n]


def test_lfw_and_orl_crops(lfw_dir, orl_dir):
    loader = FaceLoader(112)
    lfw = loader.load(_lfw_files(lfw_dir, 1)[0])
    assert lfw.shape == (112, 112, 3) and lfw.dtype == np.uint8
    orl = loader.load(orl_dir / "s1" / "1.pgm")
    assert orl.shape == (112, 112) and orl.dtype == np.uint8
    # ORL (92x112) takes the centred 92x92 square.
    raw = read_image(orl_dir / "s1" / "1.pgm")
    expected = cv2.resize(raw[10:102], (112, 112), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(orl, expected)
    assert FaceLoader(144).load(orl_dir / "s2" / "3.pgm").shape == (144, 144)
    assert FaceLoader(112, crop="none").load(orl_dir / "s1" / "1.pgm").shape == (112, 112)


def test_lfw_box_puts_template_eyes_on_the_mean_face(lfw_dir):
    """Averaged over real LFW crops, the darkest spots near the template's eye points are the eyes."""
    loader = FaceLoader(112)
    mean = np.mean([cv2.cvtColor(loader.load(p), cv2.COLOR_BGR2GRAY).astype(np.float64)
                    for p in _lfw_files(lfw_dir, 150, seed=1)], axis=0)
    mean = cv2.GaussianBlur(mean, (0, 0), 1.5)
    for x, y in reference_points(112)[:2]:
        x0, y0 = int(round(x)) - 12, int(round(y)) - 12
        window = mean[y0:y0 + 25, x0:x0 + 25]
        dy, dx = np.unravel_index(window.argmin(), window.shape)
        assert abs(x0 + dx - x) <= 5 and abs(y0 + dy - y) <= 5, (x0 + dx, y0 + dy, x, y)


def test_pass_through_and_aligner(tmp_path, orl_dir):
    face = cv2.resize(read_image(orl_dir / "s3" / "2.pgm"), (112, 112))
    path = tmp_path / "aligned.png"
    cv2.imwrite(str(path), face)
    np.testing.assert_array_equal(FaceLoader(112).load(path), face)
    calls = []

    def aligner(image):
        calls.append(image.shape)
        return cv2.resize(image, (112, 112))

    out = FaceLoader(112, aligner=aligner).load(orl_dir / "s3" / "2.pgm")
    assert calls == [(112, 92)] and out.shape == (112, 112)
    FaceLoader(112, aligner=aligner).load(path)
    assert len(calls) == 1  # already at crop size: no alignment
    with pytest.raises(InputError, match="expected a 112x112 crop"):
        FaceLoader(112, aligner=lambda im: im).load(orl_dir / "s3" / "2.pgm")


def test_16bit_nir_frames_become_uint8(tmp_path, orl_dir):
    face = read_image(orl_dir / "s4" / "1.pgm").astype(np.uint16) * 64
    path = tmp_path / "nir16.png"
    cv2.imwrite(str(path), face)
    out = FaceLoader(112).load(path)
    assert out.dtype == np.uint8 and out.shape == (112, 112) and out.max() > 200


def test_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(ImageReadError, match="cannot decode"):
        FaceLoader(112).load(bad)
    with pytest.raises(ImageReadError, match="not found"):
        FaceLoader(112).load(tmp_path / "missing.jpg")
    with pytest.raises(ConfigError, match="crop mode"):
        FaceLoader(112, crop="face")
    with pytest.raises(ConfigError, match="crop_size"):
        FaceLoader(0)
