"""Gate configuration: every firmware config loads; bad files and values give clear errors."""
from pathlib import Path

import pytest

from hsst.core.errors import ConfigError
from hsst.runtime.config import GateConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "firmware_configs").glob("*.yaml"))


def test_defaults_are_valid():
    assert load_config().validate() == GateConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_firmware_configs_load(path):
    config = load_config(path)
    assert config.device == path.stem
    assert config.embedder.backend in ("onnxruntime", "tensorrt")


def test_expected_devices_present():
    assert {p.stem for p in CONFIGS} >= {"laptop-cpu", "jetson-orin-nano", "jetson-nano", "jetson-xavier-nx"}


def test_overrides_and_yaml_number_strings(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("device: test\ndecision:\n  far: 1e-4\n  n: 1\n  m: 2\nsource:\n  uri: 0\n")
    config = load_config(path, {"source.uri": "file://clip.avi", "decision.threshold": 0.5})
    assert config.decision.far == 1e-4 and config.source.uri == "file://clip.avi"
    assert config.decision.threshold == 0.5


@pytest.mark.parametrize("text, message", [
    ("decision:\n  n: 4\n  m: 3\n", "1 <= n <= m"),
    ("decision:\n  nn: 1\n", "unknown key"),
    ("embedder:\n  backend: openvino\n", "embedder.backend must be one of"),
    ("source:\n  fps: fast\n", "source.fps must be a number"),
    ("tracker: 3\n", "must be a mapping"),
    ("quality:\n  min_det_score: 2\n", "min_det_score must be in"),
    ("[1, 2]\n", "mapping at the top level"),
    ("decision: {n: 1\n", "cannot parse"),
])
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/gate.yaml")
