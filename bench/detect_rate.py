"""Detection rate on an identity-folder dataset (LFW): share of images where at least one face is found.

Variants: ``color`` (the files as stored), ``gray`` (luminance), ``nir`` (simulated NIR, seeded per image),
``masked`` (masked simulated NIR from hsst.synth's masked-face synthesis, when it exists). Also reports the
share where a found face contains the image centre (LFW centres the labelled face), so that a detection of
a background face does not count as the right one.

Results stream into ``--out`` (one JSON line per image), so an interrupted run resumes where it stopped;
the summary goes to ``<out>.summary.json`` and the log.

Usage (LFW, all images, 2 processes, in the background):
    nohup python bench/detect_rate.py --variant nir --out /tmp/hsst_rate/nir.jsonl > /tmp/hsst_rate/nir.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

logger = logging.getLogger("detect_rate")
VARIANTS = ("color", "gray", "nir", "masked")
_STATE: dict = {}


def _init(detector: str, variant: str, seed: int, det_thresh: float, min_face: int, refine: bool) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hsst.face.detector import FaceDetector

    extra = {"refine": True} if refine else {}
    _STATE["det"] = FaceDetector(detector, det_thresh=det_thresh, min_face=min_face, threads=1, **extra)
    _STATE["variant"], _STATE["seed"] = variant, seed
    if variant == "masked":
        _STATE["masker"] = _make_masker(seed)


def _make_masker(seed: int):
    """hsst.synth's 3D masked-face synthesis (mask rendered with its NIR reflectance, on the colour image)."""
    try:
        from hsst.synth.mask import MaskSynthesizer
    except ImportError as exc:
        raise SystemExit(f"the masked variant needs hsst.synth.mask (3D masked-face synthesis): {exc}")
    return MaskSynthesizer(seed=seed)


def _prepare(path: Path, rel: str):
    """The frame to detect on, and what is known about it (mask placed, true landmarks)."""
    import cv2

    from hsst.core.image import read_image
    from hsst.synth.nir import simulate_nir

    image = read_image(path)
    variant, seed = _STATE["variant"], _STATE["seed"]
    rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
    if variant == "gray":
        return (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image), {}
    if variant == "nir":
        return simulate_nir(image, rng), {}
    if variant == "masked":
        result = _STATE["masker"].synthesize(image, rng=rng, nir=True)
        if result is None:  # no face in the colour image: nothing to mask; simulated NIR only, reported apart
            return simulate_nir(image, rng), {"masked": False}
        nir = simulate_nir(result.image, rng, center=result.landmarks.mean(0))
        return nir, {"masked": True, "mask_type": result.mask_type, "landmarks": result.landmarks}
    return image, {}


def _work(item):
    path, rel = item
    start = time.perf_counter()
    try:
        image, info = _prepare(Path(path), rel)
        boxes, scores, kps = _STATE["det"].detect(image)
    except Exception as exc:  # recorded per image, never silently dropped
        return {"path": rel, "error": f"{type(exc).__name__}: {exc}"}
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    centre = bool(((boxes[:, 0] <= cx) & (boxes[:, 2] >= cx) & (boxes[:, 1] <= cy) & (boxes[:, 3] >= cy)).any())
    rec = {"path": rel, "faces": int(len(boxes)), "best": float(scores.max()) if len(scores) else 0.0,
           "centre": centre, "ms": (time.perf_counter() - start) * 1000}
    truth = info.pop("landmarks", None)
    rec.update(info)
    if truth is not None and len(kps):
        # landmark error on the masked face against the unmasked face's landmarks, / inter-ocular distance
        iod = max(float(np.linalg.norm(truth[1] - truth[0])), 1.0)
        per_point = np.linalg.norm(kps - truth[None], axis=2)
        best = int(per_point.mean(1).argmin())
        rec["nme"] = float(per_point[best].mean() / iod)
        rec["nme_points"] = [round(float(v) / iod, 4) for v in per_point[best]]
    return rec


def summarise(records: list, args) -> dict:
    n = len(records)
    errors = [r for r in records if "error" in r]
    found = [r for r in records if r.get("faces", 0) > 0]
    centre = [r for r in records if r.get("centre")]
    masked = [r for r in records if r.get("masked")]
    extra = {}
    if masked:
        nme = [r["nme"] for r in masked if "nme" in r]
        extra = {"masked_images": len(masked), "masked_detected": sum(r.get("faces", 0) > 0 for r in masked),
                 "masked_rate": sum(r.get("faces", 0) > 0 for r in masked) / len(masked),
                 "masked_centre_rate": sum(bool(r.get("centre")) for r in masked) / len(masked),
                 "not_masked_no_face_in_colour": sum(r.get("masked") is False for r in records),
                 "landmark_nme_median": float(np.median(nme)) if nme else None,
                 "landmark_nme_p90": float(np.percentile(nme, 90)) if nme else None,
                 "landmark_nme_mean_per_point": np.mean([r["nme_points"] for r in masked if "nme_points" in r],
                                                        axis=0).round(4).tolist() if nme else None}
    return {
        "dataset": str(args.data), "variant": args.variant, "detector": args.detector, "seed": args.seed,
        "det_thresh": args.det_thresh, "refine": args.refine,
        "label": "simulated NIR" if args.variant in ("nir", "masked") else "real",
        "images": n, "detected": len(found), "rate": len(found) / max(n, 1),
        "centre_detected": len(centre), "centre_rate": len(centre) / max(n, 1), "errors": len(errors),
        "missed": sorted(r["path"] for r in records if r.get("faces", 0) == 0 and "error" not in r)[:200],
        "mean_ms_per_image": float(np.mean([r["ms"] for r in records if "ms" in r])) if n else 0.0,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HSST_SHARED", "/work/shared"))
                        / "datasets" / "lfw")
    parser.add_argument("--variant", choices=VARIANTS, default="color")
    parser.add_argument("--detector", choices=("blazeface", "mtcnn"), default="blazeface")
    parser.add_argument("--det-thresh", type=float, default=0.5)
    parser.add_argument("--min-face", type=int, default=40)
    parser.add_argument("--refine", action="store_true", help="BlazeFace: second mesh pass (landmark accuracy)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines results file (resumable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from hsst.core.image import IMAGE_SUFFIXES

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        files = files[:args.limit]
    if not files:
        raise SystemExit(f"no images under {args.data}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["path"]] = rec
    todo = [(str(p), str(p.relative_to(args.data))) for p in files if str(p.relative_to(args.data)) not in done]
    logger.info("%d images, %d already done, %d to go (%s, %s, %d workers)", len(files), len(done), len(todo),
                args.variant, args.detector, args.workers)
    init_args = (args.detector, args.variant, args.seed, args.det_thresh, args.min_face, args.refine)
    with open(args.out, "a") as sink, mp.get_context("fork").Pool(args.workers, _init, init_args) as pool:
        for rec in tqdm(pool.imap_unordered(_work, todo, chunksize=16), total=len(todo), unit="img",
                        mininterval=5, desc=f"{args.variant}/{args.detector}"):
            done[rec["path"]] = rec
            sink.write(json.dumps(rec) + "\n")
    wanted = {str(p.relative_to(args.data)) for p in files}
    summary = summarise([r for k, r in done.items() if k in wanted], args)
    Path(str(args.out) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("%s %s on %s: %d/%d images with a face = %.2f%% (face at the centre: %.2f%%), %d errors",
                summary["label"], args.variant, args.detector, summary["detected"], summary["images"],
                100 * summary["rate"], 100 * summary["centre_rate"], summary["errors"])
    if "masked_images" in summary:
        logger.info("masked (simulated NIR): %d/%d masked images with a face = %.2f%% (centre %.2f%%); %d images "
                    "had no face in colour to mask; landmark NME median %.3f", summary["masked_detected"],
                    summary["masked_images"], 100 * summary["masked_rate"], 100 * summary["masked_centre_rate"],
                    summary["not_masked_no_face_in_colour"], summary["landmark_nme_median"] or float("nan"))


if __name__ == "__main__":
    main()
