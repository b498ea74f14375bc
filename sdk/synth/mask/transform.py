"""``(image, rng) -> image`` training transform: simulated NIR of a 3D-masked face ("nir-sim+mask").

Order: the mask is synthesised on the colour image first, carrying its material (it is written as a neutral
gray at its NIR reflectance relative to the skin's NIR-like level, see
:mod:`hsst.synth.mask.synthesizer`), then the whole frame is NIR-simulated, so the simulator's illumination,
blur and sensor noise act on face and mask alike and the mask's NIR look is its reflectance, not its dye.
Torch-free; the trainer registers it in its transform registry.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from hsst.core.image import check_frame, to_bgr
from hsst.synth.mask.synthesizer import MASK_TYPES, MaskSynthesizer
from hsst.synth.nir import NirSimConfig, NirSimulator

logger = logging.getLogger(__name__)

ALIGNED_SIZES = (112, 144)


class MaskedNirTransform:
    """Simulated NIR with a synthesised mask; the output is HxW uint8 ("simulated NIR").

    Args:
        types: mask types to draw from.
        p_mask: probability of masking an image (the rest are only NIR-simulated).
        nir_config: NIR simulation ranges (default :class:`~hsst.synth.nir.NirSimConfig`).
        aligned: input images are aligned crops (face where the 5-point template puts it; the mesh is fitted
            without a detector). None: square 112 / 144 px images are taken as aligned.
        textures: folder of extra cloth prints.

    A face that cannot be found is NIR-simulated without a mask (counted in ``stats["no_face"]``).
    Instances pickle without their onnxruntime sessions (recreated lazily in each DataLoader worker).

    Example:
        >>> tf = MaskedNirTransform(types=("surgical", "kn95"))
        >>> nir = tf(bgr_crop, np.random.default_rng(0))
    """

    def __init__(self, types: Sequence[str] = MASK_TYPES, p_mask: float = 1.0,
                 nir_config: Optional[NirSimConfig] = None, aligned: Optional[bool] = None,
                 textures: Optional[str] = None) -> None:
        self.synth = MaskSynthesizer(types=types, textures=textures)
        self.nir = NirSimulator(nir_config)
        self.p_mask = float(p_mask)
        self.aligned = aligned
        self.stats = {"masked": 0, "no_face": 0, "unmasked": 0}

    def _is_aligned(self, image: np.ndarray) -> bool:
        if self.aligned is not None:
            return self.aligned
        h, w = image.shape[:2]
        return h == w and h in ALIGNED_SIZES

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        check_frame(image)
        bgr = to_bgr(image)
        center = None
        if rng.random() < self.p_mask:
            face = None
            if self._is_aligned(bgr):
                face = self.synth.fit_aligned(bgr)[0]
            result = self.synth.synthesize(bgr, rng=rng, nir=True, face=face)
            if result is None:
                self.stats["no_face"] += 1
            else:
                self.stats["masked"] += 1
                bgr = result.image
                center = result.landmarks.mean(0)
        else:
            self.stats["unmasked"] += 1
        return self.nir(bgr, rng, center)

    def __repr__(self) -> str:
        return f"MaskedNirTransform(types={self.synth.types}, p_mask={self.p_mask})"
