"""VIS -> simulated NIR: a seeded, parameterised approximation of how faces look under active 850 nm light.

Everything computed on its output is labelled "simulated NIR"; it stands in for NIR data during
development, it is not NIR data. The model, step by step (each step's strength is drawn from a range):

1. **Reflectance** (``red_weight``, ``green_share``): skin reflects near-infrared much like red light and
   melanin / haemoglobin absorb little of it, so the NIR intensity is a channel mix dominated by red. Red lips
   and brown irises, which are dark in luminance, come out close to skin, as in real NIR (where the iris
   often looks lighter and flatter than in colour photos).
2. **Pigment fading** (``pigment_fade``): freckles, make-up, blemishes and lip colour are chroma contrasts that
   NIR barely sees. Where the local chroma (Lab a*, b*) deviates from its surroundings, the mixed channel is
   pulled towards the level of the surrounding low-chroma skin; shape edges (eyes, nostrils, hair) are
   luminance edges with little chroma deviation and survive.
3. **Skin smoothing** (``smoothing``): NIR light scatters deeper under the skin, so fine texture softens:
   a blend with a bilateral filter of the result.
4. **Active illumination** (``exposure``, ``falloff``, ``center_jitter``, ``hotspot_*``): a frontal IR
   illuminator lights the face centre most and falls off quadratically towards the periphery; optionally a
   soft specular hot spot (forehead / nose bridge).
5. **Camera** (``gamma``, ``blur_sigma``, ``shot_noise``, ``read_noise``): response curve, optics blur, shot
   noise (variance proportional to the signal) and Gaussian read noise; output is single-channel uint8.

Determinism: the output depends only on the image, the configuration and the random generator's state.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.errors import ConfigError
from hsst.core.image import to_gray_or_bgr

Range = Tuple[float, float]
Seed = Union[int, np.random.Generator, None]


@dataclass
class NirSimConfig:
    """Ranges (low, high) every parameter of one simulation is drawn from, uniformly.

    A range with low == high fixes the parameter. Intensities are on a 0..1 scale; noise is in 8-bit levels.
    """

    red_weight: Range = (0.65, 0.85)
    green_share: Range = (0.6, 0.9)       # share of the non-red weight given to green (the rest to blue)
    pigment_fade: Range = (0.5, 0.9)
    smoothing: Range = (0.2, 0.5)
    exposure: Range = (0.85, 1.15)
    falloff: Range = (0.25, 0.55)         # relative brightness lost at the frame corner
    center_jitter: Range = (0.0, 0.08)    # illumination centre offset, fraction of the frame side
    hotspot_prob: float = 0.3
    hotspot_gain: Range = (0.04, 0.12)
    gamma: Range = (0.8, 1.2)
    blur_sigma: Range = (0.0, 1.0)
    shot_noise: Range = (0.0, 0.6)        # std of shot noise at full scale (255) is this x sqrt(255)
    read_noise: Range = (0.5, 3.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if len(value) != 2 or value[0] > value[1] or value[0] < 0:
                    raise ConfigError(f"NirSimConfig.{f.name} must be a (low, high) range with 0 <= low <= high, "
                                      f"got {value}")
        if not 0.0 <= self.hotspot_prob <= 1.0:
            raise ConfigError(f"NirSimConfig.hotspot_prob must be in [0, 1], got {self.hotspot_prob}")
        if self.red_weight[1] > 1.0 or self.falloff[1] >= 1.0:
            raise ConfigError("NirSimConfig.red_weight must be <= 1 and falloff < 1")


@dataclass
class NirSimParams:
    """The values drawn for one simulation (recordable in a manifest, replayable)."""

    red_weight: float
    green_share: float
    pigment_fade: float
    smoothing: float
    exposure: float
    falloff: float
    center_dx: float
    center_dy: float
    hotspot_gain: float
    hotspot_dx: float
    hotspot_dy: float
    gamma: float
    blur_sigma: float
    shot_noise: float
    read_noise: float
    noise_seed: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class NirSimulator:
    """Callable VIS -> simulated NIR transform (see the module docstring for the model).

    Args:
        config: parameter ranges.

    Example:
        >>> sim = NirSimulator()
        >>> nir = sim(bgr_image, rng=np.random.default_rng(0))   # HxW uint8, "simulated NIR"
    """

    def __init__(self, config: Optional[NirSimConfig] = None) -> None:
        self.config = config or NirSimConfig()

    def sample(self, rng: Seed = None) -> NirSimParams:
        """Draw one parameter set."""
        rng = _rng(rng)
        c = self.config
        u = lambda r: float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])  # noqa: E731
        angle = float(rng.uniform(0, 2 * np.pi))
        jitter = u(c.center_jitter)
        hotspot = bool(rng.random() < c.hotspot_prob)
        return NirSimParams(
            red_weight=u(c.red_weight), green_share=u(c.green_share), pigment_fade=u(c.pigment_fade),
            smoothing=u(c.smoothing), exposure=u(c.exposure), falloff=u(c.falloff),
            center_dx=jitter * np.cos(angle), center_dy=jitter * np.sin(angle),
            hotspot_gain=u(c.hotspot_gain) if hotspot else 0.0,
            hotspot_dx=float(rng.uniform(-0.05, 0.05)), hotspot_dy=float(rng.uniform(-0.15, 0.0)),
            gamma=u(c.gamma), blur_sigma=u(c.blur_sigma), shot_noise=u(c.shot_noise), read_noise=u(c.read_noise),
            noise_seed=int(rng.integers(0, 2 ** 31 - 1)))

    def __call__(self, image: np.ndarray, rng: Seed = None, center: Optional[Sequence[float]] = None) -> np.ndarray:
        """Simulated NIR of ``image`` (BGR, or gray: then only illumination and camera steps apply).

        Args:
            image: HxWx3 BGR or HxW gray frame (uint8 or uint16).
            rng: numpy Generator or integer seed.
            center: (x, y) the illuminator points at, in pixels (default: the frame centre; pass the face
                centre for frames with off-centre faces).

        Returns:
            HxW uint8, "simulated NIR".
        """
        return self.apply(image, self.sample(rng), center)

    def apply(self, image: np.ndarray, params: NirSimParams, center: Optional[Sequence[float]] = None) -> np.ndarray:
        """Apply a given parameter set (deterministic)."""
        img = to_gray_or_bgr(image)
        h, w = img.shape[:2]
        side = float(max(h, w))
        if img.ndim == 2:
            out = img.astype(np.float32) / 255.0
        else:
            out = self._reflectance(img, params)
        out = self._illuminate(out, params, center, side)
        return self._camera(out, params, side)

    @staticmethod
    def _reflectance(bgr: np.ndarray, p: NirSimParams) -> np.ndarray:
        b, g, r = cv2.split(bgr.astype(np.float32) * (1.0 / 255.0))
        rest = 1.0 - p.red_weight
        mixed = p.red_weight * r + rest * p.green_share * g + rest * (1.0 - p.green_share) * b
        side = max(bgr.shape[:2])
        sigma = max(1.0, side / 60.0)  # the scale of freckles / lip outline relative to a face-sized frame
        # a fixed, small window keeps the cost ~1-2 ms per face-sized frame (d=-1 would grow it with sigma^2)
        d = min(7, 2 * int(round(sigma)) + 1)
        # Local chroma deviation marks pigment (lips, make-up, freckles), not shape: pull those pixels towards
        # the level of the surrounding low-chroma skin (a normalised convolution that ignores pigment pixels),
        # then soften what detail is left with an edge-preserving filter.
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
        ab = lab[:, :, 1:]
        ab_local = cv2.GaussianBlur(ab, (0, 0), sigma * 2)
        deviation = np.sqrt(((ab - ab_local) ** 2).sum(-1))
        weight = np.clip((deviation - 3.0) / 9.0, 0.0, 1.0)  # mild chroma variation is left alone
        skin = 1.0 - weight
        blur = sigma * 1.5
        reference = cv2.GaussianBlur(mixed * skin, (0, 0), blur) / (cv2.GaussianBlur(skin, (0, 0), blur) + 1e-3)
        # bounded: pigment is a small intensity change; large chromatic objects (glasses, clothes) stay put
        delta = np.clip(reference - mixed, -0.12, 0.12)
        out = mixed + p.pigment_fade * weight * delta
        smooth = cv2.bilateralFilter(out, d=d, sigmaColor=0.05, sigmaSpace=sigma * 0.75)
        return out + p.smoothing * (smooth - out)

    @staticmethod
    def _illuminate(img: np.ndarray, p: NirSimParams, center: Optional[Sequence[float]], side: float) -> np.ndarray:
        h, w = img.shape[:2]
        cx, cy = (w / 2.0, h / 2.0) if center is None else (float(center[0]), float(center[1]))
        cx, cy = cx + p.center_dx * side, cy + p.center_dy * side
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        # normalised so that the frame corner (of a square frame around the centre) is at radius 1
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (0.5 * side * np.sqrt(2.0)) ** 2
        gain = p.exposure * (1.0 - p.falloff * np.minimum(r2, 1.5))
        out = img * gain
        if p.hotspot_gain > 0:
            hx, hy = cx + p.hotspot_dx * side, cy + p.hotspot_dy * side
            spot = np.exp(-((xs - hx) ** 2 + (ys - hy) ** 2) / (2 * (0.06 * side) ** 2))
            out = out + p.hotspot_gain * spot * img
        return out

    @staticmethod
    def _camera(img: np.ndarray, p: NirSimParams, side: float) -> np.ndarray:
        out = np.clip(img, 0.0, 1.0) ** p.gamma
        if p.blur_sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), p.blur_sigma * side / 250.0)
        levels = out * 255.0
        noise_rng = np.random.default_rng(p.noise_seed)
        std = np.sqrt(p.shot_noise ** 2 * levels + p.read_noise ** 2)
        levels = levels + noise_rng.standard_normal(levels.shape, dtype=np.float32) * std
        return np.clip(levels + 0.5, 0, 255).astype(np.uint8)


def simulate_nir(image_bgr: np.ndarray, rng: Seed = None, config: Optional[NirSimConfig] = None,
                 center: Optional[Sequence[float]] = None) -> np.ndarray:
    """Simulated NIR (HxW uint8) of a BGR image; see :class:`NirSimulator`."""
    return NirSimulator(config)(image_bgr, rng, center)


def nir_sim_transform(**ranges) -> NirSimulator:
    """Training transform factory: ``(image, rng) -> simulated NIR`` with :class:`NirSimConfig` ``ranges``.

    The trainer's registry adds it by name (hsst itself never imports hsst.train)::

        register_nir_transform("nir-sim")(nir_sim_transform)
    """
    return NirSimulator(NirSimConfig(**ranges))
