"""Face sources of hsst-eval: what keys the embedding cache."""
from __future__ import annotations

import pytest

from hsst.eval.faces import create_face_source


def test_detect_signature_names_the_settings_that_change_the_crops():
    pytest.importorskip("tflite2onnx")
    source = create_face_source("detect", 112, det_thresh=0.5, min_face=20)
    assert source.signature == "detect:auto:0.5:20:112:light=retry"
