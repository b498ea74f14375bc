"""Gallery search latency: hsst.gallery.index.TemplateIndex against faiss.IndexFlatIP, measured in the same run.

One command::

    python bench/bench_gallery.py                         # 1k, 10k, 100k, 1M templates
    python bench/bench_gallery.py --sizes 1000,10000 --queries 300 --json out.json

Templates: 10,000 real LFW templates (every photo detected, aligned and embedded with the shipped model; cached
after the first run, see bench/gallery_data.py), plus random unit vectors for the larger sizes. Queries: held-out
real LFW photos (one per identity with two or more photos), one query per search call - what a gate does.

Per size it times top-1 searches, interleaved in rounds so that load drift on a shared machine hits every
configuration alike: FAISS ``IndexFlatIP`` at 1 OpenMP thread and at its default (the baseline is the faster of
the two; the multi-threaded one is timed apart, as its idle OpenMP workers keep spinning after each call and
would slow down the next configuration), and TemplateIndex with float32 / float16 / int8 storage on its automatic backend (numpy below the
size in FAISS_MIN, FAISS above) and forced to numpy. Reported: median ms per query and the ratio to the
baseline (> 1: faster than FAISS flat), plus, over all probes, rank-1 identification (the top template's
identity is the probe's) and top-1 agreement with exact float32. Goals: float32 no slower than FAISS flat at any
size; compact storage >= 2x faster at equal top-1.
"""
from __future__ import annotations

import os

# numpy's BLAS on one thread, like the FAISS baseline's "1t": a gate searches one query at a time while its
# other threads detect and embed; multi-threaded BLAS also leaves threads spinning that slow the next
# configuration of a round. Set OPENBLAS_NUM_THREADS yourself to measure otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gallery_data import real_set  # noqa: E402  (bench/ is not a package)

from hsst.gallery.index import FAISS_MIN, IndexOptions, TemplateIndex  # noqa: E402
from hsst.samples import shared_dir  # noqa: E402

logger = logging.getLogger("bench_gallery")


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors, made in blocks (1M x 192 float64 would be 1.5 GB)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def time_rounds(calls: Dict[str, Callable[[np.ndarray], object]], queries: np.ndarray, rounds: int,
                per_round: int) -> Dict[str, Dict[str, float]]:
    """Median wall ms and mean CPU ms per call of each configuration, configurations interleaved per round in a
    shuffled order."""
    wall: Dict[str, List[float]] = {name: [] for name in calls}
    cpu: Dict[str, float] = {name: 0.0 for name in calls}
    for name, call in calls.items():  # warm-up: first touch of each matrix, lazy allocations
        call(queries[:1])
    q = 0
    names = list(calls)
    order = np.random.default_rng(0)
    for _ in range(rounds):
        # shuffled each round: a configuration timed right after another one's scan finds the caches holding that
        # one's matrix (measured: one and the same index 15% slower at 10k when always timed right after FAISS)
        for name in order.permutation(names):
            call = calls[name]
            c0 = time.process_time()
            for i in range(per_round):
                query = queries[(q + i) % len(queries)][None]
                t0 = time.perf_counter()
                call(query)
                wall[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
        q += per_round
    n = rounds * per_round
    return {name: {"ms": 1e3 * float(np.median(wall[name])), "cpu_ms": 1e3 * cpu[name] / n} for name in calls}


def top1_labels(index: TemplateIndex, probes: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([index.search(np.ascontiguousarray(probes[i:i + batch]), 1)[1][:, 0]
                           for i in range(0, len(probes), batch)])


def bench_size(n: int, real, fill_seed: int, default_threads: int, args) -> Dict[str, object]:
    import faiss

    dim = real.gallery.shape[1]
    n_real = min(n, len(real.gallery))
    x = np.empty((n, dim), np.float32)
    x[:n_real] = real.gallery[:n_real]
    if n > n_real:
        x[n_real:] = random_unit(n - n_real, dim, fill_seed)
    labels = np.arange(n, dtype=np.int64)
    owners = [str(i) for i in range(n)]  # template-level search: owners are not used by search()

    flat = faiss.IndexFlatIP(dim)
    flat.add(x)

    def flat_at(threads: int) -> Callable[[np.ndarray], object]:
        def call(q: np.ndarray) -> object:
            faiss.omp_set_num_threads(threads)
            return flat.search(q, 1)
        return call

    indexes: Dict[str, TemplateIndex] = {}
    for storage in ("float32", "float16", "int8"):
        for backend in ("auto", "numpy"):
            if backend == "numpy" and indexes.get(f"{storage}/auto") is not None \
                    and indexes[f"{storage}/auto"].backend == "numpy":
                indexes[f"{storage}/numpy"] = indexes[f"{storage}/auto"]  # the same thing: build once
                continue
            index = TemplateIndex(dim, IndexOptions(storage=storage, backend=backend, faiss_threads=None))
            for start in range(0, n, 262144):
                index.add(x[start:start + 262144], labels[start:start + 262144], owners[start:start + 262144])
            indexes[f"{storage}/{backend}"] = index
    del owners
    gc.collect()

    def ours(index: TemplateIndex) -> Callable[[np.ndarray], object]:
        def call(q: np.ndarray) -> object:
            faiss.omp_set_num_threads(1)  # what IndexOptions.faiss_threads=1 sets for a gate
            return index.search(q, 1)
        return call

    calls = {"faiss flat 1t": flat_at(1)}
    calls.update({name: ours(index) for name, index in indexes.items()})
    queries = real.probes
    per_round = max(1, min(args.queries // args.rounds, int(2e6 // n) or 1))
    timing = time_rounds(calls, queries, args.rounds, per_round)
    if default_threads > 1:  # apart: idle OpenMP workers spin a while after a multi-threaded call and would slow
        # down whichever configuration came next in a round
        timing.update(time_rounds({f"faiss flat {default_threads}t": flat_at(default_threads)}, queries,
                                  args.rounds, per_round))
    base_name = min((k for k in timing if k.startswith("faiss flat")), key=lambda k: timing[k]["ms"])
    base = timing[base_name]["ms"]

    # accuracy over all probes, batched (numpy indexes: the same codes, hence the same answers, as FAISS's)
    exact = top1_labels(indexes["float32/numpy"], queries)
    truth = real.probe_names
    names = np.concatenate([real.gallery_names[:n_real], np.full(n - n_real, "", dtype=real.gallery_names.dtype)])
    accuracy = {}
    for storage in ("float32", "float16", "int8"):
        top = exact if storage == "float32" else top1_labels(indexes[f"{storage}/numpy"], queries)
        accuracy[storage] = {"rank1": float((names[top] == truth).mean()), "agree": float((top == exact).mean())}
    clipped = float((np.abs(x) > indexes["int8/numpy"].codec.range).mean())
    # a removal rebuilds the onnxruntime int8 session over every code: what an un-enrolment costs (after timing)
    t0 = time.perf_counter()
    indexes["int8/auto"].remove([int(labels[-1])])
    int8_remove_s = time.perf_counter() - t0

    row = {"n": n, "real": n_real, "baseline": base_name, "baseline_ms": base, "queries_timed": args.rounds * per_round,
           "timing": timing, "backends": {k: v.backend for k, v in indexes.items()}, "accuracy": accuracy,
           "int8_clipped_fraction": clipped, "int8_remove_s": int8_remove_s}
    del indexes, x
    gc.collect()
    return row


def report(rows: List[Dict[str, object]]) -> str:
    lines = ["| templates | FAISS flat (baseline) | float32 auto | float16 auto | int8 auto | float32 numpy | "
             "int8 numpy | rank-1 f32 / f16 / int8 | top-1 agreement f16 / int8 |",
             "|---:|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, base = r["timing"], r["baseline_ms"]

        def cell(name: str) -> str:
            backend = r["backends"][name]
            return f"{t[name]['ms']:.3f} ms ({base / t[name]['ms']:.2f}x, {backend})"

        acc = r["accuracy"]
        lines.append(
            f"| {r['n']:,} | {base:.3f} ms ({r['baseline'].replace('faiss flat ', '')}) | {cell('float32/auto')} | "
            f"{cell('float16/auto')} | {cell('int8/auto')} | {cell('float32/numpy')} | {cell('int8/numpy')} | "
            f"{acc['float32']['rank1']:.3f} / {acc['float16']['rank1']:.3f} / {acc['int8']['rank1']:.3f} | "
            f"{acc['float16']['agree']:.4f} / {acc['int8']['agree']:.4f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000",
                        help="comma-separated template counts (default: 1k, 10k, 100k, 1M)")
    parser.add_argument("--queries", type=int, default=1000,
                        help="timed queries per configuration and size (fewer for large sizes: 2M / size per round)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaving rounds")
    parser.add_argument("--lfw", type=Path, default=None, help="LFW folder (default: $HSST_SHARED/datasets/lfw)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("hsst.gallery.index").setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError:
        print("faiss-cpu is not installed: the baseline needs it (pip install 'hsst[faiss]')", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    lfw = args.lfw or shared_dir() / "datasets" / "lfw"
    if not lfw.is_dir():
        print(f"LFW not found at {lfw}; pass --lfw or set HSST_SHARED", file=sys.stderr)
        return 2
    default_threads = faiss.omp_get_max_threads()  # before any call sets it
    real = real_set(lfw)
    logger.info("real templates: %d gallery, %d probes (%d-d); sizes %s", len(real.gallery), len(real.probes),
                real.gallery.shape[1], sizes)
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        rows.append(bench_size(n, real, fill_seed=n, default_threads=default_threads, args=args))
        logger.info("%d templates done in %.0f s (load %s)", n, time.perf_counter() - t0, load_average())
    env = {"python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__,
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load": load_average(),
           "faiss_min": FAISS_MIN, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    print(f"\n{env}\n")
    print(report(rows))
    print("\nratio = baseline ms / ms (> 1: faster than FAISS flat); backend: what TemplateIndex used; "
          "rank-1 over real held-out probes; clipped int8 components: "
          + ", ".join(f"{r['n']:,}: {r['int8_clipped_fraction']:.1e}" for r in rows)
          + "; int8 removal of one template (rebuilds its session): "
          + ", ".join(f"{r['n']:,}: {r['int8_remove_s']:.3f} s" for r in rows))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
