"""onnxruntime INT8 (x86 gates) and the TensorRT-style symmetric Q/DQ copy, on real faces."""
import numpy as np
import onnx
import pytest

from hsst.core.errors import ConfigError
from hsst.export.onnx_export import export_onnx
from hsst.export.parity import compare_embeddings, onnx_session
from hsst.export.quantize import FaceCalibrationReader, QuantizeConfig, quantize_onnx


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory, probe_net, gray_meta):
    path = tmp_path_factory.mktemp("q") / "m.onnx"
    export_onnx(probe_net, gray_meta, path, dynamic=True, batch=16, simplify=True)
    return path


def test_int8_matches_fp32_on_held_out_faces(tmp_path, fp32_onnx, lfw_faces):
    calib, test = lfw_faces[:48], lfw_faces[48:]
    out = quantize_onnx(fp32_onnx, tmp_path / "m.int8.onnx", calib, config=QuantizeConfig(batch=16))
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QLinearConv", "QLinearAdd"} <= ops and "PRelu" not in ops  # integer end to end
    assert out.stat().st_size < 0.5 * fp32_onnx.stat().st_size  # int8 weights
    ref = onnx_session(fp32_onnx).run(None, {"input": test})[0]
    got = onnx_session(out).run(None, {"input": test})[0]
    report = compare_embeddings(ref, got, "onnx-int8", "onnxruntime-fp32", "onnxruntime-int8")
    assert report.passed and report.cosine_mean >= 0.99, report


def test_tensorrt_qdq_is_symmetric_int8(tmp_path, fp32_onnx, lfw_faces):
    out = quantize_onnx(fp32_onnx, tmp_path / "m.qdq.onnx", lfw_faces[:32], config=QuantizeConfig(target="tensorrt",
                                                                                                    batch=16))
    proto = onnx.load(str(out))
    assert "PRelu" in {n.op_type for n in proto.graph.node}  # TensorRT keeps its native PRelu
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_reader_and_config_errors(fp32_onnx, tmp_path, lfw_faces):
    reader = FaceCalibrationReader(lfw_faces[:10], "input", batch=4)
    assert len(reader) == 2 and reader.get_next()["input"].shape == (4, 1, 112, 112)
    reader.get_next()
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None
    with pytest.raises(ConfigError, match="at least 32 faces"):
        FaceCalibrationReader(lfw_faces[:4], "input", batch=32)
    with pytest.raises(ConfigError, match="unknown quantisation target"):
        quantize_onnx(fp32_onnx, tmp_path / "x.onnx", lfw_faces[:4], config=QuantizeConfig(target="tflite"))
    with pytest.raises(ConfigError, match="Q/DQ"):
        quantize_onnx(fp32_onnx, tmp_path / "x.onnx", lfw_faces[:4],
                      config=QuantizeConfig(target="tensorrt", fmt="qoperator"))
