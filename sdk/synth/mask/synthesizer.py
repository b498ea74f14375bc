"""3D masked-face synthesis (the paper's section II-B, Fig. 3) on the 468-vertex face mesh.

Pipeline for one face:

1. fit the mesh (detector + :class:`hsst.face.mesh.FaceMesh`), and its pose against the canonical mesh;
2. the template's region in UV space picks the covered triangles (:math:`T_I` minus that region is
   :math:`\\hat{T}_I`, the face pixels we keep); the covered part of the mesh gets the mask's 3D shape: it
   stands off the face (taut from nose tip to chin, a folded ridge, or a moulded cup) and is extended beyond
   the jaw and under the chin by extruding the face oval outwards and backwards;
3. the mask texture :math:`T_M` is mapped per triangle and rendered back at the face's pose with back-face
   culling and depth order (:mod:`hsst.synth.mask.render`), so it follows the face at yaw and pitch;
4. the mask receives the face's light (a robust smooth fit of the skin luminance under it) and a geometric
   shade from its own normals, its edge is feathered, ear loops / straps are drawn towards the ears.

NIR: in a NIR (gray) image, or when ``nir=True`` on a colour image that is about to be NIR-simulated, the
mask's appearance is its material's NIR reflectance relative to the skin it covers, with its structure
(pleats, seams) but not its dye colours. On a colour image with ``nir=True`` the mask is written as a
neutral gray whose level is that reflectance times the skin's red-dominated (NIR-like) level, so any
VIS -> NIR channel mix maps it to the intended NIR brightness and the simulator's illumination, blur and
noise apply to it like to the face.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.alignment import reference_points
from hsst.core.errors import ConfigError, InputError
from hsst.core.image import to_gray_or_bgr
from hsst.face.mesh import CHIN, NOSE_BRIDGE, NOSE_TIP, MeshResult, MeshRoi, mesh_keypoints
from hsst.synth.mask.render import RenderMesh, fit_shading, rasterize, sample, vertex_normals_z
from hsst.synth.mask.templates import (N95_CUP, TEXTURE_GRID, MaskStyle, MaskTemplate, albedo_at, get_template,
                                       list_texture_files, render_texture, sample_style)
from hsst.synth.mask.uv import FacePose, closed_triangles, fit_pose, orient_like, oval_outward_normals, vertex_uv

logger = logging.getLogger(__name__)

MASK_TYPES = ("surgical", "kn95", "n95", "cloth")


@dataclass
class MaskResult:
    """One synthesised masked face.

    Attributes:
        image: the masked image, same shape and channels as the input (uint8).
        mask_type: template name.
        params: everything drawn for this mask (style, NIR reflectance, placement, pose), JSON-serialisable.
        coverage: (H, W) bool, pixels covered by the mask fabric (loops / straps excluded).
        landmarks: (5, 2) float32 landmarks of the *unmasked* face (order of
            :data:`hsst.core.alignment.KEYPOINT_NAMES`), for alignment.
        vertices: (468, 3) float32 mesh of the unmasked face.
    """

    image: np.ndarray
    mask_type: str
    params: Dict
    coverage: np.ndarray
    landmarks: np.ndarray
    vertices: np.ndarray = field(repr=False, default=None)


@dataclass
class MaskGeometry:
    """The mask's 3D surface for one face (image space), before rasterisation."""

    mesh: RenderMesh
    pose: FacePose
    template: MaskTemplate
    face_triangle: np.ndarray   # (T,) bool: triangle belongs to the original face surface (not the extrusion)


def _interp_profile(y: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    order = np.argsort(ys)
    return np.interp(y, ys[order], zs[order])


class MaskGeometryBuilder:
    """Builds the mask surface of a template on a fitted face (steps 2 and 3 of the module docstring)."""

    def __init__(self) -> None:
        self.uv = vertex_uv()
        self.triangles = closed_triangles()
        self.oval_ids, self.oval_normals = oval_outward_normals()
        self._strips: Dict[tuple, np.ndarray] = {}

    def build(self, vertices: np.ndarray, template: MaskTemplate, jitter: Dict[str, float]) -> MaskGeometry:
        """Mask geometry for ``vertices`` (468, 3) and ``template``; ``jitter`` holds the placement draws."""
        pose = fit_pose(vertices)
        face = pose.to_canonical(vertices.astype(np.float64))           # frontalised, canonical units
        uv = self.uv.astype(np.float64) + np.float64([0.0, jitter["dv"]])
        t = uv[:, 1] - template.top_edge(uv[:, 0])                     # > 0: below the mask's top edge
        shaped = face.copy()
        shaped[:, 2] = self._standoff(face, uv, t, template, jitter["standoff"])

        # extrude the lower face oval: real masks stand off the jaw and continue under the chin
        ext = template.extrusion
        lower = t[self.oval_ids] > -0.3
        ids, normals = self.oval_ids[lower], self.oval_normals[lower]
        down = np.clip(normals[:, 1], 0.0, 1.0)
        xy_len = (ext.xy_side + (ext.xy_chin - ext.xy_side) * down) * jitter["extrude"]
        back = ext.back_side + (ext.back_chin - ext.back_side) * down
        new_pts = shaped[ids].copy()
        new_pts[:, :2] += normals * xy_len[:, None]
        new_pts[:, 2] += back
        uv_len = ext.uv_side + (ext.uv_chin - ext.uv_side) * down
        new_uv = uv[ids] + normals * uv_len[:, None]

        n = len(face)
        all_pts = np.vstack([shaped, new_pts])
        all_uv = np.vstack([uv, new_uv])
        tris = self._with_strip(tuple(np.flatnonzero(lower).tolist()), n)

        t_all = all_uv[:, 1] - template.top_edge(all_uv[:, 0])
        t_max = t_all[tris].max(1)
        textured = t_max >= 0
        face_triangle = np.zeros(len(tris), bool)
        face_triangle[:len(self.triangles)] = True
        # occluders: only the face band just above the mask (nose bridge, cheekbones) can hide part of it;
        # forehead and eyes cannot at any plausible pose, and skipping them halves the rasterisation
        keep = t_max > -0.8
        tris, textured, face_triangle = tris[keep], textured[keep], face_triangle[keep]

        img_pts = pose.to_image(all_pts)
        img_pts[:n] = np.where(np.abs(shaped - face)[:, 2:3] > 0, img_pts[:n], vertices)   # exact where untouched
        shade = (1.0 - template.relief) + template.relief * vertex_normals_z(img_pts, tris)
        mesh = RenderMesh(xy=img_pts[:, :2].astype(np.float32), z=img_pts[:, 2].astype(np.float32),
                          uv=(TEXTURE_GRID.to_pixels(all_uv) - 0.5).astype(np.float32),
                          shade=shade.astype(np.float32), triangles=tris, textured=textured)
        return MaskGeometry(mesh, pose, template, face_triangle)

    def _with_strip(self, pos: Tuple[int, ...], n: int) -> np.ndarray:
        """Mesh triangles plus the quads between consecutive extruded oval vertices (cached per extruded set)."""
        key = (pos, n)
        if key not in self._strips:
            new_index = {p: n + k for k, p in enumerate(pos)}
            strip = []
            for p in pos:
                q = (p + 1) % len(self.oval_ids)   # the oval list is cyclic
                if q in new_index:
                    a, b = int(self.oval_ids[p]), int(self.oval_ids[q])
                    strip += [(a, b, new_index[q]), (a, new_index[q], new_index[p])]
            strip = np.asarray(strip, dtype=np.int64).reshape(-1, 3)
            self._strips[key] = np.vstack([self.triangles, orient_like(self.triangles, strip)])
        return self._strips[key]

    @staticmethod
    def _standoff(face: np.ndarray, uv: np.ndarray, t: np.ndarray, template: MaskTemplate,
                  strength: float) -> np.ndarray:
        """Depth (canonical z, larger is farther) of the mask surface over the covered vertices."""
        x, y, z = face[:, 0], face[:, 1], face[:, 2]
        bridge = np.asarray(NOSE_BRIDGE)
        tip, chin = face[NOSE_TIP], face[CHIN]
        ridge = _interp_profile(y, face[bridge, 1], face[bridge, 2])
        below = y > tip[1]
        slope = (chin[2] - tip[2]) / max(chin[1] - tip[1], 1e-3)
        ridge = np.where(below, tip[2] + (y - tip[1]) * slope, ridge)
        weight = np.clip(t / 0.3, 0.0, 1.0)                      # tight along the top edge (nose strip)
        if template.shape == "ridge":
            surface = ridge - 0.05 + 0.45 * np.abs(x) + 0.1 * x * x
        elif template.shape == "dome":
            cu, cv, a, b = N95_CUP
            r2 = ((uv[:, 0] - cu) / a) ** 2 + ((uv[:, 1] - cv) / b) ** 2
            surface = tip[2] - 0.15 + 1.4 * r2
            weight = weight * np.clip((1.0 - np.sqrt(r2)) / 0.25, 0.0, 1.0)   # the rim seals on the face
        else:
            surface = ridge + 0.55 * x * x
        target = np.minimum(z, surface) - 0.04                     # fabric thickness
        return z + strength * template.standoff * weight * (target - z)


def _side_visible(pose: FacePose, side: float) -> bool:
    """Whether the head side ``side`` (-1 image-left, +1 image-right in the canonical frame) faces the camera."""
    normal = pose.rotation @ np.array([side, 0.0, 0.0])
    return normal[2] < 0.35


def _quadratic_bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, steps: int = 16) -> np.ndarray:
    s = np.linspace(0.0, 1.0, steps)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s * s * p2


class MaskSynthesizer:
    """Puts procedural masks on faces, through the face mesh (3D), in colour or NIR images.

    Args:
        mesh: a :class:`hsst.face.mesh.FaceMesh` (created on first use when None).
        types: mask types to draw from (keys of :data:`hsst.synth.mask.templates.TEMPLATES`).
        seed: seed used when :meth:`synthesize` gets no ``rng``.
        detector: a :class:`hsst.face.detector.FaceDetector` (created on first use when None).
        textures: folder of extra cloth print images (e.g. MaskTheFace's textures), or None.
        refine: run the mesh a second time on the ROI of its first result (steadier at large pose).

    Example:
        >>> synth = MaskSynthesizer(types=("surgical", "n95"), seed=0)
        >>> result = synth.synthesize(bgr_image)
        >>> result.image, result.mask_type, result.coverage.mean()
    """

    def __init__(self, mesh=None, types: Sequence[str] = MASK_TYPES, seed: int = 0, detector=None,
                 textures: Optional[str] = None, refine: bool = False) -> None:
        if isinstance(types, str):
            types = tuple(s.strip() for s in types.split(",") if s.strip())
        if not types:
            raise ConfigError("MaskSynthesizer needs at least one mask type")
        self.templates = [get_template(name) for name in types]
        self.types = tuple(types)
        self.seed = int(seed)
        self._mesh = mesh
        self._detector = detector
        self.textures = list_texture_files(textures)
        self.refine = refine
        self.geometry = MaskGeometryBuilder()

    def __getstate__(self) -> dict:
        # onnxruntime sessions do not pickle: workers (multiprocessing, DataLoader) create their own lazily
        state = dict(self.__dict__)
        state["_mesh"] = None
        state["_detector"] = None
        return state

    # ------------------------------------------------------------------------------------------ face fitting
    @property
    def mesh(self):
        if self._mesh is None:
            from hsst.face.mesh import FaceMesh
            self._mesh = FaceMesh(threads=1)
        return self._mesh

    @property
    def detector(self):
        if self._detector is None:
            from hsst.face.detector import FaceDetector
            self._detector = FaceDetector(threads=1)
        return self._detector

    def fit_face(self, image: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray, float]]:
        """Largest face in ``image``: (vertices (468, 3), landmarks (5, 2), score), or None without a face."""
        backend = getattr(self.detector, "backend", self.detector)
        if hasattr(backend, "detect_meshes"):
            boxes, scores, meshes = backend.detect_meshes(image)
        else:
            boxes, scores, kps = self.detector.detect(image)
            meshes = [self.mesh.predict(image, box=b, eyes=k[:2]) for b, k in zip(boxes, kps)]
        if not len(boxes):
            return None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        best = int(np.argmax(areas))
        result = meshes[best]
        if self.refine:
            result = self.mesh.predict(image, roi=MeshRoi.from_vertices(result.vertices))
        return result.vertices, result.keypoints(), float(scores[best])

    def fit_aligned(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
        """Mesh of an already aligned square crop (face where :func:`reference_points` puts it; no detector)."""
        size = image.shape[0]
        ref = reference_points(size)
        centre = (ref[:2].mean(0) + ref[3:].mean(0)) / 2
        iod = float(np.linalg.norm(ref[1] - ref[0]))
        roi = MeshRoi(float(centre[0]), float(centre[1]), 3.3 * iod, 0.0)
        result = self.mesh.predict(image, roi=roi)
        # the template ROI is a guess (pose and face shape vary): always refine once from the first mesh
        result = self.mesh.predict(image, roi=MeshRoi.from_vertices(result.vertices))
        return result.vertices, result.keypoints(), result.score

    # ----------------------------------------------------------------------------------------------- synthesis
    def synthesize(self, image: np.ndarray, rng: Optional[np.random.Generator] = None,
                   mask_type: Optional[str] = None, nir: Optional[bool] = None,
                   face: Union[None, MeshResult, np.ndarray] = None) -> Optional[MaskResult]:
        """Put a mask on the largest face of ``image``.

        Args:
            image: HxWx3 BGR (VIS) or HxW gray (NIR) frame, uint8 or uint16 (scaled to uint8).
            rng: random generator for every draw (default: one seeded with the synthesizer's ``seed``).
            mask_type: force a type; otherwise drawn from ``types``.
            nir: render the mask's NIR appearance (default: True for gray input, False for colour). On a colour
                image the fabric is then written as a neutral gray at its NIR level, for a NIR simulation to follow.
            face: a fitted :class:`~hsst.face.mesh.MeshResult` or (468, 3) vertices; skips detection.

        Returns:
            The result, or None when no face is found in ``image`` (bad input raises
            :class:`~hsst.core.errors.InputError`).
        """
        img = to_gray_or_bgr(image)
        gray = img.ndim == 2
        nir = gray if nir is None else bool(nir)
        rng = rng if rng is not None else np.random.default_rng(self.seed)

        score = 1.0
        if face is None:
            fitted = self.fit_face(img)
            if fitted is None:
                return None
            vertices, landmarks, score = fitted
        else:
            vertices = face.vertices if isinstance(face, MeshResult) else np.asarray(face, dtype=np.float32)
            if vertices.shape != (468, 3):
                raise InputError(f"face must be a MeshResult or (468, 3) vertices, got shape {vertices.shape}")
            landmarks = mesh_keypoints(vertices)
            score = float(face.score) if isinstance(face, MeshResult) else 1.0

        template = get_template(mask_type) if mask_type else self.templates[int(rng.integers(len(self.templates)))]
        style = sample_style(template, rng, self.textures)
        jitter = {"dv": float(rng.uniform(-0.06, 0.06)), "standoff": float(rng.uniform(0.7, 1.1)),
                  "extrude": float(rng.uniform(0.8, 1.2)), "noise_seed": int(rng.integers(2 ** 31))}
        out, coverage, pose = self.render(img, vertices, template, style, jitter, nir)
        params = {"style": style.to_dict(), "nir": nir, "placement": {k: round(v, 4) if isinstance(v, float) else v
                                                                       for k, v in jitter.items()},
                  "yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2),
                  "mesh_score": round(score, 4), "pose_rms": round(pose.rms, 4)}
        return MaskResult(out, template.name, params, coverage, np.asarray(landmarks, np.float32),
                          np.asarray(vertices, np.float32))

    def render(self, img: np.ndarray, vertices: np.ndarray, template: MaskTemplate, style: MaskStyle,
               jitter: Dict, nir: bool) -> Tuple[np.ndarray, np.ndarray, FacePose]:
        """Render one mask (fixed draws) onto uint8 ``img``; returns (image, coverage, pose)."""
        h, w = img.shape[:2]
        geom = self.geometry.build(np.asarray(vertices, np.float64), template, jitter)
        coverage = np.zeros((h, w), bool)
        raster = rasterize(geom.mesh, (w, h))
        if raster is None:
            return img.copy(), coverage, geom.pose
        maps = sample(render_texture(style).maps, raster).astype(np.float32)
        alpha = maps[:, :, 1] * (1.0 / 255.0) * raster.textured
        inside = alpha > 0.5
        # geometric shade relative to the mask's typical facing: it models relief, the level comes from the skin
        shade = raster.shade / max(float(np.median(raster.shade[inside])) if inside.any() else 1.0, 1e-3)
        structure = maps[:, :, 0] * (1.0 / 127.0) * shade
        painted = np.nonzero(alpha > 0)
        grid = TEXTURE_GRID
        u = (raster.map_x[painted] + 0.5) / grid.ppu + grid.u0
        v = (raster.map_y[painted] + 0.5) / grid.ppu + grid.v0
        albedo_px, print_px = albedo_at(u, v, style, maps[:, :, 2][painted] * (1.0 / 255.0))
        rows, cols = raster.slices
        roi = img[rows, cols].astype(np.float32)
        iod_px = 2.0 * geom.pose.scale

        # the face's light: robust smooth fit of skin luminance under the mask (NIR: a red-dominated mix)
        if roi.ndim == 2:
            lum = roi
        elif nir:
            lum = 0.75 * roi[:, :, 2] + 0.2 * roi[:, :, 1] + 0.05 * roi[:, :, 0]
        else:
            lum = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
        skin = (alpha > 0.5) & geom.face_triangle[np.maximum(raster.ids, 0)] & (raster.ids >= 0)
        light = fit_shading(lum + 1.0, skin)
        if light is None:
            light = np.full(lum.shape, max(float(np.median(lum)), 1.0), np.float32)
        ref = float(np.median(light[skin])) if skin.any() else float(light.mean())
        if nir:
            printed = np.full(alpha.shape, 0.5, np.float32)
            printed[painted] = print_px
            dye = 1.0 + style.nir_dye_contrast * (printed - 0.5) * 2.0
            level = style.nir_reflectance * light * structure * dye
            fabric = level if roi.ndim == 2 else np.repeat(level[:, :, None], 3, axis=2)
            if roi.ndim == 2:   # match the frame's sensor noise on the new surface
                sigma = _noise_sigma(roi)
                noise = np.random.default_rng(jitter["noise_seed"]).standard_normal(roi.shape).astype(np.float32)
                fabric = fabric + sigma * noise
        else:
            albedo = np.zeros(alpha.shape + (3,), np.float32)
            albedo[painted] = albedo_px
            exposure = float(np.clip(ref / 150.0, 0.45, 1.0)) ** 0.7   # brighter frames: no clipped white masks
            fabric = albedo * (structure * (light / max(ref, 1.0)) * exposure * 255.0)[:, :, None]

        # feather the edge slightly (sub-pixel to ~1 px at typical sizes) so it does not look pasted
        sigma = max(0.5, 0.02 * iod_px)
        soft = np.minimum(alpha, cv2.GaussianBlur(alpha, (0, 0), sigma))   # inwards: no halo outside the fabric
        a = soft if roi.ndim == 2 else soft[:, :, None]
        blended = roi * (1.0 - a) + fabric * a
        out = img.copy()
        out[rows, cols] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        coverage[rows, cols] = alpha > 0.5
        self._draw_loops(out, geom, template, style, nir, ref, raster)
        return out, coverage, geom.pose

    def _draw_loops(self, out: np.ndarray, geom: MaskGeometry, template: MaskTemplate, style: MaskStyle,
                    nir: bool, ref: float, raster) -> None:
        """Ear loops (or N95 head straps) from the mask's sides towards the ears, on the visible sides."""
        pose = geom.pose
        thick = max(1, int(round(template.loop_width * pose.scale)))
        if nir:
            level = float(np.clip(style.nir_reflectance * ref * 1.05, 0, 255))
            colour = (level,) * (1 if out.ndim == 2 else 3)
        else:
            base = np.float32(style.colour_bgr if template.name == "cloth" else
                              ((235, 235, 235) if template.name != "n95" else (200, 200, 205)))
            colour = tuple(float(c) for c in np.clip(base * np.clip(ref / 150.0, 0.45, 1.0) ** 0.7, 0, 255))
        if out.ndim == 2:
            colour = colour[0]
        top = float(template.top_edge(np.array([2.2]))[0])
        for side in (-1.0, 1.0):
            if not _side_visible(pose, side):
                continue
            if template.loops == "straps":
                paths = [(np.array([1.55, 1.3, 0.3]), np.array([2.3, 0.9, 1.8]), np.array([2.5, 0.3, 3.3])),
                         (np.array([1.58, 2.8, 0.6]), np.array([2.2, 2.9, 2.0]), np.array([2.45, 2.5, 3.4]))]
            else:
                paths = [(np.array([2.2, top + 0.1, 1.9]), np.array([2.75, 0.1, 3.0]), np.array([2.55, 0.9, 3.4])),
                         (np.array([2.55, 0.9, 3.4]), np.array([2.7, 2.3, 3.0]), np.array([1.95, 2.1, 1.8]))]
            for p0, p1, p2 in paths:
                pts = _quadratic_bezier(p0 * [side, 1, 1], p1 * [side, 1, 1], p2 * [side, 1, 1])
                xy = pose.to_image(pts)[:, :2]
                cv2.polylines(out, [np.round(xy * 16).astype(np.int32)], False, colour, thick, cv2.LINE_AA, 4)


def _noise_sigma(gray: np.ndarray) -> float:
    """Sensor noise level of a gray image region: robust std of its high-pass residual."""
    resid = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    return float(np.clip(1.4826 * np.median(np.abs(resid - np.median(resid))) * 1.2, 0.0, 12.0))


def rng_for(seed: int, key: str) -> np.random.Generator:
    """Random generator determined by ``(seed, key)`` (e.g. a file's relative path), stable across runs."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])
