"""Gate configuration: every firmware config loads, names what the exporter writes and runs where it says;
bad files and values give clear errors."""
import re
import shlex
from pathlib import Path

import pytest

from hsst.core.errors import ConfigError
from hsst.runtime.config import GateConfig, load_config
from hsst.runtime.model_files import parse_engine_name

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "firmware_configs").glob("*.yaml"))


def test_defaults_are_valid():
    assert load_config().validate() == GateConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_firmware_configs_load(path):
    config = load_config(path)
    assert config.device == path.stem
    assert config.embedder.backend in ("onnxruntime", "tensorrt")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_engine_names_are_what_the_exporter_writes(path):
    config = load_config(path)
    if config.embedder.backend != "tensorrt":
        return
    fields = parse_engine_name(config.embedder.model)
    assert fields, f"{config.embedder.model} is not <model>.<maxbatch>.<trtver>.<device>.<precision>.engine"
    assert fields["trt"].isdigit() and int(fields["maxbatch"]) == config.embedder.max_batch
    assert fields["precision"] == config.embedder.precision


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_commands_in_configs_are_valid(path):
    # A command a user copies from a comment must parse (a config once told users to pass --precision).
    from hsst.export.cli import main as export_cli

    commands = []
    for comment in (line.split("#", 1)[1].strip() for line in path.read_text().splitlines() if "#" in line):
        commands += re.findall(r"`(hsst-export[^`]*)`", comment)
        tail = comment if comment.startswith("hsst-export") else comment.split(": ", 1)[-1]
        if tail.startswith("hsst-export ") and "`" not in tail:
            commands.append(tail.split(" (", 1)[0])
    assert commands or "tensorrt" not in path.read_text()
    for command in commands:
        export_cli.make_context("hsst-export", shlex.split(command)[1:])


def test_jetson_nano_config_runs_without_tensorrt(lfw_dir, tmp_path):
    # Stock JetPack 4.6 has no TensorRT for Python >= 3.8: the Nano configuration must run on onnxruntime.
    from hsst.runtime.pipeline import GatePipeline
    from hsst.runtime.sources import open_source
    from hsst.runtime.config import SourceConfig

    photos = sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))[:4]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"{i:03d}.jpg").symlink_to(photos[0])
    config = load_config(CONFIGS[[p.stem for p in CONFIGS].index("jetson-nano")],
                         {"events.jsonl": None, "decision.cooldown_s": 0.0, "pipeline.drop_frames": False,
                          "pipeline.metrics_every_s": 0, "detector.every_n_frames": 1})
    assert config.detector.backend == config.embedder.backend == "onnxruntime"
    gate = GatePipeline(config)
    try:
        enroller = gate.enroller()
        assert any([enroller.enroll_file(gate.gallery, "George_W_Bush", f).accepted for f in photos[1:]])
        events = []
        gate.events.subscribe(events.append)
        snap = gate.run(open_source(SourceConfig(uri=f"file://{frames}", color="gray")))
    finally:
        gate.close()
    assert snap["counters"]["frames_processed"] == 3
    assert [e.identity for e in events if e.kind == "accept"] == ["George_W_Bush"]


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


@pytest.mark.parametrize("make, message", [
    (lambda photo, cfg: photo.read_bytes(), "is not a text file; a configuration is YAML or JSON text"),
    (lambda photo, cfg: cfg.read_bytes()[:cfg.read_bytes().index(b'uri: "') + 7],  # cut inside a quoted value
     r"cannot parse .*gate.yaml: found unexpected end of stream at line \d+, column \d+$"),
    (lambda photo, cfg: b"source: [0\n", r"cannot parse .*: expected ',' or '\]', but got '<stream end>' at line 2"),
])
def test_unreadable_config_files_give_one_line(tmp_path, lfw_dir, make, message):
    """A photo passed as --config, a truncated YAML: one line naming the file and the place, no traceback."""
    path = tmp_path / "gate.yaml"
    laptop = next(c for c in CONFIGS if c.stem == "laptop-cpu")
    path.write_bytes(make(lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg", laptop))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
