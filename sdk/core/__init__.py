"""Concepts shared by trainer, exporter and runtime: alignment, preprocessing, metadata, images, errors."""
from hsst.core.alignment import TEMPLATE_112, align_face, estimate_alignment, reference_points
from hsst.core.errors import (ConfigError, DatasetError, HsstError, ImageReadError, InputError, ModelError)
from hsst.core.metadata import ModelMeta, Preprocess, sidecar_path
from hsst.core.preprocess import l2_normalize, to_input

__all__ = [
    "TEMPLATE_112", "align_face", "estimate_alignment", "reference_points",
    "ConfigError", "DatasetError", "HsstError", "ImageReadError", "InputError", "ModelError",
    "ModelMeta", "Preprocess", "sidecar_path", "l2_normalize", "to_input",
]
