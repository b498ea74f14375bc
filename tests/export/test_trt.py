"""Real TensorRT builds (FP16, INT8), accuracy gates and latency: run on a Jetson or a TensorRT GPU host.

Skipped elsewhere by tests/conftest.py (marker ``trt``). Nothing here is simulated: the engines are built by the
installed TensorRT and run through the gate runtime's TensorRT backend (pycuda).
"""
import numpy as np
import pytest

from hsst.core.metadata import ModelMeta, check_engine_compat, sidecar_path
from hsst.export.exporter import export
from hsst.export.onnx_export import export_onnx
from hsst.export.parity import compare_embeddings, onnx_embeddings, run_in_batches

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory, probe_net, gray_meta):
    path = tmp_path_factory.mktemp("trt") / "m.onnx"
    export_onnx(probe_net, gray_meta, path, dynamic=True, batch=8)
    return path


def test_fp16_engine_matches_onnxruntime_and_has_latency(tmp_path, dyn_onnx, lfw_faces):
    from hsst.export.tensorrt_build import EngineBuildConfig, build_engine
    from hsst.runtime.backends import create_backend, latency_percentiles

    engine = tmp_path / "m.engine"
    cfg = EngineBuildConfig(precision="fp16", chw=(1, 112, 112), profile=(1, 4, 8), workspace_gib=1.0,
                            timing_cache=tmp_path / "timing.cache")
    build = build_engine(dyn_onnx, engine, cfg)
    assert engine.read_bytes()[:1] != b"{"  # plain TensorRT bytes, no JSON prefix
    assert (tmp_path / "timing.cache").stat().st_size > 0
    faces = lfw_faces[:32]
    ref = onnx_embeddings(dyn_onnx, faces, 8, static=False)
    with create_backend("tensorrt", engine, check_sidecar=False) as runner:
        assert not runner.static_batch and runner.batch_limit == 8
        got = run_in_batches(runner.infer, faces, 8, static=False)
        single = runner.infer(faces[:1])
        lat = latency_percentiles(runner.infer, faces[:8], iters=100)
    report = compare_embeddings(ref, got, "fp16")
    assert report.passed, report
    np.testing.assert_allclose(single, got[:1], rtol=1e-2, atol=1e-2)
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert build.api in ("8.2", "8.5", "11") and build.device == "gpu"


def test_exporter_fp16_and_int8_with_calibration_cache(tmp_path, probe_ckpt, face_dir):
    import tensorrt as trt

    from hsst.export.tensorrt_build import api_generation
    from hsst.runtime.backends.cuda import cuda_device_name

    res = export(weights=probe_ckpt, formats=("engine",), half=True, dynamic=True, batch=8, data=face_dir,
                 output=tmp_path)
    engine = next(a for a in res.artifacts if a.kind == "engine")
    meta = ModelMeta.load(sidecar_path(engine.path))
    assert meta.extra["tensorrt"]["version"] == trt.__version__ and meta.extra["parity"]["passed"]
    check_engine_compat(meta, trt.__version__, cuda_device_name())
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    if not getattr(builder, "platform_has_fast_int8", True):
        pytest.skip("no fast INT8 on this GPU (Jetson Nano)")
    res = export(weights=probe_ckpt, formats=("engine",), int8=True, dynamic=True, batch=8, data=face_dir,
                 output=tmp_path, calib_images=64)
    engine = next(a for a in res.artifacts if a.kind == "engine")
    assert engine.parity.passed and engine.parity.cosine_mean >= 0.99
    if api_generation(trt.__version__) != "11":
        caches = list(tmp_path.glob("*.calib"))
        assert len(caches) == 1
        scales = caches[0].read_bytes()
        export(weights=probe_ckpt, formats=("engine",), int8=True, dynamic=True, batch=8, data=face_dir,
               output=tmp_path, calib_images=64)
        assert list(tmp_path.glob("*.calib")) == caches and caches[0].read_bytes() == scales  # same model, faces


def test_refused_timing_cache_is_logged_and_replaced(tmp_path, dyn_onnx, caplog):
    from hsst.export.tensorrt_build import EngineBuildConfig, build_engine

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache of this TensorRT")
    cfg = EngineBuildConfig(precision="fp16", chw=(1, 112, 112), profile=(1, 4, 8), timing_cache=cache)
    with caplog.at_level("WARNING", logger="hsst.export.tensorrt_build"):
        build_engine(dyn_onnx, tmp_path / "m.engine", cfg)
    assert "refused the timing cache" in caplog.text
    assert cache.read_bytes() != b"not a timing cache of this TensorRT"


def test_calibration_error_reaches_the_user(tmp_path, dyn_onnx, face_dir, gray_meta):
    # TensorRT swallows exceptions in get_batch; ours must come out of build_engine (here: too few faces).
    import tensorrt as trt

    from hsst.core.errors import DatasetError
    from hsst.export.calibration import FaceImageFolder
    from hsst.export.tensorrt_build import EngineBuildConfig, api_generation, build_engine

    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    if api_generation(trt.__version__) == "11" or not getattr(builder, "platform_has_fast_int8", True):
        pytest.skip("no implicit INT8 calibration here")
    faces = FaceImageFolder(face_dir, gray_meta.preprocess)
    cfg = EngineBuildConfig(precision="int8", chw=(1, 112, 112), profile=(64, 64, 64), calib_data=faces,
                            calib_cache=tmp_path / "m.calib", calib_batch=64)
    with pytest.raises(DatasetError, match="fewer than one batch of 64"):
        build_engine(dyn_onnx, tmp_path / "m.engine", cfg)
    assert not (tmp_path / "m.calib").exists()


def test_pinned_profile_engine_is_static_for_the_runtime(tmp_path, dyn_onnx, lfw_faces):
    # What DLA engines get: a dynamic ONNX with min = opt = max; the runtime must pad, not send smaller batches.
    from hsst.export.tensorrt_build import EngineBuildConfig, build_engine
    from hsst.runtime.backends import create_backend

    engine = tmp_path / "m.engine"
    build_engine(dyn_onnx, engine, EngineBuildConfig(precision="fp16", chw=(1, 112, 112), profile=(4, 4, 4)))
    with create_backend("tensorrt", engine, check_sidecar=False) as runner:
        assert runner.static_batch and runner.batch_limit == 4
        assert runner.infer(lfw_faces[:4]).shape[0] == 4


def test_dla_build_records_layer_placement(tmp_path, probe_ckpt, face_dir):
    import tensorrt as trt

    if int(getattr(trt.Builder(trt.Logger(trt.Logger.ERROR)), "num_DLA_cores", 0)) < 1:
        pytest.skip("no DLA on this device (Xavier / Orin NX / AGX have one or two)")
    res = export(weights=probe_ckpt, formats=("engine",), half=True, batch=4, data=face_dir, output=tmp_path,
                 device="dla:0")
    engine = next(a for a in res.artifacts if a.kind == "engine")
    layers = ModelMeta.load(sidecar_path(engine.path)).extra["tensorrt"]["layers"]
    assert layers["dla"] > 0 and layers["gpu"] == len(layers["gpu_layers"])
