"""Pure parts of the TensorRT builder (run everywhere) and real TensorRT builds (marked trt: Jetson / GPU hosts)."""
import pytest

from hsst.core.errors import ConfigError, ModelError
from hsst.core.metadata import ModelMeta, check_engine_compat
import shlex

from hsst.export.tensorrt_build import (AUTOCAST_OPTIONS, EngineBuildConfig, api_generation, autocast_fp16_command,
                                        engine_filename, timing_cache_path, trt_version_tag)


@pytest.mark.parametrize("version, api", [("8.2.1.8", "8.2"), ("8.4.1", "8.2"), ("8.5.2.2", "8.5"),
                                          ("8.6.2", "8.5"), ("10.3.0.30", "8.5"), ("11.0.0", "11")])
def test_api_generation(version, api):
    assert api_generation(version) == api


def test_api_generation_rejects_trt7():
    with pytest.raises(ConfigError, match="older than 8.0"):
        api_generation("7.1.3")


@pytest.mark.parametrize("version, tag", [("8.2.1.8", "8201"), ("8.5.2", "8502"), ("10.3.0.30", "100300"),
                                          ("11.0.0", "110000")])
def test_version_tag(version, tag):
    assert trt_version_tag(version) == tag


def test_engine_filename_scheme():
    assert engine_filename("hsst-mobilefacenet-112", 8, "10.3.0.30", ("gpu", None), "fp16") == \
        "hsst-mobilefacenet-112.8.100300.gpu.fp16.engine"
    assert engine_filename("my model.v2", 1, "8.2.1", ("dla", 1), "int8") == "my-model-v2.1.8201.dla1.int8.engine"
    with pytest.raises(ConfigError):
        engine_filename("m", 0, "8.5.2", "gpu", "fp16")
    with pytest.raises(ConfigError):
        engine_filename("m", 1, "8.5.2", "gpu", "bf16")


def test_engine_filename_parses_with_the_runtime_pattern():
    runtime_models = pytest.importorskip("hsst.runtime.model_files")
    name = engine_filename("hsst-mobilefacenet-112", 8, "8.5.2.2", ("dla", 0), "int8")
    fields = runtime_models.parse_engine_name(name)
    assert fields == {"model": "hsst-mobilefacenet-112", "maxbatch": "8", "trt": "8502", "device": "dla0",
                      "precision": "int8"}


def test_timing_cache_per_version_and_gpu(tmp_path):
    a = timing_cache_path(tmp_path, "10.3.0", "Orin")
    assert a.name == "timing.100300.orin.cache"
    assert a != timing_cache_path(tmp_path, "8.5.2", "Orin") != timing_cache_path(tmp_path, "10.3.0", "Xavier")


def _engine_meta(version="10.3.0.30", device="Orin", **flags):
    return ModelMeta(extra={"tensorrt": dict({"version": version, "device_name": device}, **flags)})


def test_check_engine_compat():
    check_engine_compat(_engine_meta(), "10.3.0.30", "Orin")
    check_engine_compat(_engine_meta(), "10.3.0.26", "Orin")  # same major.minor.patch, other build
    with pytest.raises(ModelError, match="TensorRT 10.3.0.30 cannot be loaded by TensorRT 8.6.2.*Rebuild"):
        check_engine_compat(_engine_meta(), "8.6.2", "Orin")
    with pytest.raises(ModelError, match="built for GPU 'Orin' cannot run on 'Xavier'"):
        check_engine_compat(_engine_meta(), "10.3.0.30", "Xavier")
    check_engine_compat(_engine_meta(version_compatible=True), "10.7.0", "Orin")
    with pytest.raises(ModelError):
        check_engine_compat(_engine_meta(version_compatible=True), "10.2.0", "Orin")  # older runtime
    check_engine_compat(_engine_meta(hardware_compatible=True), "10.3.0", "NVIDIA A100")
    check_engine_compat({"tensorrt": {"version": "8.5.2", "device_name": "Xavier"}}, "8.5.2.2", "Xavier")
    with pytest.raises(ModelError, match="no TensorRT build record"):
        check_engine_compat(ModelMeta(), "10.3.0", "Orin")


def test_printed_autocast_command_keeps_fp32_io_like_the_python_call():
    # An engine built by following the printed command must take the FP32 input the runtime feeds.
    args = shlex.split(autocast_fp16_command("m.onnx", "m.fp16.onnx"))
    assert args[:3] == ["python", "-m", "modelopt.onnx.autocast"] and "--keep_io_types" in args
    for key, value in AUTOCAST_OPTIONS.items():
        assert f"--{key}" in args
        if value is not True:
            assert args[args.index(f"--{key}") + 1] == str(value)


def test_dla_build_config_needs_a_pinned_profile():
    with pytest.raises(ConfigError, match=r"DLA runs static shapes only: profile \(1, 4, 8\)"):
        EngineBuildConfig(precision="fp16", device=("dla", 0), profile=(1, 4, 8))
    EngineBuildConfig(precision="fp16", device=("dla", 0), profile=(8, 8, 8))
    EngineBuildConfig(precision="fp16", device=("gpu", None), profile=(1, 4, 8))
    with pytest.raises(ConfigError, match="unknown precision"):
        EngineBuildConfig(precision="bf16")
