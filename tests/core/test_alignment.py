import numpy as np
import pytest

from hsst.core.alignment import (TEMPLATE_112, align_face, estimate_alignment, reference_points,
                                 similarity_transform, transform_points)
from hsst.core.errors import InputError


def test_template_scales_to_144():
    np.testing.assert_allclose(reference_points(144), TEMPLATE_112 * 144 / 112)


def test_similarity_recovers_known_transform():
    angle, scale, shift = np.deg2rad(17.0), 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = TEMPLATE_112
    dst = src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("size", [112, 144])
def test_alignment_maps_exact_landmarks_onto_template(size):
    kps = TEMPLATE_112 * 2.3 + np.array([40.0, 25.0])
    matrix = estimate_alignment(kps, size)
    assert np.abs(transform_points(kps, matrix) - reference_points(size)).max() < 1e-6


def test_align_face_shape_and_dtype():
    image = np.random.default_rng(0).integers(0, 65535, (300, 280), dtype=np.uint16)
    crop = align_face(image, TEMPLATE_112 * 2 + 30, 144)
    assert crop.shape == (144, 144) and crop.dtype == np.uint16


def test_degenerate_landmarks_raise():
    with pytest.raises(InputError, match="degenerate"):
        estimate_alignment(np.ones((5, 2)), 112)
    with pytest.raises(InputError, match="5 landmarks"):
        estimate_alignment(np.ones((4, 2)), 112)
