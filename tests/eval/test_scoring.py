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


def test_unsorted_string_gallery_labels_match_dense_metrics():
    rng = np.random.default_rng(5)
    names = np.array([f"id{i:02d}" for i in range(12)])
    gallery_labels = rng.permutation(np.repeat(names, 3))
    gallery = _normed(rng.normal(size=(36, 8))).astype(np.float32)
    probe_labels = rng.choice(names, 50)
    probes = _normed(rng.normal(size=(50, 8))).astype(np.float32)
    summary = score_all(probes, probe_labels, gallery, gallery_labels, chunk=7)
    dense = probes.astype(np.float64) @ gallery.T.astype(np.float64)
    np.testing.assert_allclose(summary.cmc, cmc_curve(dense, probe_labels, gallery_labels), atol=1e-12)
    _, impostor = split_scores(dense, probe_labels, gallery_labels)
    assert summary.impostor_count == impostor.size == 50 * 33


def test_failed_probes_are_misses_and_rejected_genuines():
    rng = np.random.default_rng(2)
    gallery = _normed(rng.normal(size=(5, 8))).astype(np.float32)
    labels = np.arange(5)
    summary = score_all(gallery.copy(), labels, gallery, labels)  # every probe is its own gallery image
    assert summary.cmc[0] == 1.0
    failed = summary.with_failures(failed_probes=5, failed_genuine=5)
    assert failed.cmc[0] == 0.5 and failed.cmc[-1] == 0.5
    vr, t = failed.verification_rate(0.05)
    assert vr == 0.5 and failed.impostor_count == summary.impostor_count
    assert summary.with_failures(0, 0) is summary


def test_threshold_table_skips_fars_beyond_kept_scores():
    rng = np.random.default_rng(3)
    emb = _normed(rng.normal(size=(40, 8))).astype(np.float32)
    labels = np.arange(40)
    summary = score_all(emb, labels, emb, labels, max_far=0.01)
    assert summary.resolves(0.01) and not summary.resolves(0.1)
    assert set(summary.threshold_table((0.1, 0.01, 0.001))) == {"0.01", "0.001"}
    roc = summary.roc_points(np.array([1e-4, 1e-3, 0.1]))
    assert np.isnan(roc[0]) and np.isfinite(roc[1:]).all()
