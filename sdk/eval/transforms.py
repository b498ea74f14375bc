"""Seeded probe transforms: a VIS probe set becomes simulated NIR, masked, or simulated masked NIR.

Transforms act on the aligned crop (as in training, where the NIR transform is applied to the loaded crop).
Each probe image draws its randomness from ``default_rng([seed, crc32(key)])``, where ``key`` is the image's
path relative to the dataset root: the same image gets the same simulated pixels in every run, in any order,
with any batch size, wherever the dataset lies.

Every result computed with ``nir_sim`` is "simulated NIR", and reports say so.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from hsst.core.image import to_bgr

#: Bump when a transform's output for the same (image, rng) changes, so cached embeddings are not reused.
TRANSFORM_VERSION = 1


@dataclass(frozen=True)
class ProbeTransform:
    """Probe-side synthesis options.

    Attributes:
        nir_sim: VIS -> simulated NIR (:mod:`hsst.synth.nir`).
        mask: synthesised 3D face mask (:mod:`hsst.synth.mask`); with ``nir_sim`` the mask is rendered with its
            NIR reflectance before the NIR simulation (:class:`hsst.synth.mask.transform.MaskedNirTransform`).
        mask_types: comma list of mask types (None: all).
        seed: base seed of every draw.
    """

    nir_sim: bool = False
    mask: bool = False
    mask_types: Optional[str] = None
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.nir_sim or self.mask

    @property
    def name(self) -> str:
        """``none``, ``nir-sim``, ``mask`` or ``nir-sim+mask``."""
        parts = (["nir-sim"] if self.nir_sim else []) + (["mask"] if self.mask else [])
        return "+".join(parts) or "none"

    @property
    def label(self) -> str:
        """Words for report titles: ``simulated NIR, synthesized masks``."""
        parts = (["simulated NIR"] if self.nir_sim else []) + (["synthesized masks"] if self.mask else [])
        return ", ".join(parts) or "no probe transform"

    @property
    def signature(self) -> str:
        """Cache key part: everything that changes the probe pixels."""
        if not self.active:
            return "none"
        types = f"[{self.mask_types}]" if self.mask and self.mask_types else ""
        return f"{self.name}{types}:v{TRANSFORM_VERSION}:seed{self.seed}"

    def rng_for(self, key: str) -> np.random.Generator:
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])

    def build(self) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        """The ``(crop, rng) -> crop`` callable (identity when inactive)."""
        types = tuple(t.strip() for t in self.mask_types.split(",") if t.strip()) if self.mask_types else None
        if self.nir_sim and self.mask:
            from hsst.synth.mask.transform import MaskedNirTransform

            kwargs = {"types": types} if types else {}
            return MaskedNirTransform(aligned=True, **kwargs)
        if self.nir_sim:
            from hsst.synth.nir import NirSimulator

            sim = NirSimulator()
            return lambda crop, rng: sim(to_bgr(crop), rng)
        if self.mask:
            return _VisMask(types)
        return lambda crop, rng: crop


class _VisMask:
    """A synthesised mask on a VIS (colour) or NIR (gray) aligned crop, no NIR simulation."""

    def __init__(self, types) -> None:
        from hsst.synth.mask import MaskSynthesizer

        self.synth = MaskSynthesizer(**({"types": types} if types else {}))

    def __call__(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        vertices = self.synth.fit_aligned(crop)[0]
        result = self.synth.synthesize(crop, rng=rng, face=vertices)
        return crop if result is None else result.image
