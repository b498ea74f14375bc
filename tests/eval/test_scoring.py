import numpy as np
import pytest

from hsst.eval.metrics import cmc_curve, split_scores, threshold_at_far
from hsst.eval.scoring import identity_templates, score_all


def _normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_chunked_scoring_matches_dense_metrics():
    rng = np.random.default_rng(1)
    centers = _normed(rng.normal(size=(30, 16)))
    gallery_labels = np.repeat(np.arange(30), 2)
    gallery = _normed(centers[gallery_labels] + 0.4 * rng.normal(size=(60, 16))).astype(np.float32)
    probe_labels = rng.integers(0, 30, 200)
    probes = _normed(centers[probe_labels] + 0.6 * rng.normal(size=(200, 16))).astype(np.float32)
    summary = score_all(probes, probe_labels, gallery, gallery_labels, max_far=0.1, chunk=37)
    dense = probes.astype(np.float64) @ gallery.T.astype(np.float64)
    genuine, impostor = split_scores(dense, probe_labels, gallery_labels)
    np.testing.assert_allclose(np.sort(summary.genuine), np.sort(genuine), atol=1e-5)
    assert summary.impostor_count == impostor.size
    for far in (0.1, 0.01, 0.001):
        assert summary.threshold_at_far(far) == pytest.approx(threshold_at_far(impostor, far), abs=1e-5)
    np.testing.assert_allclose(summary.cmc, cmc_curve(dense, probe_labels, gallery_labels), atol=1e-12)


def test_identity_templates_are_normalised_means():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], np.float32)
    templates, ids = identity_templates(emb, np.array([7, 7, 9]))
    assert ids.tolist() == [7, 9]
    np.testing.assert_allclose(templates[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(templates[1], [1.0, 0.0])
