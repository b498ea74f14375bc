"""Procedural mask templates: a region and a texture in the mesh UV space (see :mod:`hsst.synth.mask.uv`).

Every template is the project's own procedural geometry and texture: no image files. A template says

* where the mask's top edge runs (control points ``(|u|, v)`` in UV: from the nose bridge under the eyes to
  the ears; the eye contours sit at v <= 0.12, so every template keeps its top edge well below them),
* its outline (surgical / cloth: everything below the top edge out to the extruded face oval; N95: a cup),
* its texture: albedo (colour, pattern), structure (pleats, seams, welds, nose strip: shading that also shows
  in NIR), alpha,
* its material (NIR reflectance relative to skin; dyes are mostly invisible in NIR) and 3D shape (how far it
  stands off the face, how far it extends beyond the jaw, ear loops or head straps).

Textures are rasterised on a fixed grid over UV (:data:`TEXTURE_GRID`) and cached by their parameters.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.errors import ConfigError
from hsst.core.registry import Registry
from hsst.face.mesh import canonical_vertices
from hsst.synth.mask.uv import oval_outward_normals

BGR = Tuple[int, int, int]


@dataclass(frozen=True)
class TextureGrid:
    """Pixel grid of template textures over UV: ``u in [u0, u1]``, ``v in [v0, v1]``, ``ppu`` pixels per unit."""

    u0: float = -3.2
    u1: float = 3.2
    v0: float = -0.8
    v1: float = 4.8
    ppu: float = 80.0

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in pixels."""
        return int(round((self.u1 - self.u0) * self.ppu)), int(round((self.v1 - self.v0) * self.ppu))

    def to_pixels(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) UV -> texture pixel coordinates (x, y)."""
        return (np.asarray(uv, dtype=np.float32) - np.float32([self.u0, self.v0])) * np.float32(self.ppu)

    def mesh(self) -> Tuple[np.ndarray, np.ndarray]:
        """(H, W) arrays of u and v at the pixel centres."""
        w, h = self.size
        u = self.u0 + (np.arange(w, dtype=np.float32) + 0.5) / self.ppu
        v = self.v0 + (np.arange(h, dtype=np.float32) + 0.5) / self.ppu
        return np.meshgrid(u, v)


TEXTURE_GRID = TextureGrid()


@dataclass(frozen=True)
class Material:
    """How a mask fabric looks under active NIR light.

    Attributes:
        name: material name.
        nir_reflectance: range of NIR reflectance relative to skin (skin = 1).
        nir_dye_contrast: range of the fraction of a printed pattern's contrast that survives in NIR (most
            textile dyes are transparent at 850 nm).
    """

    name: str
    nir_reflectance: Tuple[float, float]
    nir_dye_contrast: Tuple[float, float]


MATERIALS: Dict[str, Material] = {m.name: m for m in (
    Material("polypropylene", (0.7, 0.9), (0.0, 0.03)),   # spun-bond / melt-blown non-woven
    Material("cotton", (0.6, 0.85), (0.0, 0.1)),
    Material("polyester", (0.55, 0.8), (0.0, 0.1)),
)}


@dataclass(frozen=True)
class Extrusion:
    """How far the mask extends beyond the face oval (real masks stand off the jaw and go under the chin).

    Lengths in canonical units (1 = half the inter-ocular distance). ``uv_*`` is the texture extent of the
    extruded ring (fixed, so hems can be drawn); ``xy_*`` / ``back_*`` the 3D offset (outward in the face
    plane, and backwards towards the neck / ears), jittered per instance.
    """

    uv_chin: float = 0.45
    uv_side: float = 0.2
    xy_chin: float = 0.45
    xy_side: float = 0.12
    back_chin: float = 0.35
    back_side: float = 0.35


@dataclass(frozen=True)
class MaskTemplate:
    """One mask type.

    Attributes:
        name: registry key (``surgical``, ``kn95``, ``n95``, ``cloth``).
        material: key of :data:`MATERIALS`.
        colours: named BGR colours to draw from.
        top: control points ``(|u|, v)`` of the top edge, |u| increasing.
        shape: ``taut`` (fabric spans nose tip to chin), ``ridge`` (folded centre seam), ``dome`` (moulded cup).
        standoff: strength of ``shape`` (0: skin-tight).
        extrusion: see :class:`Extrusion`.
        loops: ``ear`` (thin elastic ear loops) or ``straps`` (two head straps).
        loop_width: loop thickness in canonical units.
        relief: strength of the shading by the mask surface's own orientation (0: none).
        patterns: cloth patterns to draw from (``plain``, ``stripes``, ``checks``, ``dots``).
        painter: fills the texture: ``painter(u, v, t, inside_dist, style, rng) -> (structure, alpha, override)``
            (``override``: weight of a part with its own colour, or None).
    """

    name: str
    material: str
    colours: Dict[str, BGR]
    top: Tuple[Tuple[float, float], ...]
    shape: str
    standoff: float
    painter: Callable
    extrusion: Extrusion = field(default_factory=Extrusion)
    loops: str = "ear"
    loop_width: float = 0.05
    relief: float = 0.15
    patterns: Tuple[str, ...] = ("plain",)

    def top_edge(self, u: np.ndarray) -> np.ndarray:
        """v of the top edge at ``u`` (symmetric)."""
        pts = np.asarray(self.top, dtype=np.float32)
        return np.interp(np.abs(u), pts[:, 0], pts[:, 1]).astype(np.float32)


@dataclass(frozen=True)
class MaskStyle:
    """The drawn appearance of one mask instance (recorded in manifests; equal styles share a texture).

    Attributes:
        mask_type: template name.
        colour: colour name; ``colour_bgr`` its value.
        pattern: ``plain``, ``stripes``, ``checks``, ``dots`` or ``file:<path>`` (an external texture).
        colour2_bgr: second pattern colour.
        pattern_scale: period of the pattern in canonical units.
        pattern_angle: stripe angle in degrees.
        valve: N95 exhalation valve.
        nir_reflectance: relative to skin.
        nir_dye_contrast: surviving pattern contrast in NIR.
    """

    mask_type: str
    colour: str
    colour_bgr: BGR
    pattern: str = "plain"
    colour2_bgr: BGR = (255, 255, 255)
    pattern_scale: float = 0.5
    pattern_angle: float = 0.0
    valve: bool = False
    nir_reflectance: float = 0.75
    nir_dye_contrast: float = 0.0

    def to_dict(self) -> dict:
        return {"mask_type": self.mask_type, "colour": self.colour, "colour_bgr": list(self.colour_bgr),
                "pattern": self.pattern, "colour2_bgr": list(self.colour2_bgr), "pattern_scale": self.pattern_scale,
                "pattern_angle": self.pattern_angle, "valve": self.valve,
                "nir_reflectance": round(self.nir_reflectance, 4),
                "nir_dye_contrast": round(self.nir_dye_contrast, 4)}


# ----------------------------------------------------------------------------------------------- painting


def _smooth_noise(shape: Tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def _line(d: np.ndarray, width: float) -> np.ndarray:
    """Soft line profile (1 at d = 0) of half-width ``width``."""
    return np.exp(-(d / width) ** 2)


def _nonwoven(shape: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    return 1.0 + 0.035 * _smooth_noise(shape, rng, 0.8) + 0.02 * _smooth_noise(shape, rng, 6.0)


def _weave(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, freq: float = 14.0) -> np.ndarray:
    grid = np.sin(2 * np.pi * u * freq) * np.sin(2 * np.pi * v * freq)
    return 1.0 + 0.03 * grid + 0.03 * _smooth_noise(u.shape, rng, 1.0) + 0.02 * _smooth_noise(u.shape, rng, 8.0)


def _hem(t: np.ndarray, dist: np.ndarray, at: float, width: float = 0.02) -> np.ndarray:
    """Seam shading: a stitched line ``at`` units inside the top edge and inside the outer boundary."""
    return -0.15 * (_line(t - at, width) + _line(dist - at, width))


def _paint_surgical(u, v, t, dist, style: MaskStyle, rng):
    height = np.float32(3.4)
    structure = _nonwoven(u.shape, rng) + _hem(t, dist, 0.16)
    for k in (0.36, 0.52, 0.68):   # three pleats, following the top edge
        d = t - k * height
        structure += -0.28 * _line(d, 0.035) + 0.1 * _line(d + 0.08, 0.06) - 0.05 * np.clip(d / 0.3, 0, 1) * (d < 0.3)
    strip = (np.abs(u) < 0.6) & (t > 0.04) & (t < 0.13)   # metal nose strip under the fabric
    structure += 0.07 * strip - 0.1 * (_line(t - 0.04, 0.012) + _line(t - 0.13, 0.012)) * (np.abs(u) < 0.6)
    return structure, (t >= 0).astype(np.float32), None


def _paint_kn95(u, v, t, dist, style: MaskStyle, rng):
    structure = _nonwoven(u.shape, rng)
    structure += -0.25 * _line(u, 0.03) + 0.08 * _line(np.abs(u) - 0.07, 0.04)   # folded, welded centre seam
    dots = (np.cos(2 * np.pi * u / 0.09) > 0.2) & (np.cos(2 * np.pi * v / 0.09) > -0.5)
    weld = (_line(t - 0.12, 0.02) + _line(dist - 0.12, 0.02)) * dots
    structure += -0.2 * weld
    return structure, (t >= 0).astype(np.float32), None


N95_CUP = (0.0, 2.1, 1.75, 1.8)   # centre u, centre v, semi-axis u, semi-axis v


def _paint_n95(u, v, t, dist, style: MaskStyle, rng):
    cu, cv, a, b = N95_CUP
    r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
    structure = _nonwoven(u.shape, rng) + 0.06 * (1 - np.clip(r, 0, 1) ** 2)
    structure += 0.06 * ((r > 0.9) & (r <= 1.0)) - 0.15 * _line(r - 0.9, 0.012)     # moulded rim
    clip = (np.abs(u) < 0.5) & (r > 0.8) & (r < 0.9) & (v < cv)                      # nose clip
    structure += 0.1 * clip - 0.1 * _line(np.abs(u) - 0.5, 0.015) * (r > 0.8) * (r < 0.9) * (v < cv)
    override = None
    if style.valve:
        rv = np.sqrt((u - 0.85) ** 2 + (v - 2.45) ** 2)
        override = (rv < 0.38).astype(np.float32)
        structure += -0.3 * _line(rv - 0.38, 0.02) + override * (-0.12 * (np.sin(2 * np.pi * v / 0.12) > 0.4))
    return structure, (r <= 1.0).astype(np.float32), override


def _pattern(u, v, style: MaskStyle) -> np.ndarray:
    """Mixing weight (0: colour, 1: colour2) of a procedural print."""
    theta = np.deg2rad(style.pattern_angle)
    s = style.pattern_scale
    a = u * np.cos(theta) + v * np.sin(theta)
    b = -u * np.sin(theta) + v * np.cos(theta)
    if style.pattern == "stripes":
        return (np.mod(a / s, 1.0) < 0.5).astype(np.float32)
    if style.pattern == "checks":   # gingham: two crossing stripe sets, half-tone where they cross one
        return 0.5 * (np.mod(a / s, 1.0) < 0.5) + 0.5 * (np.mod(b / s, 1.0) < 0.5)
    if style.pattern == "dots":
        fa, fb = np.mod(a / s, 1.0) - 0.5, np.mod(b / s + 0.5 * (np.floor(a / s) % 2), 1.0) - 0.5
        return (fa ** 2 + fb ** 2 < 0.2 ** 2).astype(np.float32)
    return np.zeros_like(u)


def _paint_cloth(u, v, t, dist, style: MaskStyle, rng):
    structure = _weave(u, v, rng) + _hem(t, dist, 0.14)
    structure += -0.18 * _line(u, 0.025) + 0.06 * _line(np.abs(u) - 0.06, 0.04)   # contoured centre seam
    return structure, (t >= 0).astype(np.float32), None


# ------------------------------------------------------------------------------------------------ registry

#: Mask templates by name (``surgical``, ``kn95``, ``cloth``...).
TEMPLATES: Registry[MaskTemplate] = Registry("mask type")


def register_template(template: MaskTemplate) -> MaskTemplate:
    """Add a template to :data:`TEMPLATES` (name must be new)."""
    if template.material not in MATERIALS:
        raise ConfigError(f"template {template.name!r}: unknown material {template.material!r}")
    return TEMPLATES.register(template, name=template.name)


register_template(MaskTemplate(
    "surgical", "polypropylene",
    colours={"blue": (215, 170, 110), "green": (170, 190, 120), "white": (235, 235, 235),
             "black": (45, 40, 40), "pink": (190, 170, 230)},
    top=((0.0, 0.42), (0.35, 0.45), (1.0, 0.62), (1.7, 0.8), (2.4, 1.0), (3.2, 1.1)),
    shape="taut", standoff=1.0, painter=_paint_surgical, loops="ear", loop_width=0.04))
register_template(MaskTemplate(
    "kn95", "polypropylene",
    colours={"white": (232, 238, 238), "black": (38, 35, 35), "gray": (150, 150, 150), "pink": (200, 185, 235)},
    top=((0.0, 0.3), (0.3, 0.36), (1.0, 0.62), (2.4, 1.12), (3.2, 1.2)),
    shape="ridge", standoff=1.0, painter=_paint_kn95, loops="ear", loop_width=0.04, relief=0.2))
register_template(MaskTemplate(
    "n95", "polypropylene",
    colours={"white": (235, 240, 240), "off-white": (205, 220, 225), "blue-gray": (190, 175, 160)},
    top=tuple((float(a), float(N95_CUP[1] - N95_CUP[3] * np.sqrt(max(0.0, 1 - (a / N95_CUP[2]) ** 2))))
              for a in np.linspace(0, N95_CUP[2], 9)) + ((N95_CUP[2] + 0.01, 99.0),),
    shape="dome", standoff=1.0, painter=_paint_n95, loops="straps", loop_width=0.08, relief=0.3,
    # a moulded cup seals on the cheeks: it extends under the chin only, not back towards the ears
    extrusion=Extrusion(uv_chin=0.5, uv_side=0.0, xy_chin=0.5, xy_side=0.0, back_chin=0.25, back_side=0.0)))
register_template(MaskTemplate(
    "cloth", "cotton",
    colours={"black": (40, 38, 38), "navy": (90, 50, 40), "gray": (125, 120, 120), "red": (45, 40, 170),
             "beige": (150, 180, 200), "olive": (70, 115, 110), "denim": (140, 95, 70), "white": (230, 230, 230)},
    top=((0.0, 0.4), (0.35, 0.44), (1.0, 0.6), (1.7, 0.78), (2.4, 0.98), (3.2, 1.08)),
    shape="taut", standoff=0.8, painter=_paint_cloth, loops="ear", loop_width=0.07,
    patterns=("plain", "stripes", "checks", "dots")))


def get_template(name: str) -> MaskTemplate:
    """Template by name; the error lists the known ones."""
    return TEMPLATES.get(name)


def sample_style(template: MaskTemplate, rng: np.random.Generator,
                 textures: Sequence[str] = ()) -> MaskStyle:
    """Draw colours, pattern and NIR material values for one mask of ``template``.

    Args:
        template: the mask type.
        rng: random generator (the only source of randomness).
        textures: image files to use as cloth prints (``--textures``); cloth masks pick one of them 30% of the
            time when given.
    """
    names = sorted(template.colours)
    colour = names[int(rng.integers(len(names)))]
    material = MATERIALS[template.material]
    pattern = template.patterns[int(rng.integers(len(template.patterns)))]
    others = [n for n in names if n != colour]
    colour2 = template.colours[others[int(rng.integers(len(others)))]] if others else (255, 255, 255)
    if template.name == "cloth" and textures and rng.random() < 0.3:
        pattern = "file:" + str(textures[int(rng.integers(len(textures)))])
    return MaskStyle(
        mask_type=template.name, colour=colour, colour_bgr=template.colours[colour], pattern=pattern,
        colour2_bgr=colour2, pattern_scale=float(rng.choice([0.25, 0.35, 0.5])),
        pattern_angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        valve=bool(template.name == "n95" and rng.random() < 0.4),
        nir_reflectance=float(rng.uniform(*material.nir_reflectance)),
        nir_dye_contrast=float(rng.uniform(*material.nir_dye_contrast)))


# ------------------------------------------------------------------------------------------------ textures


@dataclass(frozen=True)
class MaskTexture:
    """A rasterised template texture on :data:`TEXTURE_GRID` (colour-free: colours and prints are evaluated
    per rendered pixel by :func:`albedo_at`, so one texture serves every colour of a template).

    Attributes:
        maps: (H, W, 4) uint8: structure x 127 (127: flat fabric), alpha x 255, albedo override x 255 (an N95
            valve's own colour), unused.
    """

    maps: np.ndarray


def extruded_oval_uv(template: MaskTemplate) -> np.ndarray:
    """(K, 2) UV of the face oval pushed outwards by the template's extrusion (the mask's outer boundary)."""
    ids, normals = oval_outward_normals()
    base = canonical_vertices()[ids, :2]
    down = np.clip(normals[:, 1], 0.0, 1.0)
    length = template.extrusion.uv_side + (template.extrusion.uv_chin - template.extrusion.uv_side) * down
    return (base + normals * length[:, None]).astype(np.float32)


_CACHE: "OrderedDict[tuple, MaskTexture]" = OrderedDict()
_CACHE_SIZE = 16


def _render_texture(style: MaskStyle, key: tuple) -> MaskTexture:
    template = get_template(style.mask_type)
    grid = TEXTURE_GRID
    u, v = grid.mesh()
    t = v - template.top_edge(u)
    w, h = grid.size
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(grid.to_pixels(extruded_oval_uv(template))).astype(np.int32)], 1)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3) / grid.ppu
    seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")
    structure, alpha, override = template.painter(u, v, t, dist, style, np.random.default_rng(seed))
    alpha = alpha * inside
    override = np.zeros_like(u) if override is None else override
    maps = np.dstack([np.clip(structure * 127.0, 0, 255), alpha * 255.0, override * 255.0,
                      np.zeros_like(u)]).astype(np.uint8)
    return MaskTexture(maps)


def render_texture(style: MaskStyle) -> MaskTexture:
    """Rasterised texture of ``style``'s template (cached; do not modify it)."""
    key = (style.mask_type, style.valve)
    texture = _CACHE.get(key)
    if texture is None:
        texture = _render_texture(style, key)
        _CACHE[key] = texture
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return texture


_FILE_CACHE: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _file_tile(path: str, scale: float) -> np.ndarray:
    key = (path, scale)
    tile = _FILE_CACHE.get(key)
    if tile is None:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"cannot read cloth texture {path}; pass a folder of readable images to --textures")
        side = max(8, int(round(scale * TEXTURE_GRID.ppu * 3)))
        tile = cv2.resize(img, (side, max(8, int(round(side * img.shape[0] / img.shape[1])))),
                          interpolation=cv2.INTER_AREA)
        _FILE_CACHE[key] = tile
        while len(_FILE_CACHE) > 8:
            _FILE_CACHE.popitem(last=False)
    return tile


def albedo_at(u: np.ndarray, v: np.ndarray, style: MaskStyle, override: Optional[np.ndarray] = None) -> np.ndarray:
    """(..., 3) float32 BGR albedo in [0, 1] of ``style`` at UV points ``u``, ``v``.

    Args:
        u: UV coordinates (any shape).
        v: same shape as ``u``.
        style: colours and print.
        override: weight in [0, 1] of a built-in part's own colour (the N95 valve's gray), same shape as ``u``.

    Returns:
        Albedo and the print weight (same shape as ``u``; 0 for plain fabric) used for the NIR dye residual.
    """
    c1 = np.float32(style.colour_bgr) / 255.0
    if style.pattern.startswith("file:"):
        tile = _file_tile(style.pattern[5:], style.pattern_scale)
        th, tw = tile.shape[:2]
        px = np.mod(np.round((u - TEXTURE_GRID.u0) * TEXTURE_GRID.ppu).astype(np.int64), tw)
        py = np.mod(np.round((v - TEXTURE_GRID.v0) * TEXTURE_GRID.ppu).astype(np.int64), th)
        albedo = tile[py, px].astype(np.float32) / 255.0
        weight = albedo.mean(-1)
        weight = weight - weight.mean() + 0.5 if weight.size else weight
    else:
        weight = _pattern(u, v, style).astype(np.float32)
        c2 = np.float32(style.colour2_bgr) / 255.0
        albedo = c1 + weight[..., None] * (c2 - c1)
    if override is not None:
        grey = np.float32((0.78, 0.78, 0.78))
        albedo = albedo + override[..., None] * (grey - albedo)
    return albedo.astype(np.float32), weight


def list_texture_files(folder: Optional[str]) -> Tuple[str, ...]:
    """Image files under ``folder`` (recursive) for cloth prints, sorted; empty when ``folder`` is None."""
    if not folder:
        return ()
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--textures {folder}: not a folder")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not files:
        raise ConfigError(f"--textures {folder}: no .png/.jpg/.bmp images found")
    return tuple(files)
