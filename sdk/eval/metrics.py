"""Face recognition metrics, defined once and used by ``hsst-eval``, the study and the gate's thresholds.

Conventions:
* Scores are similarities (cosine): higher means more alike. A comparison is *accepted* when
  ``score >= threshold``.
* Thresholds at a false-accept rate (FAR) are conservative with ties: the threshold admits at most
  ``floor(far * n_impostors)`` impostor comparisons, so the achieved FAR never exceeds the requested one
  (a block of tied impostor scores at the boundary is rejected as a whole).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hsst.core.errors import InputError

DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _scores_1d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError(f"{name} is empty: need at least one comparison")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or inf")
    return arr


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Smallest threshold whose impostor acceptance rate is at most ``far``.

    Args:
        impostor: scores of all impostor (different-identity) comparisons.
        far: target false-accept rate in [0, 1].

    Returns:
        The threshold ``t``; ``mean(impostor >= t) <= far`` holds exactly.
    """
    if not 0.0 <= far <= 1.0:
        raise InputError(f"far must be within [0, 1], got {far}")
    imp = np.sort(_scores_1d(impostor, "impostor"))[::-1]
    return threshold_in_top(imp, imp.size, far)


def threshold_in_top(top: np.ndarray, total: int, far: float) -> float:
    """:func:`threshold_at_far` from the largest impostor scores only.

    Args:
        top: the largest impostor scores, descending (all of them, or as many as ``far`` needs).
        total: how many impostor comparisons there were in all.
        far: target false-accept rate.

    Raises:
        InputError: ``far`` needs more of the largest scores than ``top`` holds.
    """
    allowed = int(np.floor(far * total + 1e-9))
    if allowed >= top.size:
        if allowed < total:
            raise InputError(f"FAR {far} needs more impostor scores than were kept; raise max_far")
        return float(top[-1])
    # top[allowed] is the first impostor that must be rejected; admit only scores strictly above it.
    return float(np.nextafter(top[allowed], np.inf))


def verification_rate(genuine: np.ndarray, impostor: np.ndarray, far: float) -> Tuple[float, float]:
    """Verification rate (true-accept rate) at a false-accept rate.

    Returns:
        ``(vr, threshold)``: fraction of genuine scores ``>= threshold`` and the threshold used.
    """
    gen = _scores_1d(genuine, "genuine")
    threshold = threshold_at_far(impostor, far)
    return float(np.mean(gen >= threshold)), threshold


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC over every distinct score.

    Returns:
        ``(far, tar, thresholds)`` with thresholds descending; at threshold ``t[i]`` the rates count
        scores ``>= t[i]``.
    """
    gen, imp = _scores_1d(genuine, "genuine"), _scores_1d(impostor, "impostor")
    thresholds = np.unique(np.concatenate([gen, imp]))[::-1]
    gen_sorted, imp_sorted = np.sort(gen), np.sort(imp)
    tar = (gen.size - np.searchsorted(gen_sorted, thresholds, side="left")) / gen.size
    far = (imp.size - np.searchsorted(imp_sorted, thresholds, side="left")) / imp.size
    return far, tar, thresholds


def threshold_table(impostor: np.ndarray, fars: Sequence[float] = DEFAULT_FARS,
                    genuine: Optional[np.ndarray] = None) -> Dict[str, Dict[str, float]]:
    """FAR -> cosine threshold table for the gate's decision policy.

    Only FARs that the number of impostor comparisons can resolve (``far * n >= 1``) are listed.

    Returns:
        ``{"0.001": {"threshold": t, "vr": vr_or_nan}, ...}`` keyed by ``repr``-stable FAR strings.
    """
    imp = _scores_1d(impostor, "impostor")
    table = {}
    for far in fars:
        if far * imp.size < 1:
            continue
        t = threshold_at_far(imp, far)
        vr = float(np.mean(_scores_1d(genuine, "genuine") >= t)) if genuine is not None else float("nan")
        table[format_far(far)] = {"threshold": t, "vr": vr}
    return table


def format_far(far: float) -> str:
    """Canonical string of a FAR used as a JSON key: 0.001 -> '0.001', 1e-5 -> '1e-05'."""
    return repr(float(far))


def _check_identification(scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray):
    scores = np.asarray(scores, dtype=np.float64)
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    if scores.ndim != 2 or scores.shape != (probe_labels.size, gallery_labels.size):
        raise InputError(f"scores must be (n_probes, n_gallery) = ({probe_labels.size}, {gallery_labels.size}), "
                         f"got {scores.shape}")
    missing = np.setdiff1d(probe_labels, gallery_labels)
    if missing.size:
        raise InputError(f"{missing.size} probe identities have no gallery entry (closed-set identification), "
                         f"e.g. {missing[:3].tolist()}")
    return scores, probe_labels, gallery_labels


def cmc_curve(scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray,
              max_rank: int = 10) -> np.ndarray:
    """Cumulative match characteristic for closed-set identification.

    Each gallery identity is scored by its best entry (so per-image and per-identity galleries rank
    identities, not images). Ties count against the probe (the true identity ranks after every identity
    with an equal score).

    Returns:
        (max_rank,) array: ``cmc[k-1]`` is the fraction of probes whose identity is within the top k.
    """
    scores, probe_labels, gallery_labels = _check_identification(scores, probe_labels, gallery_labels)
    identities, inverse = np.unique(gallery_labels, return_inverse=True)
    per_id = np.full((scores.shape[0], identities.size), -np.inf)
    for j in range(identities.size):
        per_id[:, j] = scores[:, inverse == j].max(axis=1)
    true_col = np.searchsorted(identities, probe_labels)
    true_score = per_id[np.arange(per_id.shape[0]), true_col]
    rank = (per_id >= true_score[:, None]).sum(axis=1)  # 1 = best; ties count against the probe
    ranks = np.arange(1, max_rank + 1)
    return (rank[:, None] <= ranks[None, :]).mean(axis=0)


def rank_k_accuracy(scores: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray, k: int = 1) -> float:
    """Fraction of probes whose identity is among the ``k`` best-scoring gallery identities."""
    return float(cmc_curve(scores, probe_labels, gallery_labels, max_rank=k)[k - 1])


def split_scores(scores: np.ndarray, probe_labels: np.ndarray,
                 gallery_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of a probe x gallery score matrix."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(probe_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return scores[same], scores[~same]


@dataclass
class PairAccuracy:
    """LFW-style verification accuracy: 10-fold best threshold and a fixed threshold."""

    mean: float
    std: float
    fold_thresholds: Tuple[float, ...]
    fixed_threshold: Optional[float] = None
    fixed_accuracy: Optional[float] = None


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    # Midpoints between neighbouring scores generalise to unseen pairs better than the scores themselves.
    unique = np.unique(scores)
    candidates = np.concatenate([[unique[0]], (unique[1:] + unique[:-1]) / 2, [np.nextafter(unique[-1], np.inf)]])
    accuracy = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def lfw_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10,
                 fixed_threshold: Optional[float] = None) -> PairAccuracy:
    """10-fold verification accuracy on pairs (threshold chosen on 9 folds, applied to the 10th).

    Pairs are split into ``folds`` contiguous folds in file order, as in the LFW View-2 protocol.
    """
    scores = _scores_1d(scores, "scores")
    same = np.asarray(same, dtype=bool).ravel()
    if same.size != scores.size:
        raise InputError(f"scores ({scores.size}) and same ({same.size}) must have the same length")
    if scores.size < folds:
        raise InputError(f"need at least {folds} pairs for {folds}-fold accuracy, got {scores.size}")
    fold_of = np.arange(scores.size) * folds // scores.size
    accs, thresholds = [], []
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        t = _best_threshold(scores[train], same[train])
        thresholds.append(t)
        accs.append(np.mean((scores[test] >= t) == same[test]))
    result = PairAccuracy(float(np.mean(accs)), float(np.std(accs)), tuple(thresholds))
    if fixed_threshold is not None:
        result.fixed_threshold = float(fixed_threshold)
        result.fixed_accuracy = float(np.mean((scores >= fixed_threshold) == same))
    return result
