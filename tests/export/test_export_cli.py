"""hsst-export end to end on this machine (no TensorRT): ONNX + gates + sidecars, clear errors, exit statuses."""
import importlib.util
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.export.cli import main
from hsst.export.exporter import EXIT_ERROR, EXIT_GATE, EXIT_NO_TRT
from hsst.export.trtexec import find_trtexec

NO_TRT = importlib.util.find_spec("tensorrt") is None and find_trtexec() is None


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_missing_model_file(tmp_path):
    res = run("--weights", tmp_path / "nope.pt", "--data", tmp_path, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR and "model file not found" in res.output and "nope.pt" in res.output


def test_option_that_does_not_apply_to_the_format(tmp_path):
    res = run("--weights", tmp_path / "x.pt", "--onnx", "--int8", "--data", tmp_path, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR
    assert "--int8 does not apply to format(s) onnx" in res.output and "onnx-int8" in res.output


def test_unwritable_output(tmp_path, probe_ckpt, face_dir):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    res = run("--weights", probe_ckpt, "--data", face_dir, "-o", blocker / "out")
    assert res.exit_code == EXIT_ERROR and "cannot write to output folder" in res.output


def test_no_model_and_no_default(tmp_path, monkeypatch):
    monkeypatch.setattr("hsst.export.exporter.default_weights", lambda: None)  # an install without the default
    res = run("--data", tmp_path, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR and "pass --weights" in res.output


@pytest.fixture(scope="module")
def trt_run(tmp_path_factory, probe_ckpt, face_dir):
    out = tmp_path_factory.mktemp("export")
    res = run("--weights", probe_ckpt, "--data", face_dir, "-o", out, "--trt", "--half", "--dynamic", "--batch", 4,
              "--simplify", "--opset", 13)
    return res, out


@pytest.mark.skipif(not NO_TRT, reason="TensorRT or trtexec is available here")
def test_trt_without_tensorrt_writes_onnx_and_prints_commands(trt_run):
    res, out = trt_run
    assert res.exit_code == EXIT_NO_TRT, res.output
    onnx_path = out / "hsst-mobilefacenet-112.onnx"
    meta = ModelMeta.load(sidecar_path(onnx_path))
    assert meta.extra["status"] == "ok" and meta.extra["parity"]["passed"]
    assert meta.extra["parity"]["cosine_min"] >= 0.99999 and meta.extra["opset"] == 13
    assert meta.extra["input"]["shape"] == ["batch", 1, 112, 112] and meta.thresholds == {"1e-3": 0.42, "1e-4": 0.51}
    text = res.output
    assert "TensorRT engine NOT built" in text
    assert "/usr/src/tensorrt/bin/trtexec --onnx=hsst-mobilefacenet-112.onnx" in text
    assert "--minShapes=input:1x1x112x112 --optShapes=input:2x1x112x112 --maxShapes=input:4x1x112x112 --fp16" in text
    assert "polygraphy run" in text and "--onnx-outputs mark all" in text
    assert "hsst-export --weights hsst-mobilefacenet-112.onnx --trt --half" in text
    report = json.loads((out / "export-report.json").read_text())
    assert report["artifacts"][0]["kind"] == "onnx" and len(report["commands"]) >= 4


def test_onnx_int8_from_exported_onnx(trt_run, face_dir):
    _, out = trt_run
    onnx_path = out / "hsst-mobilefacenet-112.onnx"
    res = run("--weights", onnx_path, "--format", "onnx-int8", "--data", face_dir, "-o", out, "--dynamic",
              "--batch", 4, "--calib-images", 32)
    assert res.exit_code == 0, res.output
    assert "hsst-export: OK" in res.output and "next: hsst-gate" in res.output
    meta = ModelMeta.load(out / "hsst-mobilefacenet-112.int8.onnx.json")
    assert meta.extra["precision"] == "int8" and meta.extra["parity"]["cosine_mean"] >= 0.99


def test_failed_gate_keeps_file_as_failed(tmp_path, face_dir, gray_meta, lfw_faces):
    """A chaotic network (per-channel BN statistics at init) does not survive INT8: the gate must catch it."""
    import torch

    from hsst.train.models import create_backbone, save_probe_checkpoint

    torch.manual_seed(0)
    net = create_backbone("mobilefacenet")
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(lfw_faces[:32]))
    ckpt = save_probe_checkpoint(tmp_path / "chaotic.pt", net.eval(), gray_meta)
    res = run("--weights", ckpt, "--format", "onnx-int8", "--data", face_dir, "-o", tmp_path / "out",
              "--calib-images", 16, "--dynamic", "--batch", 8)
    assert res.exit_code == EXIT_GATE, res.output
    failed = tmp_path / "out" / "hsst-mobilefacenet-112.int8.onnx.failed"
    assert failed.is_file() and not (tmp_path / "out" / "hsst-mobilefacenet-112.int8.onnx").exists()
    meta = ModelMeta.load(sidecar_path(failed))
    assert meta.extra["status"] == "failed" and not meta.extra["parity"]["passed"]
    assert "FAILED" in res.output and "failed its accuracy gate" in res.output


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_selftest_without_tensorrt():
    from hsst.export.selftest import jetson_release, main as selftest

    assert selftest([]) == EXIT_NO_TRT
    assert jetson_release("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic") == {"l4t": "36.4.0",
                                                                                          "jetpack": "6.1 / 6.2"}
    assert jetson_release("garbage") is None


def test_python_api_mirrors_the_cli(tmp_path, probe_ckpt, face_dir):
    from hsst.export import export

    result = export(weights=probe_ckpt, data=face_dir, output=tmp_path, normalize=True, name="probe")
    (art,) = result.artifacts
    assert art.kind == "onnx" and art.path == tmp_path / "probe.onnx" and art.parity.passed
    assert ModelMeta.load(art.sidecar).output_normalized


@pytest.mark.skipif(not NO_TRT, reason="TensorRT or trtexec is available here")
def test_detector_only_without_tensorrt(tmp_path, monkeypatch):
    pytest.importorskip("tflite2onnx")
    monkeypatch.setattr("hsst.export.exporter.default_weights", lambda: None)  # detectors only, no embedder
    res = run("--detector", "--trt", "--half", "-o", tmp_path)
    assert res.exit_code == EXIT_NO_TRT, res.output
    assert "detector engines NOT built" in res.output
    assert "--onnx=blazeface_full.onnx" in res.output and "--fp16" in res.output
    assert (tmp_path / "detector" / "blazeface_full.onnx.json").is_file()


def _gate_command_parses(line):
    """The `next:` line's hsst-gate command names a firmware config of this repository and parses."""
    import shlex
    from pathlib import Path

    from hsst.runtime.cli import gate

    command = line.split("next: ", 1)[1].split("   (", 1)[0]
    args = shlex.split(command)
    assert args[0] == "hsst-gate"
    config = Path(__file__).resolve().parents[2] / args[args.index("--config") + 1]
    assert config.is_file(), f"next: names {config}, which does not exist"
    gate.make_context("hsst-gate", args[1:])


def test_default_export_needs_no_data_and_next_line_runs(tmp_path, caplog):
    # A new user's first command: the shipped model, no --data: the gate checks the bundled sample photo.
    pytest.importorskip("skimage")
    with caplog.at_level("WARNING", logger="hsst.export"):
        res = run("-o", tmp_path)
    assert res.exit_code == 0, res.output
    meta = ModelMeta.load(tmp_path / "hsst-mobilefacenet-112.onnx.json")
    assert meta.extra["parity"]["passed"] and meta.extra["parity"]["faces"] == 1
    assert "bundled sample photo only" in caplog.text and "hsst-mask" in caplog.text
    _gate_command_parses(next(line for line in res.output.splitlines() if line.startswith("next: ")))


def test_data_of_photos_is_detected_and_aligned(tmp_path, probe_ckpt, lfw_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted(lfw_dir.rglob("*.jpg"))[:6]:  # 250x250 LFW photos, not 112x112 crops
        (photos / src.name).symlink_to(src)
    (photos / "no_face.png").write_bytes(cv2.imencode(".png", np.full((200, 200), 128, np.uint8))[1].tobytes())
    res = run("--weights", probe_ckpt, "--data", photos, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    meta = ModelMeta.load(tmp_path / "out" / "hsst-mobilefacenet-112.onnx.json")
    assert meta.extra["parity"]["faces"] == 6  # the gray square has no face: skipped and reported


def test_data_without_faces_says_how_to_make_crops(tmp_path, probe_ckpt):
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "wall.png"), np.full((200, 300), 90, np.uint8))
    res = run("--weights", probe_ckpt, "--data", blank, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR
    assert "wall.png: no face found" in res.output and "hsst-mask --in PHOTOS --out faces/ --no-mask" in res.output
    assert not (tmp_path / "out" / "hsst-mobilefacenet-112.onnx").exists()


@pytest.mark.parametrize("engine, config", [
    ("m.8.100300.gpu.fp16.engine", "jetson-orin-nano"), ("m.8.8502.gpu.fp16.engine", "jetson-xavier-nx"),
    ("m.4.8201.gpu.fp16.engine", "jetson-nano")])
def test_next_line_after_an_engine_names_that_jetsons_config(tmp_path, engine, config):
    from pathlib import Path

    from hsst.export.cli import _next_command
    from hsst.export.exporter import Artifact, ExportResult

    result = ExportResult()
    result.artifacts.append(Artifact("engine", Path(engine), Path(engine + ".json")))
    line = "next: " + _next_command(result, None)
    assert f"firmware_configs/{config}.yaml" in line
    _gate_command_parses(line)


# -- a given ONNX is checked before any work: loadable, and the model its sidecar describes ------------------------
def _shipped_onnx():
    from hsst.runtime.model_files import ASSETS_MODELS, DEFAULT_EMBEDDING_ONNX

    return ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX


def _given_onnx(tmp_path, data: bytes):
    """``data`` as given.onnx beside a copy of the shipped model's sidecar."""
    path = tmp_path / "given.onnx"
    path.write_bytes(data)
    sidecar_path(path).write_bytes(sidecar_path(_shipped_onnx()).read_bytes())
    return path


@pytest.mark.parametrize("formats", [[], ["--format", "onnx-int8"], ["--trt"]])
def test_broken_onnx_is_refused_for_every_format(tmp_path, face_dir, formats):
    broken = _given_onnx(tmp_path, _shipped_onnx().read_bytes()[:1000])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [str(a) for a in ["--weights", broken, "--data", face_dir, "-o", out, *formats]])
    assert res.exit_code == EXIT_ERROR, res.output
    last = res.output.strip().splitlines()[-1]
    assert "given.onnx is not a loadable ONNX model (InvalidProtobuf" in last and "Traceback" not in res.output
    assert not any(out.iterdir())                             # no copy, no report, no sidecar


def test_valid_onnx_with_nothing_to_write_is_an_error(tmp_path):
    given = _given_onnx(tmp_path, _shipped_onnx().read_bytes())
    res = run("--weights", given, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR, res.output
    assert "already is an ONNX: --format onnx has nothing to write" in res.output and "OK" not in res.output


def test_onnx_that_is_not_the_sidecars_model(tmp_path, face_dir):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["embedding"])], "wrong", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    given = _given_onnx(tmp_path, model.SerializeToString())
    onnx.checker.check_model(onnx.load(str(given)))             # a valid ONNX, just not this model
    res = run("--weights", given, "--format", "onnx-int8", "--data", face_dir, "-o", tmp_path / "out")
    assert res.exit_code == EXIT_ERROR, res.output
    assert "takes input(s) [[1, 3, 64, 64]], but its sidecar given.onnx.json says [1, 1, 112, 112]" in res.output
