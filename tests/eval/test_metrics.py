import numpy as np
import pytest

from hsst.core.errors import InputError
from hsst.eval.metrics import (cmc_curve, lfw_accuracy, rank_k_accuracy, roc_curve, split_scores, threshold_at_far,
                               threshold_table, verification_rate)


def test_threshold_admits_exactly_far_fraction():
    impostor = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    t = threshold_at_far(impostor, 0.01)
    assert np.sum(impostor >= t) == 10  # 0.990 .. 0.999
    assert t > 0.989


def test_ties_at_boundary_are_rejected_conservatively():
    impostor = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    t = threshold_at_far(impostor, 0.2)  # 2 allowed, but 3 tie at 0.5: only 0.9 may pass
    assert np.mean(impostor >= t) == pytest.approx(0.1)
    assert t > 0.5


def test_far_zero_admits_no_impostor():
    impostor = np.array([0.3, 0.2])
    t = threshold_at_far(impostor, 0.0)
    assert np.sum(impostor >= t) == 0


def test_verification_rate_hand_computed():
    genuine = np.array([0.95, 0.8, 0.6, 0.3])
    impostor = np.array([0.7, 0.4, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5])
    vr, t = verification_rate(genuine, impostor, 0.1)  # one impostor allowed: 0.7 passes, 0.4 does not
    assert t > 0.4 and t <= 0.7
    assert vr == pytest.approx(3 / 4)


def test_roc_is_monotone_and_ends_at_one():
    rng = np.random.default_rng(0)
    far, tar, thr = roc_curve(rng.normal(0.6, 0.1, 200), rng.normal(0.1, 0.1, 2000))
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0) and np.all(np.diff(thr) < 0)
    assert far[-1] == 1.0 and tar[-1] == 1.0


def test_cmc_hand_computed_with_per_image_gallery():
    gallery_labels = np.array([0, 0, 1, 2])
    probe_labels = np.array([0, 1, 2])
    scores = np.array([
        [0.2, 0.9, 0.5, 0.1],  # id0 best (0.9): rank 1
        [0.6, 0.1, 0.5, 0.4],  # id1 0.5 < id0 0.6: rank 2
        [0.3, 0.2, 0.3, 0.3],  # id2 ties id0 and id1 at 0.3: counted as rank 3
    ])
    cmc = cmc_curve(scores, probe_labels, gallery_labels, max_rank=3)
    np.testing.assert_allclose(cmc, [1 / 3, 2 / 3, 1.0])
    assert rank_k_accuracy(scores, probe_labels, gallery_labels) == pytest.approx(1 / 3)


def test_split_scores_and_errors():
    genuine, impostor = split_scores(np.array([[1.0, 0.0], [0.2, 0.8]]), np.array([0, 1]), np.array([0, 1]))
    assert sorted(genuine.tolist()) == [0.8, 1.0] and sorted(impostor.tolist()) == [0.0, 0.2]
    with pytest.raises(InputError, match="no gallery entry"):
        cmc_curve(np.zeros((1, 1)), np.array([5]), np.array([0]))
    with pytest.raises(InputError, match="empty"):
        threshold_at_far(np.array([]), 0.1)


def test_threshold_table_lists_resolvable_fars_only():
    impostor = np.linspace(0, 1, 1000)
    table = threshold_table(impostor, fars=(1e-2, 1e-3, 1e-4), genuine=np.array([0.999, 0.5]))
    assert list(table) == ["0.01", "0.001"]
    assert table["0.01"]["vr"] == pytest.approx(0.5)


def test_lfw_accuracy_separable_pairs():
    same = np.tile([True, False], 50)
    scores = np.where(same, 0.8, 0.2) + np.linspace(0, 0.01, 100)
    result = lfw_accuracy(scores, same, fixed_threshold=0.5)
    assert result.mean == 1.0 and result.fixed_accuracy == 1.0
