"""Detection rate on an identity-folder dataset (LFW): share of images where at least one face is found.

Variants: ``color`` (the files as stored), ``gray`` (luminance), ``nir`` (simulated NIR, seeded per image),
``masked`` (masked simulated NIR from hsst.synth's masked-face synthesis, when it exists). Also reports the
share where a found face contains the image centre (LFW centres the labelled face), so that a detection of
a background face does not count as the right one.

Hard light (``--light``): each frame of the variant is also put under the simulated lighting conditions of
``hsst.synth.lighting`` (side light 45/60/90 deg, -2/+2 EV, illuminator hot spot; seeded per image and
condition) and the rate is reported per condition, next to the unchanged frame (``none``). ``--normalize``
runs the detector with one or more of its hard-light modes (``off``, ``retry``, ``always``) on the same
frames in the same run; the first is the baseline of the ratios. Detection time is the CPU time of the
detector call (boxes + mesh landmarks) in this single-threaded process: the one-core cost per frame.

Results stream into ``--out`` (one JSON line per image, condition and mode), so an interrupted run resumes
where it stopped; the summary goes to ``<out>.summary.json`` and the log.

Usage (LFW, all images, 2 processes, in the background):
    nohup python bench/detect_rate.py --variant nir --out /tmp/hsst_rate/nir.jsonl > /tmp/hsst_rate/nir.log 2>&1 &

Hard light, before/after the detector's retry, 500 images drawn with seed 2, the gate runtime's detector
settings, one process and one thread (docs/DETECTION.md, "Hard light"):
    OMP_NUM_THREADS=1 python bench/detect_rate.py --variant masked --light all --normalize off,retry --sample 500 \
        --sample-seed 2 --det-thresh 0.35 --min-face 40 --models blazeface_short --workers 1 \
        --out /tmp/hsst_rate/final_masked.jsonl
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

from hsst.samples import shared_dir

logger = logging.getLogger("detect_rate")
VARIANTS = ("color", "gray", "nir", "masked")
MODELS = {"both": ("blazeface_full", "blazeface_short"), "blazeface_short": "blazeface_short",
          "blazeface_full": "blazeface_full"}
DEFAULT_MODE = "default"  # the detector's own normalize default (what the runtime ships)
GOAL_RATE, GOAL_MS = 0.98, 15.0
_STATE: dict = {}


def _init(detector: str, variant: str, seed: int, det_thresh: float, min_face: int, refine: bool,
          modes: tuple = (DEFAULT_MODE,), lights: tuple = ("none",), models: str = "both",
          light_options: dict = None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hsst.face.detector import FaceDetector

    extra = {"refine": True} if refine else {}
    if detector == "blazeface":
        extra["models"] = MODELS[models]
    _STATE["dets"] = {mode: FaceDetector(detector, det_thresh=det_thresh, min_face=min_face, threads=1, **extra,
                                         **(light_options or {}),
                                         **({} if mode == DEFAULT_MODE else {"normalize": mode}))
                      for mode in modes}
    _STATE["variant"], _STATE["seed"], _STATE["lights"] = variant, seed, lights
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


def _lit(image: np.ndarray, rel: str, light: str) -> np.ndarray:
    """The frame under a named simulated light condition, seeded per image and condition."""
    if light == "none":
        return image
    from hsst.synth.lighting import apply_light

    rng = np.random.default_rng([_STATE["seed"], zlib.crc32(rel.encode()), zlib.crc32(light.encode())])
    return apply_light(image, light, rng)


def _measure(det, image: np.ndarray, truth) -> dict:
    """One detector call on one frame: faces, best score, centre hit, CPU ms of the call, landmark error."""
    start = time.process_time()
    boxes, scores, kps = det.detect(image)
    det_ms = (time.process_time() - start) * 1000
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    centre = bool(((boxes[:, 0] <= cx) & (boxes[:, 2] >= cx) & (boxes[:, 1] <= cy) & (boxes[:, 3] >= cy)).any())
    rec = {"faces": int(len(boxes)), "best": float(scores.max()) if len(scores) else 0.0, "centre": centre,
           "det_ms": det_ms}
    if truth is not None and len(kps):
        # landmark error on the masked face against the unmasked face's landmarks, / inter-ocular distance
        iod = max(float(np.linalg.norm(truth[1] - truth[0])), 1.0)
        per_point = np.linalg.norm(kps - truth[None], axis=2)
        best = int(per_point.mean(1).argmin())
        rec["nme"] = float(per_point[best].mean() / iod)
        rec["nme_points"] = [round(float(v) / iod, 4) for v in per_point[best]]
    return rec


def _work(item):
    """All (light condition, detector mode) records of one image."""
    path, rel = item
    start = time.perf_counter()
    try:
        image, info = _prepare(Path(path), rel)
    except Exception as exc:  # recorded per image, never silently dropped
        return [{"path": rel, "light": light, "normalize": mode, "error": f"{type(exc).__name__}: {exc}"}
                for light in _STATE["lights"] for mode in _STATE["dets"]]
    truth = info.pop("landmarks", None)
    records = []
    for light in _STATE["lights"]:
        for mode, det in _STATE["dets"].items():
            rec = {"path": rel, "light": light, "normalize": mode}
            try:
                rec.update(_measure(det, _lit(image, rel, light), truth))
            except Exception as exc:  # recorded per image, never silently dropped
                rec["error"] = f"{type(exc).__name__}: {exc}"
            rec.update(info)
            records.append(rec)
    ms = (time.perf_counter() - start) * 1000 / max(len(records), 1)
    for rec in records:
        rec["ms"] = ms  # wall time per record, preparation included
    return records


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
        **_timing(records), **extra,
    }


def _timing(records: list) -> dict:
    """CPU ms of the detector call per frame (one thread): mean, median, p90 (empty without timings)."""
    ms = [r["det_ms"] for r in records if "det_ms" in r]
    if not ms:
        return {}
    return {"det_ms_mean": float(np.mean(ms)), "det_ms_median": float(np.median(ms)),
            "det_ms_p90": float(np.percentile(ms, 90))}


def light_table(done: dict, wanted: set, args) -> dict:
    """Per light condition and detector mode: the summary of its records (rates, masked rate, det ms).

    With ``off`` among the modes, the frames where ``retry`` runs its second pass (no first-pass face scoring
    ``retry_below`` or more: the off record's best score tells) are also timed apart, in every mode.
    """
    table = {}
    for light in args.lights:
        hard = _retried(done, wanted, light, args)
        for mode in args.modes:
            recs = [done[(p, light, mode)] for p in sorted(wanted) if (p, light, mode) in done]
            summary = summarise(recs, args)
            summary.pop("landmark_nme_mean_per_point", None)
            if hard is not None:
                ms = [r["det_ms"] for r in recs if r["path"] in hard and "det_ms" in r]
                summary.update(retried_share=len(hard) / max(len(recs), 1),
                               retried_det_ms_mean=float(np.mean(ms)) if ms else float("nan"))
            table[f"{light}/{mode}"] = {"light": light, "normalize": mode, **summary}
    return table


def _retried(done: dict, wanted: set, light: str, args):
    """Paths whose off-mode first pass has no face scoring ``retry_below`` or more (None without ``off``)."""
    if "off" not in args.modes:
        return None
    below = args.retry_below
    if below is None:
        import inspect

        from hsst.face.detector import BlazeFaceDetector

        below = inspect.signature(BlazeFaceDetector).parameters["retry_below"].default
    return {p for p in wanted if (p, light, "off") in done and "error" not in done[(p, light, "off")]
            and done[(p, light, "off")]["best"] < below}


def _ms(row: dict) -> float:
    return row.get("det_ms_mean", float("nan"))


def log_light_table(table: dict, args) -> None:
    """Print the per-condition table: centre rate and CPU ms per mode, and ratios against the baseline."""
    base_mode, modes = args.modes[0], args.modes
    head = "".join(f" | {m + ' centre':>16} {m + ' ms':>10} {'p90':>6}" for m in modes)
    ratios = "".join(f" | {'misses ' + base_mode + '->' + m:>18} {'ms x':>6}" for m in modes[1:])
    retried = " | frames retry re-runs: ms per mode" if "off" in modes else ""
    logger.info("%-10s%s%s | vs none (%s)%s", "light", head, ratios, modes[-1], retried)
    for light in args.lights:
        cells, extra = [], []
        for mode in modes:
            row = table[f"{light}/{mode}"]
            p90 = row.get("det_ms_p90", float("nan"))
            cells.append(f" | {100 * row['centre_rate']:15.2f}% {_ms(row):10.2f} {p90:6.2f}")
        base = table[f"{light}/{base_mode}"]
        for mode in modes[1:]:
            row = table[f"{light}/{mode}"]
            misses = f"{base['images'] - base['centre_detected']} -> {row['images'] - row['centre_detected']}"
            extra.append(f" | {misses:>18} {_ms(row) / _ms(base):6.2f}")
        last, none = table[f"{light}/{modes[-1]}"], table[f"none/{modes[-1]}"]
        rate_ratio = last["centre_rate"] / max(none["centre_rate"], 1e-9)
        vs_none = f" | rate x{rate_ratio:.3f}, ms x{_ms(last) / _ms(none):.2f}"
        if base.get("retried_share"):
            vs_none += f" | retried {100 * base['retried_share']:5.1f}%: ms " + " / ".join(
                f"{table[f'{light}/{m}']['retried_det_ms_mean']:.2f}" for m in modes)
        logger.info("%-10s%s%s%s", light, "".join(cells), "".join(extra), vs_none)
    n = table[f"none/{base_mode}"]["images"]
    for mode in modes:
        rows = [table[f"{light}/{mode}"] for light in args.lights]
        worst = min(row["centre_rate"] for row in rows)
        slowest = max(_ms(row) for row in rows)
        retried = [row["retried_det_ms_mean"] for row in rows if row.get("retried_share")]
        slowest_hard = max(retried) if retried else float("nan")
        logger.info("normalize=%s: worst condition %.2f%% (goal >= %.0f%%: %s), slowest condition %.2f ms/frame "
                    "mean (goal <= %.0f ms: %s), frames a retry re-runs up to %.2f ms mean; %d images, %s", mode,
                    100 * worst, 100 * GOAL_RATE, "met" if worst >= GOAL_RATE else "NOT met", slowest, GOAL_MS,
                    "met" if slowest <= GOAL_MS else "NOT met", slowest_hard, n,
                    "simulated NIR" if args.variant in ("nir", "masked") else "real frames, simulated light")


def _parse_lights(text: str) -> tuple:
    """``none``, ``all`` or a comma list of hsst.synth.lighting conditions; ``none`` always comes first."""
    from hsst.synth.lighting import LIGHT_CONDITIONS

    names = list(LIGHT_CONDITIONS) if text == "all" else [t for t in text.split(",") if t and t != "none"]
    unknown = [n for n in names if n not in LIGHT_CONDITIONS]
    if unknown:
        raise SystemExit(f"unknown --light {unknown}; choose 'all', 'none' or from {sorted(LIGHT_CONDITIONS)}")
    return ("none",) + tuple(names)


def _parse_modes(text: str) -> tuple:
    """Comma list of the detector's ``normalize`` modes (``default``: the detector's own default)."""
    from hsst.face.detector import NORMALIZE_MODES

    modes = tuple(t for t in text.split(",") if t)
    bad = [m for m in modes if m not in NORMALIZE_MODES + (DEFAULT_MODE,)]
    if bad or not modes:
        raise SystemExit(f"--normalize takes a comma list of {list(NORMALIZE_MODES) + [DEFAULT_MODE]}, got {text!r}")
    return modes


def _files(args) -> list:
    """The image files to run: all, the first ``--limit``, or ``--sample`` drawn with ``--sample-seed``."""
    from hsst.core.image import IMAGE_SUFFIXES

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.sample and args.sample < len(files):
        pick = np.random.default_rng(args.sample_seed).choice(len(files), args.sample, replace=False)
        files = [files[i] for i in sorted(pick)]
    if args.limit:
        files = files[:args.limit]
    if not files:
        raise SystemExit(f"no images under {args.data}")
    return files


def _key(rec: dict) -> tuple:
    return rec["path"], rec.get("light", "none"), rec.get("normalize", DEFAULT_MODE)


def _records(results):
    for recs in results:
        yield from recs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "datasets" / "lfw")
    parser.add_argument("--variant", choices=VARIANTS, default="color")
    parser.add_argument("--detector", choices=("blazeface", "mtcnn"), default="blazeface")
    parser.add_argument("--det-thresh", type=float, default=0.5)
    parser.add_argument("--min-face", type=int, default=40)
    parser.add_argument("--refine", action="store_true", help="BlazeFace: second mesh pass (landmark accuracy)")
    parser.add_argument("--models", choices=sorted(MODELS), default="both",
                        help="BlazeFace networks (the gate runtime runs blazeface_short)")
    parser.add_argument("--light", default="none",
                        help="'all', 'none' or a comma list of hsst.synth.lighting conditions (side-45, ...)")
    parser.add_argument("--normalize", default=DEFAULT_MODE,
                        help="comma list of detector hard-light modes off,retry,always (first: baseline)")
    parser.add_argument("--retry-below", type=float, default=None,
                        help="detector retry_below (default: the detector's); 0: retry only when no face is found")
    parser.add_argument("--clahe-clip", type=float, default=None, help="detector clahe_clip (default: the detector's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--sample", type=int, default=0, help="N images drawn at random with --sample-seed (0: all)")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines results file (resumable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.lights, args.modes = _parse_lights(args.light), _parse_modes(args.normalize)

    files = _files(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[_key(rec)] = rec
    rels = [(str(p), str(p.relative_to(args.data))) for p in files]
    todo = [item for item in rels if any((item[1], light, mode) not in done
                                         for light in args.lights for mode in args.modes)]
    logger.info("%d images, %d to go (%s, %s, light %s, normalize %s, %d workers)", len(files), len(todo),
                args.variant, args.detector, ",".join(args.lights), ",".join(args.modes), args.workers)
    light_options = {k: v for k, v in (("retry_below", args.retry_below), ("clahe_clip", args.clahe_clip))
                     if v is not None}
    init_args = (args.detector, args.variant, args.seed, args.det_thresh, args.min_face, args.refine, args.modes,
                 args.lights, args.models, light_options)
    desc = f"{args.variant}/{args.detector}"
    with open(args.out, "a") as sink:
        if args.workers <= 1:  # in this process: one thread, no fork (timings are the one-core cost)
            _init(*init_args)
            results = (_work(item) for item in todo)
            _consume(tqdm(_records(results), total=len(todo) * len(args.lights) * len(args.modes), unit="rec",
                          mininterval=5, desc=desc), done, sink)
        else:
            with mp.get_context("fork").Pool(args.workers, _init, init_args) as pool:
                results = pool.imap_unordered(_work, todo, chunksize=16)
                _consume(tqdm(_records(results), total=len(todo) * len(args.lights) * len(args.modes), unit="rec",
                              mininterval=5, desc=desc), done, sink)
    wanted = {str(p.relative_to(args.data)) for p in files}
    if args.lights == ("none",) and len(args.modes) == 1:
        _report(done, wanted, args)
        return
    table = light_table(done, wanted, args)
    Path(str(args.out) + ".summary.json").write_text(json.dumps(table, indent=2) + "\n")
    log_light_table(table, args)


def _consume(records, done: dict, sink) -> None:
    for rec in records:
        done[_key(rec)] = rec
        sink.write(json.dumps(rec) + "\n")


def _report(done: dict, wanted: set, args) -> None:
    """The single-condition summary (no --light, one mode): as before."""
    mode = args.modes[0]
    summary = summarise([r for k, r in done.items() if k[0] in wanted and k[1:] == ("none", mode)], args)
    Path(str(args.out) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("%s %s on %s: %d/%d images with a face = %.2f%% (face at the centre: %.2f%%), %d errors",
                summary["label"], args.variant, args.detector, summary["detected"], summary["images"],
                100 * summary["rate"], 100 * summary["centre_rate"], summary["errors"])
    if "det_ms_mean" in summary:
        logger.info("detector CPU time (one thread): mean %.2f ms/frame, median %.2f, p90 %.2f",
                    summary["det_ms_mean"], summary["det_ms_median"], summary["det_ms_p90"])
    if "masked_images" in summary:
        logger.info("masked (simulated NIR): %d/%d masked images with a face = %.2f%% (centre %.2f%%); %d images "
                    "had no face in colour to mask; landmark NME median %.3f", summary["masked_detected"],
                    summary["masked_images"], 100 * summary["masked_rate"], 100 * summary["masked_centre_rate"],
                    summary["not_masked_no_face_in_colour"], summary["landmark_nme_median"] or float("nan"))


if __name__ == "__main__":
    main()
