"""3D masked-face synthesis on the face mesh: UV templates, rendering, the 2D pasting baseline, quality checks."""
from hsst.synth.mask.synthesizer import MASK_TYPES, MaskResult, MaskSynthesizer, rng_for
from hsst.synth.mask.templates import MATERIALS, TEMPLATES, MaskStyle, MaskTemplate, get_template, register_template

__all__ = ["MASK_TYPES", "MaskResult", "MaskSynthesizer", "rng_for", "MATERIALS", "TEMPLATES", "MaskStyle",
           "MaskTemplate", "get_template", "register_template"]
