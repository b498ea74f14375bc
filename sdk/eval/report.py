"""Evaluation reports: JSON (every number, the config, model hash, dataset fingerprint), markdown, ROC PNG.

The ROC plot is drawn with OpenCV (a runtime dependency already), so reports need no plotting library.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.files import atomic_write_json
from hsst.eval.metrics import format_far

PathLike = Union[str, Path]
#: Distinct BGR colours for curves (colour-blind friendly Okabe-Ito order).
PALETTE = [(178, 114, 0), (0, 94, 213), (115, 158, 0), (167, 121, 204), (66, 228, 240), (233, 180, 86),
           (0, 0, 0), (150, 150, 150)]


def _json_default(value: Any):
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN / inf -> None, so the JSON is strict (``allow_nan=False``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(result: Dict[str, Any], path: PathLike) -> Path:
    """Write ``result`` as strict JSON, atomically."""
    return atomic_write_json(path, _clean(json.loads(json.dumps(result, default=_json_default))), sort_keys=True,
                             allow_nan=False)


def pct(value: Optional[float], std: Optional[float] = None) -> str:
    """``97.31`` or ``97.31 ± 0.42`` (percent), ``n/a`` for missing values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{100 * value:.2f}"
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f" ± {100 * std:.2f}"
    return text


def faces_text(faces: Dict[str, Any]) -> str:
    """``detect (blazeface blazeface_short, det_thresh 0.35, min_face 40, normalize retry; from FILE)``."""
    d = faces.get("detector")
    if not d:
        return faces["mode"]
    name = faces.get("detector_name", d["model"])
    network = f"{name} {d['variant']}" if name == "blazeface" else name
    source = faces.get("gate_config") or "the runtime's default detector settings"
    return (f"{faces['mode']} ({network}, det_thresh {d['det_thresh']}, min_face {d['min_face']}, "
            f"normalize {d['normalize']}; from {source})")


def markdown(result: Dict[str, Any]) -> str:
    """A markdown report of one evaluation result."""
    lines = [f"# {result['title']}", ""]
    if result.get("simulated_nir"):
        lines += ["Probes are **simulated NIR** (made from VIS images by hsst.synth.nir), not NIR camera images.", ""]
    proto, model = result["protocol"], result["model"]
    lines += [f"- protocol: {proto['name']} ({proto['description']})",
              f"- dataset fingerprint: `{proto['fingerprint']}`",
              f"- model: `{model['path']}` ({model['kind']}, {model['arch']}, {model['preprocess']['crop_size']} px "
              f"{model['preprocess']['color']}), sha256 `{model['sha256']}`",
              f"- faces: {faces_text(result['faces'])}; gallery templates per {result['template']}; probe transform: "
              f"{result['probe_transform']['label']} (seed {result['probe_transform']['seed']})",
              f"- failure policy: {result['failure_policy']}", ""]
    s = result["summary"]
    if proto["kind"] == "identification":
        lines += ["| trial | gallery | probes | failed probes | Rank-1 (%) | VR@FAR=1% (%) | VR@FAR=0.1% (%) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for f in result["folds"]:
            lines.append(f"| {f['name']} | {f['gallery_images']} | {f['probe_images']} | "
                         f"{f['failures']['failed_probes_total']} | {pct(f['rank1'])} | "
                         f"{pct(f['vr'].get(format_far(1e-2)))} | {pct(f['vr'].get(format_far(1e-3)))} |")
        if len(result["folds"]) > 1:
            v1, v2 = s[f"vr@far={format_far(1e-2)}"], s[f"vr@far={format_far(1e-3)}"]
            lines.append(f"| **mean ± std** | | | | {pct(s['rank1']['mean'], s['rank1']['std'])} | "
                         f"{pct(v1['mean'], v1['std'])} | {pct(v2['mean'], v2['std'])} |")
        lines += ["", "CMC (mean over trials), ranks 1..10: " + ", ".join(pct(x) for x in s["cmc"]), ""]
        tables = [(f["name"], f["threshold_table"]) for f in result["folds"]]
    else:
        p = result["pairs"]
        fixed = p["fixed_threshold"]
        lines += ["| pairs | same | different | failed pairs | 10-fold accuracy (%) | fixed-threshold accuracy (%) "
                  "| VR@FAR=1% (%) | VR@FAR=0.1% (%) |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {p['pairs']} | {p['same']} | {p['different']} | {p['failures']['failed_pairs']} | "
                  f"{pct(p['accuracy']['mean'], p['accuracy']['std'])} | "
                  f"{pct(fixed['accuracy'])}{' at ' + format(fixed['threshold'], '.4f') if fixed['threshold'] is not None else ''} | "
                  f"{pct(p['vr'].get(format_far(1e-2)))} | {pct(p['vr'].get(format_far(1e-3)))} |", ""]
        if fixed["source"]:
            lines += [f"Fixed threshold from {fixed['source']}.", ""]
        tables = [("pairs", p["threshold_table"])]
    lines += ["FAR -> cosine threshold (accept when score >= threshold; at most FAR x impostors accepted):", "",
              "| trial | " + " | ".join(f"FAR {k}" for k in tables[0][1]) + " |",
              "|---|" + "---:|" * len(tables[0][1])]
    for name, table in tables:
        lines.append(f"| {name} | " + " | ".join(f"{table[k]['threshold']:.4f} (VR {pct(table[k]['vr'])})"
                                                  if k in table else "n/a" for k in tables[0][1]) + " |")
    cache = result.get("cache", {})
    timing = result.get("timing", {})
    lines += ["", f"Embeddings computed: {cache.get('computed')}, from cache: {cache.get('hits')}; "
                  f"{timing.get('seconds')} s ({timing.get('images_per_s') or '-'} images/s).", ""]
    return "\n".join(lines)


def roc_curves(result: Dict[str, Any]) -> Dict[str, Tuple[Sequence[float], Sequence[float]]]:
    """label -> (far, tar) of a result (one curve per trial)."""
    if result["protocol"]["kind"] == "identification":
        return {f["name"]: (f["roc"]["far"], f["roc"]["tar"]) for f in result["folds"]}
    return {"pairs": (result["pairs"]["roc"]["far"], result["pairs"]["roc"]["tar"])}


def plot_roc(curves: Dict[str, Tuple[Sequence[float], Sequence[float]]], path: PathLike, title: str = "ROC",
             size: Tuple[int, int] = (900, 640), far_min: float = 1e-4) -> Path:
    """Draw ROC curves (log FAR on x, TAR on y) to a PNG with OpenCV.

    Args:
        curves: label -> (far values, tar values).
        path: the PNG to write.
        title: plot title (say "simulated NIR" when it is).
        size: (width, height) in pixels.
        far_min: left end of the FAR axis.
    """
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 95, 230, 50, 60
    pw, ph = w - left - right, h - top - bottom
    lo, hi = math.log10(far_min), 0.0

    def xy(far: float, tar: float) -> Tuple[int, int]:
        x = left + (math.log10(max(far, far_min)) - lo) / (hi - lo) * pw
        y = top + (1.0 - tar) * ph
        return int(round(x)), int(round(y))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for e in range(int(lo), 1):
        x, _ = xy(10.0 ** e, 0)
        cv2.line(img, (x, top), (x, top + ph), (225, 225, 225), 1)
        cv2.putText(img, f"1e{e}" if e else "1", (x - 16, top + ph + 22), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    for t in np.linspace(0, 1, 11):
        _, y = xy(far_min, t)
        cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
        cv2.putText(img, f"{t:.1f}", (left - 36, y + 5), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    cv2.putText(img, "FAR (log scale)", (left + pw // 2 - 60, h - 15), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "TAR", (8, top + ph // 2), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title[:90], (left, 30), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for n, (label, (far, tar)) in enumerate(curves.items()):
        colour = PALETTE[n % len(PALETTE)]
        pts = np.array([xy(f, t) for f, t in zip(far, tar) if f >= far_min and t == t], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        ly = top + 20 + 22 * n
        cv2.line(img, (left + pw + 15, ly - 4), (left + pw + 40, ly - 4), colour, 3)
        cv2.putText(img, str(label)[:24], (left + pw + 46, ly), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def write_report(result: Dict[str, Any], out_dir: PathLike, stem: str = "eval") -> Dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>_roc.png`` into ``out_dir``.

    Returns:
        kind (``json``, ``markdown``, ``roc``) -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = result["title"]
    if result.get("simulated_nir") and "simulated NIR" not in title[:90]:
        title = "simulated NIR | " + title  # the plot title is cut at 90 characters
    paths = {"json": write_json(result, out / f"{stem}.json"),
             "roc": plot_roc(roc_curves(result), out / f"{stem}_roc.png", title=title)}
    md = markdown(result) + f"\n![ROC]({paths['roc'].name})\n"
    paths["markdown"] = out / f"{stem}.md"
    paths["markdown"].write_text(md, encoding="utf-8")
    return paths
