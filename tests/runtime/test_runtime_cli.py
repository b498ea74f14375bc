"""hsst-identify and hsst-gate through click on real files (untrained model: mechanics, JSON shape)."""
import json
import time

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
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert result.exit_code == 1                       # one image failed
    assert lines[0]["faces"][0]["identity"] == name and lines[0]["faces"][0]["accepted"]
    assert "cannot decode" in lines[1]["error"]
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 1 of 2 image(s) failed, e.g. cannot decode")


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


# -- bad input: a clear error and a non-zero exit, never an empty success ------------------------------------------
def _last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [identify, gate])
def test_enrolment_where_every_photo_fails_is_an_error(setup, tmp_path, command):
    config, _, _, files = setup
    enrol = tmp_path / "bad-enrol" / "bob"
    enrol.mkdir(parents=True)
    (enrol / "garbage.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (enrol / "truncated.jpg").write_bytes(files[0].read_bytes()[:60])
    args = ["--config", str(config), "--enroll", str(enrol.parent)]
    args += [str(files[0])] if command is identify else ["--source", f"file://{files[0]}"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 1, result.output
    assert "nobody enrolled: all 2 photo(s)" in _last_line(result) and "--allow-empty" in _last_line(result)


def test_identify_without_a_gallery_needs_allow_empty(setup):
    config, _, _, files = setup
    result = CliRunner().invoke(identify, ["--config", str(config), str(files[0])])
    assert result.exit_code == 1 and "nobody enrolled: set gallery.path" in _last_line(result) and "--enroll DIR" in _last_line(result)
    result = CliRunner().invoke(identify, ["--config", str(config), "--allow-empty", str(files[0])])
    assert result.exit_code == 0, result.output
    faces = json.loads(result.output.strip().splitlines()[-1])["faces"]
    assert faces and faces[0]["identity"] is None and faces[0]["candidates"] == []


def test_gate_on_a_corrupt_file_fails(setup, tmp_path):
    config, enrol, _, _ = setup
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(bytes(range(256)) * 8)
    result = CliRunner().invoke(gate, ["--config", str(config), "--enroll", str(enrol), "--source",
                                       f"file://{corrupt}", "--duration", "30"])
    assert result.exit_code == 1, result.output
    assert "ended before its first frame" in _last_line(result)


@pytest.mark.parametrize("uri", ["missing.avi", "empty/"])
def test_gate_on_a_missing_video_or_empty_folder_fails_at_once(setup, tmp_path, uri):
    config, enrol, _, _ = setup
    (tmp_path / "empty").mkdir()
    start = time.monotonic()
    result = CliRunner().invoke(gate, ["--config", str(config), "--enroll", str(enrol), "--source",
                                       f"file://{tmp_path / uri}", "--duration", "30"])
    assert result.exit_code == 1, result.output
    assert time.monotonic() - start < 10                      # not the whole --duration of retries
    assert "not found" in _last_line(result) or "has no images" in _last_line(result)
