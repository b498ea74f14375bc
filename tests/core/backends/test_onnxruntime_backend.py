"""onnxruntime backend and Embedder on a real exported MobileFaceNet (untrained weights: shapes and batching,
not accuracy), fed with real aligned LFW crops."""
import numpy as np
import pytest

from hsst.core.alignment import align_face
from hsst.core.errors import ConfigError, InputError, ModelError
from hsst.core.image import read_image
from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.core.preprocess import to_input
from hsst.core.backends import OnnxRuntimeBackend, create_backend, latency_percentiles, list_backends
from hsst.runtime.embedder import Embedder


@pytest.fixture(scope="module")
def crops(lfw_dir, finder):
    out = []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:12]:
        image = read_image(sorted(person.glob("*.jpg"))[0])
        boxes, _, kps = finder.detect(image)
        if len(boxes):
            out.append(align_face(image, kps[0], 112))
    assert len(out) >= 6
    return out[:6]


def test_backend_io(mfn_onnx):
    backend = create_backend("onnxruntime", mfn_onnx, threads=1)
    assert isinstance(backend, OnnxRuntimeBackend) and "tensorrt" in list_backends()
    assert backend.inputs[0].shape == (None, 1, 112, 112) and not backend.static_batch
    assert backend.outputs[0].shape == (None, 512) and backend.providers == ["CPUExecutionProvider"]
    out = backend.infer(np.zeros((3, 1, 112, 112), np.float32))
    assert out.shape == (3, 512) and out.dtype == np.float32
    with pytest.raises(InputError, match="shape"):
        backend.infer(np.zeros((1, 3, 112, 112), np.float32))
    with pytest.raises(InputError, match="float32"):
        backend.infer(np.zeros((1, 1, 112, 112), np.float64))


def test_missing_and_broken_models(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        create_backend("onnxruntime", tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelError, match="cannot load"):
        create_backend("onnxruntime", broken)
    with pytest.raises(ConfigError, match="unknown backend"):
        create_backend("openvino", broken)
    with pytest.raises(ModelError, match="providers"):
        create_backend("onnxruntime", broken, providers=["NoSuchExecutionProvider"])


def test_embedder_batch_equals_single(embedder, crops):
    batch = embedder.embed(crops)
    single = np.concatenate([embedder.embed([c]) for c in crops])
    assert batch.shape == (len(crops), 512)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batch, single, atol=1e-4)
    assert embedder.embed([]).shape == (0, 512)


def test_static_batch_model_is_chunked_and_padded(mfn_onnx_static, embedder, crops):
    static = Embedder.from_file(mfn_onnx_static, threads=1)
    assert static.static_batch and static.chunk == 4
    np.testing.assert_allclose(static.embed(crops), embedder.embed(crops), atol=1e-4)  # 6 = 4 + 2 padded


def test_embedder_uses_metadata_preprocessing(embedder, crops):
    direct = embedder.backend.infer(to_input(crops[:2], embedder.meta.preprocess))
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(crops[:2]), direct, atol=1e-5)
    with pytest.raises(InputError, match="expects 112x112"):
        embedder.embed([np.zeros((100, 100), np.uint8)])


def test_sidecar_mismatch_and_engine_with_wrong_backend(mfn_onnx, tmp_path):
    meta = ModelMeta.load(sidecar_path(mfn_onnx))
    meta.preprocess.crop_size = 144
    meta.preprocess.template = (np.array(meta.preprocess.template) * 144 / 112).tolist()
    model = tmp_path / "m.onnx"
    model.write_bytes(mfn_onnx.read_bytes())
    meta.save(sidecar_path(model))
    with pytest.raises(ModelError, match="does not belong"):
        Embedder.from_file(model)
    engine = tmp_path / "m.1.10.3.orin.fp16.engine"
    engine.write_bytes(b"x")
    meta.save(sidecar_path(engine))
    with pytest.raises(ModelError, match="backend is onnxruntime"):
        Embedder.from_file(engine)
    with pytest.raises(ModelError, match="sidecar|metadata not found"):
        Embedder.from_file(tmp_path / "m.onnx.json")


def test_missing_engine_is_a_clear_error(tmp_path):
    from hsst.runtime.config import EmbedderConfig

    with pytest.raises(ModelError, match="model file not found"):
        Embedder.from_config(EmbedderConfig(model=str(tmp_path / "m.8.10.3.orin.fp16.engine"), backend="tensorrt"))
    with pytest.raises(ModelError, match="TensorRT engine not found"):
        create_backend("tensorrt", tmp_path / "m.engine")


def test_latency_percentiles_of_a_real_backend(mfn_onnx, crops):
    pre = ModelMeta.load(sidecar_path(mfn_onnx)).preprocess
    x = to_input(crops[:2], pre)
    with create_backend("onnxruntime", mfn_onnx, threads=1) as backend:
        lat = latency_percentiles(backend.infer, x, iters=5, warmup=1)
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] and lat["mean_ms"] > 0
    assert lat["iters"] == 5 and lat["batch"] == 2
    assert lat["faces_per_s"] == pytest.approx(2e3 / lat["mean_ms"])
    with pytest.raises(InputError, match="iters"):
        latency_percentiles(backend.infer, x, iters=0)
