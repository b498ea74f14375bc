"""Development data synthesis (torch-free): VIS -> simulated NIR, 3D masked-face synthesis, ``hsst-mask``."""

# 3D masked-face synthesis (hsst.synth.mask)
from hsst.synth.mask import MASK_TYPES, MaskResult, MaskSynthesizer  # noqa: E402,F401
from hsst.synth.mask.baseline2d import LandmarkMaskPaster  # noqa: E402,F401
from hsst.synth.mask.transform import MaskedNirTransform  # noqa: E402,F401
