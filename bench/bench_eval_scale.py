"""Scoring at scale: time and peak memory of hsst.eval.scoring.score_all vs a dense baseline.

Random unit embeddings stand in for a model's output (scoring cost does not depend on what the vectors mean).
The chunked scorer keeps genuine scores, the top impostor scores up to ``--max-far``, a histogram and ranks;
the baseline materialises the whole probe x gallery matrix (what a naive evaluation does) and is only run when
it fits ``--dense-limit`` scores. Prints the ratio of the two in the same run.

Usage:
    python bench/bench_eval_scale.py --probes 50000 --gallery 2000 --dim 512
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from hsst.eval.metrics import cmc_curve, split_scores, threshold_at_far
from hsst.eval.scoring import score_all


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=50000)
    ap.add_argument("--gallery", type=int, default=2000, help="gallery entries (one per identity)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--max-far", type=float, default=0.01)
    ap.add_argument("--dense-limit", type=float, default=2.5e8, help="run the dense baseline up to this many scores")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    gallery = _unit(rng, args.gallery, args.dim)
    labels = np.arange(args.gallery)
    probe_labels = rng.integers(0, args.gallery, args.probes)
    probes = _unit(rng, args.probes, args.dim) + 0.25 * gallery[probe_labels]
    base = _peak_mb()
    t0 = time.perf_counter()
    summary = score_all(probes, probe_labels, gallery, labels, max_far=args.max_far)
    chunked_s = time.perf_counter() - t0
    chunked_mb = _peak_mb() - base
    print(f"chunked: {args.probes} x {args.gallery} = {args.probes * args.gallery:.3g} scores in {chunked_s:.1f} s, "
          f"peak RSS +{chunked_mb:.0f} MB; Rank-1 {summary.cmc[0]:.4f}, VR@1e-3 {summary.verification_rate(1e-3)[0]:.4f}")
    if args.probes * args.gallery > args.dense_limit:
        print(f"dense baseline skipped (> {args.dense_limit:.3g} scores)")
        return
    t0 = time.perf_counter()
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    dense = p.astype(np.float64) @ gallery.T.astype(np.float64)
    cmc = cmc_curve(dense, probe_labels, labels)
    gen, imp = split_scores(dense, probe_labels, labels)
    t = threshold_at_far(imp, 1e-3)
    dense_s = time.perf_counter() - t0
    dense_mb = _peak_mb() - base
    print(f"dense:   {dense_s:.1f} s, peak RSS +{dense_mb:.0f} MB; Rank-1 {cmc[0]:.4f}, VR@1e-3 {np.mean(gen >= t):.4f}")
    print(f"ratio chunked/dense: time {chunked_s / dense_s:.2f}, peak memory {chunked_mb / max(dense_mb, 1):.2f}")


if __name__ == "__main__":
    main()
