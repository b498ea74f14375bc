import pytest

from hsst.core.errors import ConfigError
from hsst.export.options import (DEFAULT_OPSET, FORMATS, OPTION_FORMATS, ExportOptions, check_options_for_formats,
                                 normalize_format, options_table, parse_device)


def test_onnx_always_written_and_aliases():
    assert ExportOptions(formats=("trt",)).formats == ("onnx", "engine")
    assert normalize_format("TensorRT") == "engine"
    with pytest.raises(ConfigError, match="unknown export format"):
        normalize_format("tflite")


def test_int8_with_onnx_only_is_rejected_with_the_fix():
    with pytest.raises(ConfigError, match="onnx-int8"):
        ExportOptions(formats=("onnx",), int8=True, data="x").validate()
    ExportOptions(formats=("onnx", "engine"), int8=True, data="x").validate()


@pytest.mark.parametrize("option, value", [("half", True), ("workspace", 2.0), ("device", "dla:0")])
def test_engine_only_options_rejected_for_onnx(option, value):
    with pytest.raises(ConfigError, match=f"--{option} does not apply"):
        ExportOptions(formats=("onnx",), **{option: value}).validate()


def test_table_covers_every_option_and_format():
    assert set(OPTION_FORMATS) == {"half", "int8", "data", "dynamic", "batch", "imgsz", "workspace", "opset",
                                   "simplify", "normalize", "device", "optimize"}
    assert all(set(f) <= set(FORMATS) for f in OPTION_FORMATS.values())
    table = options_table()
    assert table.count("\n") == len(OPTION_FORMATS) + 1
    with pytest.raises(ConfigError, match="unknown export option"):
        check_options_for_formats(["fuse"], ["onnx"])


def test_profile_and_precision():
    opts = ExportOptions(formats=("engine",), dynamic=True, batch=8, half=True)
    assert opts.profile() == (1, 4, 8) and opts.precision == "fp16"
    assert ExportOptions(formats=("engine",), dynamic=True, batch=1).profile() == (1, 1, 1)
    assert ExportOptions(formats=("engine",), batch=4).profile() == (4, 4, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch": 0}, "--batch"), ({"opset": 9}, "--opset"), ({"half": True, "int8": True, "data": "d"}, "exclude"),
    ({"int8": True}, "--data"), ({"workspace": -1.0}, "workspace"), ({"device": "tpu"}, "--device"),
    ({"device": "dla:0", "half": True, "dynamic": True, "batch": 8}, "static shapes only.*drop --dynamic"),
])
def test_invalid_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ExportOptions(formats=("engine",), **kwargs).validate()


def test_onnx_int8_needs_data_and_devices_parse():
    with pytest.raises(ConfigError, match="onnx-int8 needs --data"):
        ExportOptions(formats=("onnx-int8",)).validate()
    assert parse_device("dla:1") == ("dla", 1) and parse_device("DLA0") == ("dla", 0)
    assert parse_device("gpu") == ("gpu", None) and DEFAULT_OPSET == 17
