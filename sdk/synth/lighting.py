"""Hard light on a frame: side light, under/over-exposure and an illuminator hot spot (simulated).

Real NIR gates see faces lit from one side (sun through a door, a lamp beside the gate), under-exposed at
night and burned out near the illuminator. These functions put a uint8 gray or BGR frame under such light so
that detection can be measured and tested under it; everything computed on their output is "simulated".

All work on linear intensity (the 8-bit values are decoded with a gamma of 2.2, scaled, clipped and encoded
again), keep the frame's shape and dtype (uint8), and are deterministic: the random parts (which side the
light comes from, small jitters) depend only on the ``rng`` passed (a numpy Generator or an integer seed).

* :func:`directional_light`: light from ``angle_deg`` off the camera axis; the face is shaded as a vertical
  cylinder (Lambert), so the far side falls to a small ambient level, plus a mild specular stripe on the lit
  side.
* :func:`exposure`: ``stops`` EV up or down (linear intensity x ``2 ** stops``).
* :func:`hot_spot`: a bright Gaussian blob on the face that saturates part of it.

:data:`LIGHT_CONDITIONS` names the conditions the detection bench iterates over (``side-45``, ``side-60``,
``side-90``, ``under-2ev``, ``over-2ev``, ``hotspot``); :func:`apply_light` applies one by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.errors import ConfigError, InputError

Seed = Union[int, np.random.Generator, None]
GAMMA = 2.2
_SIDES = ("left", "right")


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_u8(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 HxW or HxWx{1,3} frame."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"lighting works on uint8 frames, got dtype {image.dtype}")
    if image.size == 0 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise InputError(f"image must be HxW or HxWx(1|3) and non-empty, got shape {image.shape}")
    return image


def to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 frame -> float32 linear intensity in [0, 1] (gamma 2.2 decoding)."""
    return (image.astype(np.float32) * (1.0 / 255.0)) ** GAMMA


def from_linear(linear: np.ndarray) -> np.ndarray:
    """Linear intensity -> uint8 (clipped to [0, 1], gamma 2.2 encoding, rounded)."""
    return (np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA) * 255.0 + 0.5).astype(np.uint8)


def _apply_gain(image: np.ndarray, gain: np.ndarray, add: Optional[np.ndarray] = None) -> np.ndarray:
    """``image`` under a per-pixel linear gain (HxW) and an optional additive linear light (HxW)."""
    linear = to_linear(image)
    if linear.ndim == 3:
        gain = gain[:, :, None]
        add = None if add is None else add[:, :, None]
    out = linear * gain
    if add is not None:
        out = out + add
    return from_linear(out)


def _face_geometry(shape: Tuple[int, ...], center: Optional[Sequence[float]],
                   radius: Optional[float]) -> Tuple[float, float, float]:
    """Face centre (x, y) and half-width in pixels (default: the frame centre, a quarter of the width)."""
    h, w = shape[:2]
    cx, cy = (w / 2.0, h / 2.0) if center is None else (float(center[0]), float(center[1]))
    r = 0.25 * w if radius is None else float(radius)
    if r <= 0:
        raise ConfigError(f"face radius must be positive, got {r}")
    return cx, cy, r


def directional_light(image: np.ndarray, angle_deg: float, side: Optional[str] = None, rng: Seed = None,
                      ambient: Tuple[float, float] = (0.02, 0.05), specular: Tuple[float, float] = (0.3, 0.6),
                      center: Optional[Sequence[float]] = None, radius: Optional[float] = None) -> np.ndarray:
    """The frame lit by one light ``angle_deg`` off the camera axis, from the left or the right.

    The face is a vertical cylinder of half-width ``radius`` around ``center``: a column at normalised offset
    ``u`` has the normal angle ``asin(u)`` and receives ``cos(asin(u) - angle)`` (Lambert, clipped at 0, the
    terminator softened by a blur of 0.15 ``radius``), so the shading is a smooth horizontal ramp, full on the
    lit side and down to ``ambient`` on the far side (beyond the face the ramp stays at its edge value). A
    mild specular stripe sits where the normal halves the angle between light and camera.

    Args:
        image: HxW or HxWx3 uint8 frame (gray NIR or BGR).
        angle_deg: light direction off the camera axis, 0..90 degrees (45..90: hard side light).
        side: ``left`` or ``right`` (the image side the light comes from); None: drawn from ``rng``.
        rng: numpy Generator or seed (side, ambient and specular level).
        ambient: range of the linear light level left on the far side (share of the full level).
        specular: range of the specular stripe's peak extra gain (0.3: the highlight is 30 % brighter).
        center: face centre (x, y) in pixels (default: the frame centre, as in LFW).
        radius: face half-width in pixels (default: a quarter of the frame width).

    Returns:
        The relit frame, same shape, uint8.

    Raises:
        ConfigError: angle outside 0..90 or unknown side. InputError: not a uint8 gray/BGR frame.
    """
    image = _check_u8(image)
    if not 0.0 <= angle_deg <= 90.0:
        raise ConfigError(f"angle_deg must be in [0, 90], got {angle_deg}")
    gen = _rng(rng)
    side = _SIDES[int(gen.integers(0, 2))] if side is None else side
    if side not in _SIDES:
        raise ConfigError(f"side must be one of {list(_SIDES)} or None, got {side!r}")
    amb, spec = float(gen.uniform(*ambient)), float(gen.uniform(*specular))
    h, w = image.shape[:2]
    cx, cy, r = _face_geometry(image.shape, center, radius)
    sign = -1.0 if side == "left" else 1.0  # light from the image left: the lit normals point to -x
    u = np.clip(sign * (np.arange(w, dtype=np.float32) - cx) / r, -1.0, 1.0)
    theta = np.deg2rad(angle_deg)
    lambert = np.clip(np.cos(np.arcsin(u) - theta), 0.0, 1.0)
    # an area light and light scattered under the skin soften the terminator: blur the ramp by 0.15 r
    lambert = cv2.GaussianBlur(lambert.reshape(1, -1).astype(np.float32), (0, 0), sigmaX=0.15 * r,
                               borderType=cv2.BORDER_REPLICATE).reshape(-1)
    column_gain = amb + (1.0 - amb) * lambert
    # specular: where the normal halves light and camera (normal angle theta / 2), a narrow vertical stripe
    # fading above and below the face centre; a gain (it shows on the face, not on a dark background)
    stripe = np.exp(-((u - np.sin(theta / 2.0)) ** 2) / (2 * 0.12 ** 2))
    ys = (np.arange(h, dtype=np.float32) - cy) / (0.8 * r)
    gain = column_gain[None, :] + spec * np.outer(np.exp(-ys ** 2 / 2), stripe)
    return _apply_gain(image, gain.astype(np.float32))


def exposure(image: np.ndarray, stops: float) -> np.ndarray:
    """The frame ``stops`` EV brighter (positive) or darker (negative): linear intensity x ``2 ** stops``.

    Args:
        image: HxW or HxWx3 uint8 frame.
        stops: exposure change in stops (-2: night under-exposure, +2: burned out), within [-8, 8].

    Returns:
        The re-exposed frame, same shape, uint8 (highlights clip at 255).
    """
    image = _check_u8(image)
    if not -8.0 <= stops <= 8.0:
        raise ConfigError(f"stops must be in [-8, 8], got {stops}")
    return from_linear(to_linear(image) * np.float32(2.0 ** stops))


def hot_spot(image: np.ndarray, rng: Seed = None, gain: Tuple[float, float] = (1.5, 2.5),
             sigma: Tuple[float, float] = (0.25, 0.35), offset: float = 0.35,
             center: Optional[Sequence[float]] = None, radius: Optional[float] = None) -> np.ndarray:
    """The frame with an illuminator hot spot: a bright Gaussian blob that burns out part of the face.

    Args:
        image: HxW or HxWx3 uint8 frame.
        rng: numpy Generator or seed (blob position, size and strength).
        gain: range of the blob's peak linear intensity (above 1: saturated core).
        sigma: range of the blob's standard deviation, as a share of the face half-width.
        offset: largest distance of the blob centre from the face centre, as a share of the half-width.
        center: face centre (x, y) in pixels (default: the frame centre).
        radius: face half-width in pixels (default: a quarter of the frame width).

    Returns:
        The frame with the hot spot, same shape, uint8.
    """
    image = _check_u8(image)
    gen = _rng(rng)
    h, w = image.shape[:2]
    cx, cy, r = _face_geometry(image.shape, center, radius)
    peak, s = float(gen.uniform(*gain)), float(gen.uniform(*sigma)) * r
    dist, angle = float(gen.uniform(0.0, offset)) * r, float(gen.uniform(0.0, 2 * np.pi))
    hx, hy = cx + dist * np.cos(angle), cy + dist * np.sin(angle)
    xs = np.exp(-((np.arange(w, dtype=np.float32) - hx) ** 2) / (2 * s * s))
    ys = np.exp(-((np.arange(h, dtype=np.float32) - hy) ** 2) / (2 * s * s))
    blob = peak * np.outer(ys, xs).astype(np.float32)
    return _apply_gain(image, np.ones((h, w), np.float32), blob)


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class LightCondition:
    """One named lighting condition: ``apply(image, rng) -> image``."""

    name: str
    description: str
    apply: Callable[[np.ndarray, Seed], np.ndarray]


def _side(angle: float) -> Callable[[np.ndarray, Seed], np.ndarray]:
    return lambda image, rng=None: directional_light(image, angle, rng=rng)


def _ev(stops: float) -> Callable[[np.ndarray, Seed], np.ndarray]:
    return lambda image, rng=None: exposure(image, stops)


LIGHT_CONDITIONS: Dict[str, LightCondition] = {c.name: c for c in (
    LightCondition("side-45", "directional light 45 deg off the camera axis, side drawn per image", _side(45.0)),
    LightCondition("side-60", "directional light 60 deg off the camera axis, side drawn per image", _side(60.0)),
    LightCondition("side-90", "directional light 90 deg off the camera axis (half the face in shadow)",
                   _side(90.0)),
    LightCondition("under-2ev", "under-exposed by 2 stops (night)", _ev(-2.0)),
    LightCondition("over-2ev", "over-exposed by 2 stops (burned out)", _ev(2.0)),
    LightCondition("hotspot", "illuminator hot spot saturating part of the face", hot_spot),
)}


def apply_light(image: np.ndarray, name: str, rng: Seed = None) -> np.ndarray:
    """``image`` under the named condition of :data:`LIGHT_CONDITIONS` (``none`` returns it unchanged).

    Args:
        image: HxW or HxWx3 uint8 frame.
        name: a key of :data:`LIGHT_CONDITIONS` or ``none``.
        rng: numpy Generator or seed.

    Returns:
        The frame under that light, same shape, uint8.

    Raises:
        ConfigError: unknown condition name.
    """
    if name == "none":
        return _check_u8(image)
    if name not in LIGHT_CONDITIONS:
        raise ConfigError(f"unknown light condition {name!r}; choose 'none' or one of {sorted(LIGHT_CONDITIONS)}")
    return LIGHT_CONDITIONS[name].apply(image, rng)
