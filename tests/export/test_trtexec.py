import json

import numpy as np
import pytest

from hsst.core.errors import ConfigError, ModelError
from hsst.export.trtexec import (TrtexecFeatures, format_command, parse_trtexec_device, parse_trtexec_output_json,
                                 parse_trtexec_version, trtexec_bench_command, trtexec_build_command,
                                 trtexec_infer_command)


def test_dynamic_fp16_command():
    cmd = trtexec_build_command("m.onnx", "m.8.100300.gpu.fp16.engine", "input", (1, 112, 112), "fp16", (1, 4, 8),
                                2.0, ("gpu", None), "timing.cache", trtexec="/usr/src/tensorrt/bin/trtexec")
    assert cmd == ["/usr/src/tensorrt/bin/trtexec", "--onnx=m.onnx", "--saveEngine=m.8.100300.gpu.fp16.engine",
                   "--minShapes=input:1x1x112x112", "--optShapes=input:4x1x112x112", "--maxShapes=input:8x1x112x112",
                   "--fp16", "--memPoolSize=workspace:2048M", "--timingCacheFile=timing.cache"]


def test_static_int8_dla_on_trt82():
    feats = TrtexecFeatures(version="8.2.1", mem_pool=False)
    cmd = trtexec_build_command("m.onnx", "e", "input", (1, 112, 112), "int8", None, 0.5, ("dla", 0),
                                calib_cache="m.calib", features=feats)
    assert "--minShapes" not in " ".join(cmd)
    assert cmd[3:] == ["--fp16", "--int8", "--calib=m.calib", "--workspace=512", "--useDLACore=0",
                       "--allowGPUFallback"]


def test_trt11_strongly_typed_and_dla_fp32_rejected():
    feats = TrtexecFeatures(version="11.0.0", fp16=False, strongly_typed=True)
    assert "--stronglyTyped" in trtexec_build_command("q.onnx", "e", "input", (1, 112, 112), "int8", features=feats)
    with pytest.raises(ConfigError, match="DLA runs FP16 or INT8"):
        trtexec_build_command("m.onnx", "e", "input", (1, 112, 112), "fp32", device=("dla", 0))


def test_bench_infer_commands_and_quoting():
    bench = trtexec_bench_command("e.engine", "input", (1, 112, 112), batch=4)
    assert "--shapes=input:4x1x112x112" in bench and "--useCudaGraph" in bench
    infer = trtexec_infer_command("e", "input", "in.bin", "out.json", (2, 1, 112, 112))
    assert "--loadInputs=input:in.bin" in infer and "--exportOutput=out.json" in infer
    assert format_command(["a b", "c"]) == "'a b' c"


def test_parse_version_device_and_help():
    assert parse_trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec") == "8.5.2"
    assert parse_trtexec_version("[TensorRT v100300]") == "10.3.0"
    assert parse_trtexec_version("[TensorRT v8201]") == "8.2.1"
    assert parse_trtexec_version("nothing") is None
    assert parse_trtexec_device("[I] === Device Information ===\n[I] Selected Device: Orin\n") == "Orin"
    feats = TrtexecFeatures.from_help("[TensorRT v8201] --workspace=N --fp16 --int8 --timingCacheFile=<file>")
    assert feats.version == "8.2.1" and not feats.mem_pool and feats.timing_cache and not feats.strongly_typed


def test_parse_output_json():
    values = np.arange(6, dtype=np.float32)
    text = json.dumps([{"name": "embedding", "dimensions": "2x3", "values": values.tolist()}])
    np.testing.assert_array_equal(parse_trtexec_output_json(text, "embedding"), values.reshape(2, 3))
    with pytest.raises(ModelError, match="no tensor"):
        parse_trtexec_output_json(text, "other")
