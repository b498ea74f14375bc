"""Chunked probe x gallery scoring that keeps memory bounded at any scale.

A 50k x 50k comparison has 2.5e9 scores (10 GB as float32). We only need: every genuine score, the count of
impostor scores, the top impostor scores down to the smallest FAR reported (exact thresholds), a fine
histogram of all impostor scores (for the ROC plot) and the per-probe identity ranking (Rank-1 / CMC).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from hsst.core.errors import InputError
from hsst.core.preprocess import l2_normalize
from hsst.eval.metrics import DEFAULT_FARS, format_far, threshold_in_top

HIST_BINS = np.linspace(-1.0, 1.0, 4001)
#: Score given to the genuine comparisons of a probe without an embedding: below every cosine, always rejected.
FAILED_SCORE = -2.0


def _check_embeddings(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    return x


def identity_templates(embeddings: np.ndarray, labels: np.ndarray):
    """Per-identity templates: the mean of L2-normalised embeddings, renormalised.

    Returns:
        ``(templates (I, D) float32, identity_labels (I,))``.
    """
    embeddings = _check_embeddings(embeddings, "embeddings")
    labels = np.asarray(labels)
    normed = l2_normalize(embeddings, axis=1)
    identities = np.unique(labels)
    templates = l2_normalize(np.stack([normed[labels == i].mean(0) for i in identities]), axis=1)
    return templates, identities


@dataclass
class ScoreSummary:
    """What an identification + verification evaluation needs from all probe x gallery scores."""

    genuine: np.ndarray
    impostor_top: np.ndarray  # the largest impostor scores, descending
    impostor_count: int
    impostor_hist: np.ndarray  # counts over HIST_BINS
    cmc: np.ndarray
    probe_ranks: np.ndarray

    def threshold_at_far(self, far: float) -> float:
        return threshold_in_top(self.impostor_top, self.impostor_count, far)

    def verification_rate(self, far: float):
        t = self.threshold_at_far(far)
        return float(np.mean(self.genuine >= t)), t

    def resolves(self, far: float) -> bool:
        """Whether the kept impostor scores give the exact threshold at ``far``."""
        allowed = int(np.floor(far * self.impostor_count + 1e-9))
        return far * self.impostor_count >= 1 and (allowed < self.impostor_top.size or
                                                   allowed >= self.impostor_count)

    def threshold_table(self, fars=DEFAULT_FARS) -> Dict[str, Dict[str, float]]:
        """FAR -> threshold / VR for the FARs the impostor count and the kept scores resolve (at most 0.1)."""
        table = {}
        for far in fars:
            if far > 0.1 + 1e-12 or not self.resolves(far):
                continue
            vr, t = self.verification_rate(far)
            table[format_far(far)] = {"threshold": t, "vr": vr}
        return table

    def with_failures(self, failed_probes: int, failed_genuine: int) -> "ScoreSummary":
        """The summary once probes that produced no embedding (no face, unreadable) are counted as failures.

        A failed probe is a miss at every rank, and each of its ``failed_genuine`` genuine comparisons is
        rejected at every threshold (scored below any cosine); it adds no impostor comparison, since a probe
        without a face can never be falsely accepted.
        """
        if failed_probes < 0 or failed_genuine < 0:
            raise InputError("failure counts must be >= 0")
        if failed_probes == 0 and failed_genuine == 0:
            return self
        ranks = np.concatenate([self.probe_ranks, np.full(failed_probes, np.iinfo(np.int64).max, np.int64)])
        ks = np.arange(1, self.cmc.size + 1)
        return ScoreSummary(genuine=np.concatenate([self.genuine, np.full(failed_genuine, FAILED_SCORE)]),
                            impostor_top=self.impostor_top, impostor_count=self.impostor_count,
                            impostor_hist=self.impostor_hist,
                            cmc=(ranks[:, None] <= ks[None, :]).mean(axis=0), probe_ranks=ranks)

    def roc_points(self, fars: np.ndarray) -> np.ndarray:
        """TAR at each FAR of ``fars``: exact where the kept impostor scores resolve it, else from the histogram.

        FARs below ``1 / impostor_count`` get NaN (not measurable with this many impostor comparisons).
        """
        far_hist, tar_hist = self.roc_from_hist()
        out = np.full(len(fars), np.nan)
        for i, far in enumerate(fars):
            if far * self.impostor_count < 1:
                continue
            allowed = int(np.floor(far * self.impostor_count + 1e-9))
            if allowed < self.impostor_top.size:
                out[i] = self.verification_rate(far)[0]
            else:
                ok = far_hist <= far + 1e-12
                out[i] = float(tar_hist[ok].max()) if ok.any() else 0.0
        return out

    def roc_from_hist(self):
        """Approximate ROC (FAR, TAR) on the histogram grid, for plotting only."""
        imp_ge = np.cumsum(self.impostor_hist[::-1])[::-1] / max(self.impostor_count, 1)
        edges = HIST_BINS[:-1]
        gen_sorted = np.sort(self.genuine)
        tar = (gen_sorted.size - np.searchsorted(gen_sorted, edges, side="left")) / gen_sorted.size
        return imp_ge, tar


def score_all(probes: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
              max_far: float = 0.1, max_rank: int = 10, chunk: Optional[int] = None) -> ScoreSummary:
    """Cosine-score every probe against every gallery entry in chunks.

    Args:
        probes: (P, D) embeddings (normalised here).
        probe_labels: (P,) identity labels.
        gallery: (G, D) embeddings or identity templates.
        gallery_labels: (G,) identity labels (repeat for per-image galleries).
        max_far: the largest FAR whose exact threshold must be available.
        max_rank: CMC length.
        chunk: probes per chunk (memory is a few times ``chunk * G`` floats; None: about 16M scores a chunk).
    """
    probes = _check_embeddings(probes, "probes")
    gallery = _check_embeddings(gallery, "gallery")
    if probes.shape[1] != gallery.shape[1]:
        raise InputError(f"probe dim {probes.shape[1]} != gallery dim {gallery.shape[1]}")
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    missing = np.setdiff1d(probe_labels, gallery_labels)
    if missing.size:
        raise InputError(f"{missing.size} probe identities are not in the gallery, e.g. {missing[:3].tolist()}")
    probes, gallery = l2_normalize(probes, axis=1), l2_normalize(gallery, axis=1)
    identities, id_of_entry, per_identity = np.unique(gallery_labels, return_inverse=True, return_counts=True)
    # gallery columns grouped by identity, so the best entry per identity is one reduceat per chunk
    order = np.argsort(id_of_entry, kind="stable")
    gallery, gallery_labels, id_of_entry = gallery[order], gallery_labels[order], id_of_entry[order]
    starts = np.concatenate([[0], np.cumsum(per_identity)[:-1]])
    n_genuine = int(per_identity[np.searchsorted(identities, probe_labels)].sum())
    n_impostor = probes.shape[0] * gallery.shape[0] - n_genuine
    keep = int(np.ceil(max_far * n_impostor)) + 1
    chunk = chunk or max(1, min(4096, (1 << 24) // max(gallery.shape[0], 1)))
    genuine: List[np.ndarray] = []
    top = np.empty(0, dtype=np.float32)
    hist = np.zeros(HIST_BINS.size - 1, dtype=np.int64)
    ranks = np.empty(probes.shape[0], dtype=np.int64)
    for start in range(0, probes.shape[0], chunk):
        stop = min(start + chunk, probes.shape[0])
        scores = probes[start:stop] @ gallery.T
        same = probe_labels[start:stop, None] == gallery_labels[None, :]
        genuine.append(scores[same])
        imp = scores[~same]
        hist += np.histogram(np.clip(imp, -1, 1), HIST_BINS)[0]
        merged = np.concatenate([top, imp])
        if merged.size > keep:
            merged = np.partition(merged, merged.size - keep)[merged.size - keep:]
        top = merged
        per_id = np.maximum.reduceat(scores, starts, axis=1)
        true_col = np.searchsorted(identities, probe_labels[start:stop])
        true_score = per_id[np.arange(stop - start), true_col]
        ranks[start:stop] = (per_id >= true_score[:, None]).sum(axis=1)
    cmc = (ranks[:, None] <= np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
    return ScoreSummary(genuine=np.concatenate(genuine).astype(np.float64), impostor_top=np.sort(top)[::-1].astype(np.float64),
                        impostor_count=n_impostor, impostor_hist=hist, cmc=cmc, probe_ranks=ranks)
