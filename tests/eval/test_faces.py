"""Face sources of hsst-eval: the gate's detector settings, and what keys the embedding cache."""
from __future__ import annotations

import dataclasses

import pytest

from hsst.eval.faces import DetectSource, create_face_source
from hsst.runtime.config import DetectorConfig, GateConfig


@pytest.fixture(scope="module")
def default_source():
    pytest.importorskip("tflite2onnx")
    return create_face_source("detect", 112)


def test_detect_runs_the_runtimes_default_detector_settings(default_source):
    """Without a gate config the evaluation detects with the gate's defaults, not a threshold of its own."""
    gate = GateConfig().detector
    backend = default_source.app.detector.backend
    assert default_source.detector == gate
    assert (backend.det_thresh, backend.min_face, backend.normalize) == (gate.det_thresh, gate.min_face,
                                                                        gate.normalize)


def test_detect_signature_names_the_settings_that_change_the_crops(default_source):
    other = DetectSource(112, dataclasses.replace(GateConfig().detector, det_thresh=0.5, min_face=20))
    assert other.signature != default_source.signature
    assert '"det_thresh": 0.5' in other.signature and '"min_face": 20' in other.signature
    assert other.signature.startswith("detect:blazeface:112:")
    # where and how often the detector runs changes no crop: same cache entries
    threads = DetectSource(112, dataclasses.replace(GateConfig().detector, threads=1, every_n_frames=2))
    assert threads.signature == default_source.signature


def test_a_tensorrt_gate_config_is_evaluated_on_onnxruntime():
    pytest.importorskip("tflite2onnx")
    source = DetectSource(112, DetectorConfig(backend="tensorrt", model_dir="/opt/hsst/models", min_face=48))
    assert (source.detector.backend, source.detector.model_dir, source.detector.min_face) == ("onnxruntime", None, 48)
    assert source.describe()["detector"]["min_face"] == 48
