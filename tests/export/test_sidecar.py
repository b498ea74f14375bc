import json

import pytest

from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.export.sidecar import failed_path, file_sha256, library_versions, make_sidecar, mark_failed, read_sidecar, \
    write_sidecar


def _meta():
    return ModelMeta(thresholds={"1e-3": 0.42}, training={"method": "hsst", "iterations": 1000})


def test_sidecar_round_trip(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx")
    side = make_sidecar(_meta(), model, "onnx", ["batch", 1, 112, 112], ["batch", 512], True, opset=17,
                        precision="fp32", parity={"passed": True})
    path = write_sidecar(side, model)
    assert path == sidecar_path(model) and path.name == "m.onnx.json"
    back = read_sidecar(model)
    assert back == ModelMeta.load(path) == side
    ex = back.extra
    assert ex["input"] == {"name": "input", "shape": ["batch", 1, 112, 112], "layout": "NCHW", "dtype": "float32",
                           "color": "gray"}
    assert ex["sha256"] == file_sha256(model) and ex["opset"] == 17 and ex["status"] == "ok"
    assert back.output_normalized and back.thresholds == {"1e-3": 0.42}
    assert back.training["method"] == "hsst" and back.preprocess.crop_size == 112
    assert len(back.preprocess.template) == 5
    assert {"python", "numpy", "onnxruntime"} <= set(ex["versions"]) <= set(library_versions()) | {"tensorrt"}
    assert json.loads(path.read_text())["schema_version"] == 1


def test_mark_failed_moves_file_and_records_reason(tmp_path):
    model = tmp_path / "m.8.100300.gpu.fp16.engine"
    model.write_bytes(b"engine")
    meta = make_sidecar(_meta(), model, "engine", [8, 1, 112, 112], [8, 512], False)
    write_sidecar(meta, model)
    dest = mark_failed(model, meta, "cosine 0.97 < 0.999", {"passed": False})
    assert dest == failed_path(model) and dest.read_bytes() == b"engine"
    assert not model.exists() and not sidecar_path(model).exists()
    failed = ModelMeta.load(sidecar_path(dest))
    assert failed.extra["status"] == "failed" and "0.97" in failed.extra["failure"]


def test_missing_sidecar_error(tmp_path):
    with pytest.raises(Exception, match="hsst-export"):
        read_sidecar(tmp_path / "none.onnx")
