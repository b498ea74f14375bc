"""Real TensorRT builds (FP16, INT8), accuracy gates and latency: run on a Jetson or a TensorRT GPU host.

Skipped elsewhere by tests/conftest.py (marker ``trt``). Nothing here is simulated: the engines are built by the
installed TensorRT (its Python API, or trtexec) and run through the gate runtime's TensorRT backend (pycuda). The
failing-gate tests move the gate's onnxruntime reference, never the engine: a real engine then fails the one gate.
"""
import json

import numpy as np
import pytest

from hsst.core.metadata import ModelMeta, check_engine_compat, sidecar_path
from hsst.export.exporter import GateFailed, export
from hsst.export.onnx_export import export_onnx
from hsst.export.parity import compare_embeddings, compare_outputs, onnx_embeddings, onnx_outputs, run_in_batches

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory, probe_net, gray_meta):
    path = tmp_path_factory.mktemp("trt") / "m.onnx"
    export_onnx(probe_net, gray_meta, path, dynamic=True, batch=8)
    return path


def test_fp16_engine_matches_onnxruntime_and_has_latency(tmp_path, dyn_onnx, lfw_faces):
    from hsst.export.tensorrt_build import EngineBuildConfig, build_engine
    from hsst.core.backends import create_backend, latency_percentiles

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
    from hsst.core.backends.cuda import cuda_device_name

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
    from hsst.core.backends import create_backend

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


def _moved_reference(monkeypatch):
    """The engine gate's onnxruntime reference plus noise as large as its values: a real engine must fail."""
    from hsst.export import exporter

    real, rng = exporter.onnx_outputs, np.random.default_rng(0)

    def moved(*args, **kwargs):
        return {k: v + v.std() * rng.standard_normal(v.shape).astype(v.dtype)
                for k, v in real(*args, **kwargs).items()}

    monkeypatch.setattr(exporter, "onnx_outputs", moved)


def test_failed_engine_gate_keeps_the_engine_as_failed(tmp_path, probe_ckpt, face_dir, monkeypatch):
    _moved_reference(monkeypatch)
    with pytest.raises(GateFailed, match=r"engine\.failed failed its accuracy gate.*polygraphy run"):
        export(weights=probe_ckpt, formats=("engine",), half=True, data=face_dir, output=tmp_path)
    (failed,) = tmp_path.glob("*.engine.failed")
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.engine.json"))
    extra = ModelMeta.load(sidecar_path(failed)).extra
    assert extra["status"] == "failed" and not extra["parity"]["passed"] and extra["tensorrt"]["version"]


def test_detector_engines_through_the_exporter(tmp_path, face_dir, detectors_only):
    import tensorrt as trt

    from hsst.face.weights import engine_path
    from hsst.core.backends.cuda import cuda_device_name

    res = export(detector=True, formats=("engine",), half=True, data=face_dir, output=tmp_path)
    engines = [a for a in res.artifacts if a.kind == "detector-engine"]
    assert len(engines) == 3 and all(a.kind.startswith("detector-") for a in res.artifacts)
    for art in engines:
        record = json.loads(art.sidecar.read_text())
        assert record["status"] == "ok" and record["parity"]["passed"] and record["precision"] == "fp16"
        assert art.latency["batch"] == 1 and record["tensorrt"]["builder"] == "tensorrt-python"
        check_engine_compat(record, trt.__version__, cuda_device_name())
    assert engine_path("blazeface_short", tmp_path / "detector").name.startswith("blazeface_short.1.")


def test_failed_detector_engine_gate_keeps_the_engine_as_failed(tmp_path, face_dir, detectors_only, monkeypatch):
    _moved_reference(monkeypatch)
    with pytest.raises(GateFailed, match=r"blazeface_full\..*\.engine\.failed failed its accuracy gate"):
        export(detector=True, formats=("engine",), half=True, data=face_dir, output=tmp_path)
    (failed,) = (tmp_path / "detector").glob("blazeface_full.*.engine.failed")
    assert not list((tmp_path / "detector").glob("*.engine"))
    record = json.loads(sidecar_path(failed).read_text())
    assert record["status"] == "failed" and not record["parity"]["passed"] and record["file"] == failed.name


def test_trtexec_builder_builds_and_runs_an_engine(tmp_path, dyn_onnx, lfw_faces):
    from hsst.export.builders import EngineSpec, TrtexecBuilder
    from hsst.export.trtexec import find_trtexec

    trtexec = find_trtexec()
    if trtexec is None:
        pytest.skip("no trtexec on PATH or in /usr/src/tensorrt/bin")
    spec = EngineSpec(name="m", onnx=dyn_onnx, out_dir=tmp_path, input_name="input", chw=(1, 112, 112), batch=8,
                      profile=(1, 4, 8), precision="fp16", device=("gpu", None), workspace=1.0,
                      inputs=lfw_faces[:12])
    builder = TrtexecBuilder(trtexec)
    built = builder.build(spec)
    assert built.path.is_file() and built.tensorrt["builder"] == "trtexec"
    assert built.tensorrt["command"].startswith(str(trtexec))
    assert built.path.with_name(built.path.name + ".build.log").is_file()
    outputs, latency = builder.run(built, spec, spec.inputs)
    assert latency is None
    assert compare_outputs(onnx_outputs(dyn_onnx, spec.inputs, 8, static=False), outputs, "fp16").passed
