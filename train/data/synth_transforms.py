"""Registers the development-data synthesis of :mod:`hsst.synth` as training NIR transforms.

``nir-sim``: VIS -> simulated NIR. ``nir-sim+mask``: 3D masked-face synthesis, then simulated NIR (the mask
appears with its NIR reflectance). Both have the ``(image, rng) -> image`` transform signature.
"""
from hsst.synth.mask.transform import MaskedNirTransform
from hsst.synth.nir import NirSimulator
from hsst.train.data.transforms import register_nir_transform

register_nir_transform("nir-sim")(NirSimulator)
register_nir_transform("nir-sim+mask")(MaskedNirTransform)
