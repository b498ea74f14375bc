"""Train the enrolment mask check (hsst.face.mask_check) on LFW crops with synthesized masks.

    python tools/train_mask_check.py --crops CROPS --split docs/study/lfw_val_split.json \
        --masktheface ../shared/masks/masktheface --out sdk/assets/models/mask-check.npz

CROPS: aligned 112 px VIS crops (``hsst-mask --in ../shared/datasets/lfw --out CROPS --no-mask --align 112``).
Training uses the split's ``train`` identities; its ``test`` identities (never trained on) are halved by a
seeded draw: one half picks the threshold (the probability refusing at most ``--max-refusal`` of the clean
crops), the other half reports. Every crop is seen clean and masked, each in colour or in simulated NIR (gray),
with a small alignment jitter. Training masks: this project's 3D synthesizer (procedural surgical, KN95, N95 and
cloth masks). Reported besides on a family never trained on: MaskTheFace's photographed mask templates, pasted
by a 6-point homography on the face mesh (``--masktheface``), a check that the classifier learned "the lower
face is covered" and not the synthesizer's look. Plain occluders (a band or an ellipse from the nose down, flat or
textured) train as covered too. All of it is simulated: no real masked photo is involved.
"""
from __future__ import annotations

import argparse
import configparser
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from hsst.core.errors import DatasetError
from hsst.face.mask_check import CROP, HogSpec, MaskCheck, mask_features
from hsst.synth.mask.synthesizer import MaskSynthesizer
from hsst.synth.nir import simulate_nir

logger = logging.getLogger("train_mask_check")

#: Face-mesh vertices where MaskTheFace's six anchors go: the two upper corners at the cheeks (nose level), the
#: nose bridge, the two jaw corners, the chin.
MESH_ANCHORS = {"a": 93, "b": 197, "c": 323, "d": 136, "e": 152, "f": 365}


def split_crops(crops: Path, split: dict, part: str, per_identity: int) -> List[Path]:
    """Up to ``per_identity`` crops of each identity of the split's ``part``, sorted."""
    files = []
    for name in split[part]["identities"]:
        folder = crops / name
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:per_identity]
    if not files:
        raise DatasetError(f"no crops of the split's {part} identities under {crops}: make them with "
                           "hsst-mask --no-mask --align 112")
    return files


def jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small similarity warp: what the detector's landmarks on a real photo leave of the alignment."""
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.94, 1.06)
    m = cv2.getRotationMatrix2D((CROP / 2, CROP / 2), angle, scale)
    m[:, 2] += rng.uniform(-4, 4, size=2)
    return cv2.warpAffine(crop, m, (CROP, CROP), borderMode=cv2.BORDER_REFLECT)


def occlude(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Something other than a mask over the lower face (a scarf, a band, a hand-sized blob): a band or the lower
    part of an ellipse from the nose down, flat or textured, so the check learns "covered", not one mask look."""
    out = crop.copy()
    region = np.zeros(crop.shape[:2], np.uint8)
    top = int(rng.uniform(58, 74))
    if rng.random() < 0.5:
        region[top:int(rng.uniform(100, CROP + 1))] = 1
    else:
        centre = (int(rng.uniform(48, 64)), top + 22)
        cv2.ellipse(region, centre, (int(rng.uniform(30, 46)), int(rng.uniform(22, 34))), float(rng.uniform(-10, 10)),
                    0, 360, 1, -1)
        region[:top] = 0
    colour = rng.uniform(0, 255, 3)
    fill = np.tile(colour, (CROP, CROP, 1))
    if rng.random() < 0.5:  # a knit or print: blurred noise around the colour
        noise = cv2.GaussianBlur(rng.normal(0, 1, (CROP, CROP)).astype(np.float32), (0, 0), rng.uniform(0.6, 3.0))
        fill = fill + rng.uniform(8, 40) * noise[..., None] / (noise.std() + 1e-6)
    covered = region.astype(bool)
    out[covered] = np.clip(fill[covered], 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(out, (3, 3), 0) if rng.random() < 0.3 else out


class MaskTheFacePaster:
    """MaskTheFace's RGBA mask photographs, warped onto the face mesh by their six anchor points."""

    def __init__(self, folder: Path) -> None:
        cfg = configparser.ConfigParser()
        cfg.read(folder / "masks.cfg")
        self.templates = []
        for name in cfg.sections():
            if name.endswith(("_left", "_right")) or "template" not in cfg[name]:
                continue  # frontal crops: the frontal templates ('empty' / 'inpaint' name no image)
            image = cv2.imread(str(folder / "templates" / Path(cfg[name]["template"]).name), cv2.IMREAD_UNCHANGED)
            if image is None or image.ndim != 3 or image.shape[2] != 4:
                continue
            points = np.array([[float(v) for v in cfg[name][f"mask_{k}"].split(",")] for k in "abcdef"], np.float32)
            self.templates.append((name, image, points))
        if not self.templates:
            raise DatasetError(f"no MaskTheFace templates under {folder} (masks.cfg, templates/*.png)")

    def paste(self, crop: np.ndarray, vertices: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
        name, image, src = self.templates[int(rng.integers(len(self.templates)))]
        dst = np.array([vertices[MESH_ANCHORS[k], :2] for k in "abcdef"], np.float32)
        if dst[0, 0] > dst[2, 0]:  # the mesh's "a" side on the image's right: mirror the pairing
            dst = dst[[2, 1, 0, 5, 4, 3]]
        dst += rng.normal(0, 1.5, dst.shape).astype(np.float32)
        h, _ = cv2.findHomography(src, dst)
        warped = cv2.warpPerspective(image, h, (crop.shape[1], crop.shape[0]))
        alpha = warped[..., 3:4].astype(np.float32) / 255.0
        out = crop.astype(np.float32) * (1 - alpha) + warped[..., :3].astype(np.float32) * alpha
        return np.clip(out, 0, 255).astype(np.uint8), name


def samples(files: List[Path], synth: MaskSynthesizer, rng: np.random.Generator,
            paster: Optional[MaskTheFacePaster] = None, desc: str = "") -> Dict[str, List[np.ndarray]]:
    """Features per kind: ``clean``, ``masked`` (3D synthesizer), ``occluded`` (:func:`occlude`) and, with a
    paster, ``masktheface`` (and ``masktheface:<template>``, the same features per template)."""
    out: Dict[str, List[np.ndarray]] = {"clean": [], "masked": [], "occluded": []}
    if paster:
        out["masktheface"] = []
    for path in tqdm(files, desc=desc, unit="crop", file=sys.stderr):
        crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if crop is None or crop.shape[:2] != (CROP, CROP):
            logger.warning("skipped %s: not a %d px crop", path, CROP)
            continue
        vertices, _, _ = synth.fit_aligned(crop)
        nir = bool(rng.random() < 0.5)  # half the crops as simulated NIR (the mask rendered for it)
        masked = synth.synthesize(crop, rng=rng, nir=nir, face=vertices).image
        views = {"clean": crop, "masked": masked, "occluded": occlude(crop, rng)}
        if paster:
            views["masktheface"], template = paster.paste(crop, vertices, rng)
        for kind, image in views.items():
            if nir:
                image = simulate_nir(image, rng)
            out[kind].append(mask_features(jitter(image, rng)))
        if paster:  # the same features, filed per template too
            out.setdefault(f"masktheface:{template}", []).append(out["masktheface"][-1])
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 400) -> Tuple[np.ndarray, float]:
    """L2-regularised logistic regression by full-batch Adam on standardised features."""
    w, b = np.zeros(x.shape[1], np.float64), 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    lr, beta1, beta2 = 0.05, 0.9, 0.999
    for t in range(1, iters + 1):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w + b, -40, 40)))
        g_w = x.T @ (p - y) / len(y) + l2 * w
        g_b = float(np.mean(p - y))
        m_w, v_w = beta1 * m_w + (1 - beta1) * g_w, beta2 * v_w + (1 - beta2) * g_w ** 2
        m_b, v_b = beta1 * m_b + (1 - beta1) * g_b, beta2 * v_b + (1 - beta2) * g_b ** 2
        w -= lr * (m_w / (1 - beta1 ** t)) / (np.sqrt(v_w / (1 - beta2 ** t)) + 1e-8)
        b -= lr * (m_b / (1 - beta1 ** t)) / (np.sqrt(v_b / (1 - beta2 ** t)) + 1e-8)
    return w.astype(np.float32), b


def rates(check: MaskCheck, feats: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    """Fraction called masked, per kind (for ``clean``: the false refusals)."""
    return {kind: round(float((check.scores(np.stack(f)) >= check.threshold).mean()), 4)
            for kind, f in feats.items() if f}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=Path, required=True, help="aligned 112 px crops, <identity>/<image>")
    parser.add_argument("--split", type=Path, default=Path("docs/study/lfw_val_split.json"))
    parser.add_argument("--masktheface", type=Path, default=None, help="MaskTheFace folder (masks.cfg, templates/)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--train-per-identity", type=int, default=2)
    parser.add_argument("--val-per-identity", type=int, default=6)
    parser.add_argument("--max-identities", type=int, default=0, help="use only this many of each part (0: all)")
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--textures", type=Path, default=None,
                        help="extra cloth prints for the 3D synthesizer's training masks (e.g. MaskTheFace's textures)")
    parser.add_argument("--max-refusal", type=float, default=0.02,
                        help="largest fraction of clean threshold-half crops the threshold may refuse")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.time()

    split = json.loads(args.split.read_text())
    if args.max_identities:
        for part in ("train", "test"):
            split[part]["identities"] = split[part]["identities"][:args.max_identities]
    rng = np.random.default_rng(args.seed)
    synth = MaskSynthesizer(seed=args.seed, textures=str(args.textures) if args.textures else None)
    train = samples(split_crops(args.crops, split, "train", args.train_per_identity), synth, rng, desc="train")
    val_ids = list(split["test"]["identities"])
    rng.shuffle(val_ids)
    halves = {"threshold": val_ids[: len(val_ids) // 2], "report": val_ids[len(val_ids) // 2:]}
    paster = MaskTheFacePaster(args.masktheface) if args.masktheface else None
    val = {part: samples(split_crops(args.crops, {"test": {"identities": ids}}, "test", args.val_per_identity),
                         synth, rng, paster, desc=f"validation ({part})") for part, ids in halves.items()}

    covered = train["masked"] + train["occluded"]
    x = np.stack(train["clean"] + covered).astype(np.float64)
    y = np.concatenate([np.zeros(len(train["clean"])), np.ones(len(covered))])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    w, b = fit_logistic((x - mean) / scale, y, args.l2)
    check = MaskCheck(w, b, mean.astype(np.float32), scale.astype(np.float32), 0.5, HogSpec())
    clean_scores = np.sort(check.scores(np.stack(val["threshold"]["clean"])))
    check.threshold = float(clean_scores[int(np.ceil((1 - args.max_refusal) * len(clean_scores))) - 1] + 1e-6)
    report = {part: rates(check, feats) for part, feats in val.items()}
    check.info = {
        "trained_with": "python tools/train_mask_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": {"split": str(args.split), "train_identities": len(split["train"]["identities"]),
                 "train_crops": len(train["clean"]), "validation_identities": {k: len(v) for k, v in halves.items()},
                 "validation_crops": {k: len(v["clean"]) for k, v in val.items()}},
        "training_masks": "hsst.synth 3D synthesizer (surgical, kn95, n95, cloth) and plain occluders (bands, "
                          "ellipses; flat or textured), half in simulated NIR",
        "threshold_rule": f"refuses at most {args.max_refusal:.0%} of the clean crops of the threshold half",
        "validation": report, "simulated": True, "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    check.save(args.out)
    logger.info("threshold %.3f; called masked per kind: %s", check.threshold, json.dumps(report))
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
