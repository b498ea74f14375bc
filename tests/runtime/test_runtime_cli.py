"""hsst-identify and hsst-gate through click on real files (untrained model: mechanics, JSON shape)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hsst.core.image import read_image
from hsst.runtime.cli import gate, identify

from hsst.synth.scene import identity_photos as lfw_people


@pytest.fixture
def setup(mfn_onnx, lfw_dir, tmp_path):
    (name, files), = lfw_people(lfw_dir, 3, 1)
    enrol = tmp_path / "enrol" / name
    enrol.mkdir(parents=True)
    (enrol / files[0].name).write_bytes(files[0].read_bytes())
    config = tmp_path / "gate.yaml"
    config.write_text(f"device: test\nembedder:\n  model: {mfn_onnx}\n  threads: 1\ndetector:\n  threads: 1\n"
                      "decision:\n  threshold: 0.5\n  n: 1\n  m: 1\npipeline:\n  metrics_every_s: 0\n")
    return config, tmp_path / "enrol", name, files


def test_identify_json(setup, tmp_path):
    config, enrol, name, files = setup
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = CliRunner().invoke(identify, ["--config", str(config), "--enroll", str(enrol), str(files[0]), str(bad)])
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert result.exit_code == 1                       # one image failed
    assert lines[0]["faces"][0]["identity"] == name and lines[0]["faces"][0]["accepted"]
    assert "cannot decode" in lines[1]["error"]


def test_gate_on_video_file(setup, tmp_path):
    config, enrol, name, files = setup
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    face = read_image(files[1])
    for i in range(10):
        frame = np.full((480, 640, 3), 70, np.uint8)
        frame[115:365, 195 + i:445 + i] = face
        writer.write(frame)
    writer.release()
    events = tmp_path / "events.jsonl"
    result = CliRunner().invoke(gate, ["--config", str(config), "--enroll", str(enrol), "--source",
                                       f"file://{video}", "--events", str(events), "--duration", "60"])
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.strip().splitlines()]
    assert out[-1]["metrics"]["counters"]["frames_processed"] == 10
    assert any(e.get("kind") == "accept" and e["identity"] == name for e in out[:-1])
    assert events.read_text().count("\n") == len(out) - 1


def test_missing_model_is_a_clear_error(tmp_path):
    config = tmp_path / "gate.yaml"
    config.write_text(f"embedder:\n  model: {tmp_path / 'missing.onnx'}\n")
    result = CliRunner().invoke(identify, ["--config", str(config), "x.jpg"])
    assert result.exit_code == 1 and "model file not found" in result.output
