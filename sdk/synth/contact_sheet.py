"""Contact sheet of the masked-face synthesis: original / simulated NIR / masked simulated NIR over poses.

Built from shared data at build time and never committed::

    python -m hsst.synth.contact_sheet --in /work/shared/datasets/lfw --out build/contact_sheet.png
    hsst-mask sheet --in /work/shared/datasets/lfw --out build/contact_sheet.png

Rows are LFW faces picked across yaw (estimated from the fitted mesh), columns: the original, its simulated
NIR, a colour masked version, then the same simulated NIR with each mask type (3D synthesis). Every NIR
tile is labelled "simulated NIR".
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Sequence

import click
import cv2
import numpy as np

from hsst.core.errors import DatasetError, HsstError
from hsst.core.image import read_image, to_bgr
from hsst.synth.mask.coverage import scan_poses
from hsst.synth.mask.synthesizer import MASK_TYPES, MaskSynthesizer
from hsst.synth.nir import NirSimulator

logger = logging.getLogger(__name__)

TILE = 176
HEADER = 22


def _face_crop(image: np.ndarray, vertices: np.ndarray, size: int = TILE) -> np.ndarray:
    """Square crop around the mesh (1.5x its extent), resized to ``size``."""
    lo, hi = vertices[:, :2].min(0), vertices[:, :2].max(0)
    centre, side = (lo + hi) / 2 + np.float32([0, 0.08 * (hi - lo)[1]]), 1.5 * float((hi - lo).max())
    scale = size / side
    matrix = np.float32([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = to_bgr(tile).copy()
    cv2.rectangle(tile, (0, tile.shape[0] - 18), (tile.shape[1], tile.shape[0]), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def make_contact_sheet(data: Path, out: Path, seed: int = 0, scan: int = 600,
                       types: Sequence[str] = MASK_TYPES, rows_per_bin: int = 1) -> np.ndarray:
    """Write the contact sheet PNG to ``out`` and return it.

    Args:
        data: identity-folder dataset.
        out: PNG path (its folder is created).
        seed: selection and synthesis seed.
        scan: images fitted to find faces of every yaw bin.
        types: mask types, one column each.
        rows_per_bin: faces per yaw bin (bins of :data:`hsst.synth.mask.coverage.YAW_BINS`).
    """
    synth = MaskSynthesizer(types=types, seed=seed)
    samples = sorted(scan_poses(Path(data), scan, rows_per_bin, seed, synth), key=lambda s: s.yaw)
    if not samples:
        raise DatasetError(f"no faces found in the first {scan} images scanned under {data}")
    nir = NirSimulator()
    rows: List[np.ndarray] = []
    for k, s in enumerate(samples):
        image = to_bgr(read_image(s.path))
        rng = np.random.default_rng([seed, k])
        params = nir.sample(rng)
        centre = s.vertices[:, :2].mean(0)
        vis_mask = synth.synthesize(image, rng=rng, mask_type=types[k % len(types)], face=s.vertices)
        tiles = [_label(_face_crop(image, s.vertices), f"original yaw {s.yaw:+.0f}"),
                 _label(_face_crop(nir.apply(image, params, centre), s.vertices), "simulated NIR"),
                 _label(_face_crop(vis_mask.image, s.vertices), f"{vis_mask.mask_type} (colour)")]
        for t in types:
            masked = synth.synthesize(image, rng=rng, mask_type=t, nir=True, face=s.vertices)
            tiles.append(_label(_face_crop(nir.apply(masked.image, params, centre), s.vertices),
                                f"{t}, simulated NIR"))
        rows.append(np.hstack(tiles))
    grid = np.vstack(rows)
    header = np.zeros((HEADER, grid.shape[1], 3), np.uint8)
    cv2.putText(header, "hsst-mask: 3D masked-face synthesis on LFW - NIR columns are SIMULATED NIR, not real NIR",
                (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    sheet = np.vstack([header, grid])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise HsstError(f"cannot write {out}")
    logger.info("contact sheet with %d faces written to %s", len(samples), out)
    return sheet


@click.command()
@click.option("--in", "in_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scan", type=int, default=600, show_default=True)
@click.option("--rows-per-bin", type=int, default=1, show_default=True)
def main(in_dir: Path, out_path: Path, seed: int, scan: int, rows_per_bin: int) -> None:
    """Contact sheet: original / simulated NIR / masked simulated NIR across poses and mask types."""
    try:
        make_contact_sheet(in_dir, out_path, seed=seed, scan=scan, rows_per_bin=rows_per_bin)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"contact sheet (simulated NIR): {out_path}")


if __name__ == "__main__":
    main()
