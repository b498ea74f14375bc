"""Landmark quality on real LFW faces: offset to the alignment template and consistency across views.

For ``--num`` LFW images (spread over the identity folders):

* template offset: the detected landmarks mapped by their own alignment transform, minus the template
  (112 px crop): the mean shows a systematic convention difference, the RMS the face-to-face spread;
* view consistency: the image rotated by ``--angle`` degrees, scaled by ``--scale`` and shifted is detected
  again; the mean distance between both faces' landmarks in their aligned crops (a perfect detector gives 0).

Usage:
    OMP_NUM_THREADS=1 python bench/landmark_consistency.py --num 40
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from hsst.samples import shared_dir
from hsst.core.alignment import estimate_alignment, reference_points, transform_points
from hsst.core.image import read_image
from hsst.face.detector import BlazeFaceDetector

logger = logging.getLogger("landmark_consistency")


def centre_face(kps: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return kps[int(np.argmin(np.linalg.norm(kps.mean(1) - centre, axis=1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=shared_dir() / "datasets" / "lfw")
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--angle", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=1.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folders = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    files = [sorted(folders[i * len(folders) // args.num].iterdir())[0] for i in range(args.num)]
    template = reference_points(112)
    for refine in (False, True):
        det = BlazeFaceDetector(threads=1, refine=refine)
        offsets, views = [], []
        for path in files:
            image = read_image(path)
            _, _, kps = det.detect(image)
            if not len(kps):
                continue
            k = centre_face(kps, np.array([image.shape[1] / 2, image.shape[0] / 2]))
            offsets.append(transform_points(k, estimate_alignment(k)) - template)
            warp = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), args.angle, args.scale)
            warp[:, 2] += (30, 20)
            moved = cv2.warpAffine(image, warp, (int(image.shape[1] * 1.3), int(image.shape[0] * 1.3)))
            _, _, kps2 = det.detect(moved)
            if not len(kps2):
                continue
            k2 = centre_face(kps2, transform_points(k, warp).mean(0))
            a = transform_points(k, estimate_alignment(k))
            b = transform_points(k2, estimate_alignment(k2))
            views.append(np.linalg.norm(a - b, axis=1).mean())
        off = np.array(offsets)
        views = np.array(views)
        logger.info("refine=%s, %d faces: template offset mean (x, y) per landmark %s px, RMS %s px",
                    refine, len(off), np.round(off.mean(0), 2).tolist(),
                    np.round(np.sqrt((off ** 2).sum(-1).mean(0)), 2).tolist())
        logger.info("refine=%s, %d faces: view consistency (rot %.0f deg, scale %.1f) mean %.2f px, p90 %.2f, "
                    "max %.2f", refine, len(views), args.angle, args.scale, views.mean(),
                    np.percentile(views, 90), views.max())


if __name__ == "__main__":
    main()
