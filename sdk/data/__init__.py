"""Face datasets on disk, torch-free: layouts (CASIA NIR-VIS 2.0, generic nir/vis trees, VIS-only identity
folders), the index they produce, and the training loader's fixed face framing.

The trainer (:mod:`hsst.train.data`, torch) and the evaluation (:mod:`hsst.eval`, torch-free) both read datasets
through this package.
"""
from hsst.data.layouts import (EXPECTED_LAYOUTS, LAYOUTS, detect_layout, index_casia, index_dataset, index_generic,
                               index_vis_folders)
from hsst.data.loader import LFW_FACE_BOX, FaceLoader
from hsst.data.records import NirVisIndex, ScanReport, SkippedItem

__all__ = ["EXPECTED_LAYOUTS", "LAYOUTS", "detect_layout", "index_casia", "index_dataset", "index_generic",
           "index_vis_folders", "LFW_FACE_BOX", "FaceLoader", "NirVisIndex", "ScanReport", "SkippedItem"]
