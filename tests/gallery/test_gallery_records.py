"""hsst.gallery.records.model_hash: the model identity a gallery binds templates to survives the export to an
engine (templates enrolled with the ONNX match gates running its FP16 engine), not a change of network."""
import json
import shutil

from hsst.core.files import file_sha256
from hsst.gallery.records import model_hash
from hsst.runtime.model_files import default_embedding_model


def _engine_sidecar(path, source_sha, precision):
    # the record hsst-export writes beside an engine (export/sidecar.py): format, precision, source
    path.write_bytes(b"plain TensorRT bytes")
    path.with_name(path.name + ".json").write_text(json.dumps(
        {"name": "hsst-mobilefacenet-112", "extra": {"format": "engine", "precision": precision,
                                                     "source": {"file": "hsst-mobilefacenet-112.onnx",
                                                                "sha256": source_sha}}}))
    return path


def test_engine_binds_to_the_onnx_it_was_built_from(tmp_path):
    onnx = default_embedding_model()
    assert model_hash(onnx) == file_sha256(onnx)
    fp16 = _engine_sidecar(tmp_path / "m.8.100300.gpu.fp16.engine", file_sha256(onnx), "fp16")
    assert model_hash(fp16) == model_hash(onnx)
    int8 = _engine_sidecar(tmp_path / "m.8.100300.gpu.int8.engine", file_sha256(onnx), "int8")
    assert model_hash(int8) == file_sha256(int8)  # INT8 drifts further: its own identity
    other = tmp_path / "other.onnx"
    shutil.copyfile(onnx, other)
    other.write_bytes(other.read_bytes() + b"\0")  # another file: another identity
    assert model_hash(other) != model_hash(onnx)
