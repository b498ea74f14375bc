"""Does the mask sit right? Coverage of nose tip, mouth corners and chin, and never an eye, across yaw.

The ground truth is the mesh of the *unmasked* face; each method's coverage map (fabric pixels) is probed at
those landmarks. Faces are real LFW images binned by the yaw the mesh estimates (LFW has a range of poses).

Command (prints the pass rate per yaw bin for the 3D method and the 2D-homography baseline on the same faces)::

    python -m hsst.synth.mask.coverage --data /work/shared/datasets/lfw --scan 3000 --per-bin 40
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import click
import numpy as np

from hsst.core.errors import DatasetError, HsstError
from hsst.core.image import IMAGE_SUFFIXES, read_image
from hsst.face.mesh import CHIN, LEFT_EYE_CONTOUR, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP, RIGHT_EYE_CONTOUR

logger = logging.getLogger(__name__)

#: Landmarks the mask must cover.
COVER_POINTS: Dict[str, Tuple[int, ...]] = {"nose_tip": (NOSE_TIP,), "mouth_left": (MOUTH_LEFT,),
                                            "mouth_right": (MOUTH_RIGHT,), "chin": (CHIN,)}
#: Landmarks it must never cover (the whole eye opening contour).
EYE_POINTS: Dict[str, Tuple[int, ...]] = {"left_eye": LEFT_EYE_CONTOUR, "right_eye": RIGHT_EYE_CONTOUR}
#: Stricter fit: a mask spans the cheeks ear to ear, so it also covers these cheek / jaw vertices (where the
#: camera sees them): canonical (+-1.45, 1.58) on the cheeks and (+-1.24, 2.51) on the jaw.
CHEEK_POINTS: Dict[str, Tuple[int, ...]] = {"cheek_left": (207, 210), "cheek_right": (427, 430)}
#: Ear to ear: vertices one ring inside the face oval at nose and mouth height, canonical (+-1.97, 1.33) and
#: (+-1.73, 1.91). Probed on the side that faces the camera (both sides within 15 degrees of frontal); not
#: for N95 cups, which seal inside the oval.
SIDE_POINTS: Dict[str, Tuple[int, ...]] = {"side_left": (147, 192), "side_right": (376, 416)}
#: Yaw bin edges in degrees.
YAW_BINS = (-45.0, -30.0, -15.0, 15.0, 30.0, 45.0)


@dataclass
class CoverageCheck:
    """Result of probing one coverage map at the visible landmarks of the unmasked face.

    Attributes:
        covered: landmark name -> covered (for :data:`COVER_POINTS`).
        eye_hit: names of eyes any of whose visible contour points is covered.
        cheeks: cheek name -> all of its visible points covered (:data:`CHEEK_POINTS`).
        sides: side name -> covered, for the probed sides (:data:`SIDE_POINTS`); empty when not probed.
    """

    covered: Dict[str, bool]
    eye_hit: List[str]
    cheeks: Dict[str, bool]
    sides: Dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """The requirement: nose tip, both mouth corners and chin covered, no eye point covered."""
        return all(self.covered.values()) and not self.eye_hit

    @property
    def fit_passed(self) -> bool:
        """The requirement plus cheeks and the camera-facing side(s) covered (the mask spans ear to ear)."""
        return self.passed and all(self.cheeks.values()) and all(self.sides.values())


def _inside(coverage: np.ndarray, point: np.ndarray) -> bool:
    h, w = coverage.shape
    x, y = int(round(float(point[0]))), int(round(float(point[1])))
    return 0 <= x < w and 0 <= y < h


def _probe(coverage: np.ndarray, point: np.ndarray) -> bool:
    """Covered; a point outside the frame (e.g. the chin below a tight 112x112 crop) counts as covered, since it
    cannot be judged (and cannot be an eye in view)."""
    if not _inside(coverage, point):
        return True
    return bool(coverage[int(round(float(point[1]))), int(round(float(point[0])))])


def visible_vertices(vertices: np.ndarray, image_size: Tuple[int, int], tol: float = 0.08) -> np.ndarray:
    """(468,) bool: vertex not hidden behind another part of its own mesh (e.g. the far eye's inner corner
    behind the nose at large yaw). ``tol`` is in units of half the inter-ocular distance."""
    from hsst.face.mesh import mesh_triangles
    from hsst.synth.mask.render import RenderMesh, rasterize
    from hsst.synth.mask.uv import fit_pose

    v = np.asarray(vertices, dtype=np.float32)
    tris = mesh_triangles()
    z = v[:, 2]
    depth_mesh = RenderMesh(xy=v[:, :2], z=z, uv=np.stack([z, np.zeros_like(z)], 1), shade=np.ones_like(z),
                            triangles=tris, textured=np.ones(len(tris), bool))
    raster = rasterize(depth_mesh, image_size, margin=1)
    visible = np.ones(len(v), bool)
    if raster is None:
        return visible
    x0, y0 = raster.origin
    h, w = raster.ids.shape
    px = np.round(v[:, 0]).astype(int) - x0
    py = np.round(v[:, 1]).astype(int) - y0
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    depth = np.full(len(v), np.inf, np.float32)
    depth[inside] = np.where(raster.textured[py[inside], px[inside]], raster.map_x[py[inside], px[inside]], np.inf)
    scale = fit_pose(v).scale
    return ~(z > depth + tol * scale)


def check_coverage(coverage: np.ndarray, vertices: np.ndarray, sides: bool = True) -> CoverageCheck:
    """Probe ``coverage`` (H, W) bool at the visible landmarks of the unmasked face's mesh ``vertices``.

    Args:
        coverage: mask fabric pixels.
        vertices: (468, 3) mesh of the unmasked face (ground truth).
        sides: also probe :data:`SIDE_POINTS` (ear-to-ear masks).
    """
    from hsst.synth.mask.uv import fit_pose

    v = np.asarray(vertices)[:, :2]
    seen = visible_vertices(vertices, coverage.shape[::-1])
    covered = {name: all(_probe(coverage, v[i]) for i in ids) for name, ids in COVER_POINTS.items()}
    eye_hit = [name for name, ids in EYE_POINTS.items()
               if any(seen[i] and _inside(coverage, v[i]) and _probe(coverage, v[i]) for i in ids)]
    cheeks = {name: all(_probe(coverage, v[i]) for i in ids if seen[i]) for name, ids in CHEEK_POINTS.items()}
    side_ok: Dict[str, bool] = {}
    if sides:
        yaw = fit_pose(vertices).yaw
        # yaw > 0: the face turns towards the image right, its image-left side faces the camera
        probe = ["side_left", "side_right"] if abs(yaw) <= 15 else (["side_left"] if yaw > 0 else ["side_right"])
        side_ok = {name: all(_probe(coverage, v[i]) for i in SIDE_POINTS[name] if seen[i]) for name in probe}
    return CoverageCheck(covered, eye_hit, cheeks, side_ok)


def yaw_bin(yaw: float, edges: Sequence[float] = YAW_BINS) -> Optional[int]:
    """Index of the bin of ``yaw`` (None outside the edges)."""
    if yaw < edges[0] or yaw > edges[-1]:
        return None
    return int(min(np.searchsorted(edges, yaw, side="right") - 1, len(edges) - 2))


def bin_label(i: int, edges: Sequence[float] = YAW_BINS) -> str:
    return f"[{edges[i]:+.0f},{edges[i + 1]:+.0f}]"


@dataclass
class PoseSample:
    """A face of the evaluation set: its file, the unmasked mesh and the pose the mesh estimates."""

    path: Path
    vertices: np.ndarray
    yaw: float
    pitch: float


def iter_images(root: Path) -> List[Path]:
    """Image files of an identity-folder dataset, sorted."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    files = sorted(p for p in root.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images under {root}/<identity>/ (expected {', '.join(IMAGE_SUFFIXES)})")
    return files


def scan_poses(root: Path, scan: int, per_bin: int, seed: int = 0, synth=None,
               edges: Sequence[float] = YAW_BINS) -> Iterator[PoseSample]:
    """Fit meshes on a seeded random subset of ``scan`` images and yield up to ``per_bin`` faces per yaw bin."""
    from hsst.synth.mask.synthesizer import MaskSynthesizer
    from hsst.synth.mask.uv import fit_pose

    synth = synth or MaskSynthesizer(seed=seed)
    files = iter_images(Path(root))
    order = np.random.default_rng(seed).permutation(len(files))[:scan]
    counts = [0] * (len(edges) - 1)
    for i in order:
        try:
            image = read_image(files[i])
        except HsstError:
            continue
        fitted = synth.fit_face(image)
        if fitted is None:
            continue
        pose = fit_pose(fitted[0])
        b = yaw_bin(pose.yaw, edges)
        if b is None or counts[b] >= per_bin:
            continue
        counts[b] += 1
        yield PoseSample(files[i], fitted[0], pose.yaw, pose.pitch)
        if min(counts) >= per_bin:
            return


def evaluate(samples: Sequence[PoseSample], seed: int = 0, types: Sequence[str] = ("surgical", "kn95", "n95", "cloth"),
             edges: Sequence[float] = YAW_BINS) -> Dict[str, Dict[str, List[bool]]]:
    """Pass/fail per method and yaw bin: every face gets every mask type from both methods.

    Returns:
        ``{method: {bin_label: [passed, ...]}}`` plus per-landmark failure counts under ``"_failures"``.
    """
    from hsst.synth.mask.baseline2d import LandmarkMaskPaster
    from hsst.synth.mask.synthesizer import MaskSynthesizer

    synth = MaskSynthesizer(types=types, seed=seed)
    paster = LandmarkMaskPaster(types=types, seed=seed)
    table: Dict[str, Dict[str, List[bool]]] = {"3d": {}, "2d": {}, "3d_fit": {}, "2d_fit": {}}
    failures: Dict[str, Dict[str, int]] = {"3d": {}, "2d": {}}
    for k, s in enumerate(samples):
        image = read_image(s.path)
        label = bin_label(yaw_bin(s.yaw, edges), edges)
        for t in types:
            r3 = synth.synthesize(image, rng=np.random.default_rng([seed, k]), mask_type=t, face=s.vertices)
            r2 = paster.paste(image, vertices=s.vertices, rng=np.random.default_rng([seed, k]), mask_type=t)
            for name, res in (("3d", r3), ("2d", r2)):
                check = check_coverage(res.coverage, s.vertices, sides=(t != "n95"))
                table[name].setdefault(label, []).append(check.passed)
                table[name + "_fit"].setdefault(label, []).append(check.fit_passed)
                for miss in ([n for n, ok in check.covered.items() if not ok] + check.eye_hit
                             + [n for n, ok in {**check.cheeks, **check.sides}.items() if not ok]):
                    failures[name][miss] = failures[name].get(miss, 0) + 1
    table["_failures"] = failures   # type: ignore[assignment]
    return table


def format_table(table: Dict, edges: Sequence[float] = YAW_BINS) -> str:
    """Markdown table of pass rates per yaw bin (requirement, and requirement + cheeks)."""
    lines = ["| yaw bin (deg) | faces x types | 3D mesh (hsst) | 2D 6-pt homography | 3D + cheeks | 2D + cheeks |",
             "|---|---|---|---|---|---|"]

    def rate(values: List[bool]) -> str:
        return f"{100 * float(np.mean(values)):.1f}%" if values else "-"

    labels = [bin_label(i, edges) for i in range(len(edges) - 1)]
    for label in labels + ["all"]:
        cols = []
        for key in ("3d", "2d", "3d_fit", "2d_fit"):
            vals = [x for v in table[key].values() for x in v] if label == "all" else table[key].get(label, [])
            cols.append(vals)
        if not cols[0]:
            continue
        lines.append(f"| {label} | {len(cols[0])} | " + " | ".join(rate(c) for c in cols) + " |")
    lines.append("")
    lines.append(f"failed checks by landmark: 3D {table['_failures']['3d']}, 2D {table['_failures']['2d']}")
    return "\n".join(lines)


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="identity-folder dataset (e.g. shared/datasets/lfw)")
@click.option("--scan", type=int, default=3000, show_default=True, help="images fitted (seeded random subset)")
@click.option("--per-bin", type=int, default=40, show_default=True, help="faces kept per yaw bin")
@click.option("--seed", type=int, default=0, show_default=True)
def main(data: Path, scan: int, per_bin: int, seed: int) -> None:
    """Mask placement quality per yaw bin: 3D mesh synthesis against 2D-landmark pasting on the same faces."""
    logging.basicConfig(level=logging.WARNING)
    start = time.time()
    samples = list(scan_poses(data, scan, per_bin, seed))
    table = evaluate(samples, seed=seed)
    click.echo(format_table(table))
    click.echo(f"\n{len(samples)} LFW faces from {scan} scanned, {time.time() - start:.0f} s; yaw estimated from the "
               f"fitted mesh (Umeyama to the canonical mesh); ground truth = the unmasked face's mesh")


if __name__ == "__main__":
    main()
