"""The one accuracy gate: every target's files pass it the same way, and a failed file is kept as ``<file>.failed``.

Failures are made real, never simulated runtimes: the ONNX is compared with another network, the INT8 copy is
calibrated on faces at the wrong scale, the detector copy with a model whose weights were changed.
"""
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from hsst.core.errors import HsstError
from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.export.builders import CommandPrinter, EngineNotBuilt, EngineSpec
from hsst.export.exporter import EXIT_GATE, Exporter
from hsst.export.gate import Candidate, Gate, GateFailed
from hsst.export.options import ExportOptions
from hsst.export.parity import compare_outputs
from hsst.export.sidecar import JsonSidecar, MetaSidecar


def _sidecar(kind):
    return MetaSidecar(ModelMeta(extra={"format": "onnx", "status": "ok"})) if kind == "meta" else \
        JsonSidecar({"kind": "face-detector", "status": "ok"})


def _status(sidecar_file, kind):
    data = json.loads(sidecar_file.read_text())
    return data["extra"] if kind == "meta" else data


def _assert_kept_as_failed(path, kind="meta"):
    """``path`` is gone, ``path.failed`` and its sidecar remain, and the sidecar says failed and why."""
    failed = path.with_name(path.name + ".failed")
    assert failed.is_file() and not path.exists() and not sidecar_path(path).exists()
    facts = _status(sidecar_path(failed), kind)
    assert facts["status"] == "failed" and facts["failure"].startswith("accuracy gate failed")
    assert facts["file"] == failed.name and facts["parity"]["passed"] is False
    return facts


@pytest.mark.parametrize("kind", ["meta", "json"])
def test_gate_passes_or_keeps_failed_for_both_sidecar_kinds(tmp_path, kind):
    rng = np.random.default_rng(0)
    ref = {"embedding": rng.standard_normal((6, 16)).astype(np.float32)}
    artifacts = []
    gate = Gate(artifacts)

    good = tmp_path / "good.onnx"
    good.write_bytes(b"model")
    art = gate.check(Candidate("onnx", good, ref, {"embedding": ref["embedding"].copy()}, "onnx", ("a", "b"),
                               _sidecar(kind)))
    facts = _status(sidecar_path(good), kind)
    assert art.path == good and facts["status"] == "ok" and facts["parity"]["passed"]

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"model")
    sidecar_path(bad).write_text("{}")  # an earlier run's sidecar must not survive under the normal name
    noisy = {"embedding": ref["embedding"] + rng.standard_normal((6, 16)).astype(np.float32)}
    with pytest.raises(GateFailed, match=r"bad.onnx.failed failed its accuracy gate.*Per-layer comparison: run me"):
        gate.check(Candidate("onnx", bad, ref, noisy, "onnx", ("a", "b"), _sidecar(kind), hint="run me"))
    _assert_kept_as_failed(bad, kind)
    assert [a.path.name for a in artifacts] == ["good.onnx", "bad.onnx.failed"]
    assert artifacts[-1].sidecar == sidecar_path(tmp_path / "bad.onnx.failed") and not artifacts[-1].parity.passed


def test_compare_outputs_reports_the_worst_output():
    rng = np.random.default_rng(1)
    ref = {"boxes": rng.standard_normal((4, 2, 8)), "scores": rng.standard_normal((4, 3))}
    got = {"boxes": ref["boxes"].copy(), "scores": ref["scores"] + rng.standard_normal((4, 3))}
    report = compare_outputs(ref, got, "fp16", "onnxruntime-fp32", "tensorrt")
    assert not report.passed and report.candidate == "tensorrt (scores)"
    single = compare_outputs({"e": ref["scores"]}, {"e": ref["scores"]}, "onnx", "torch", "onnxruntime")
    assert single.passed and single.candidate == "onnxruntime"  # one output: the plain embedding report
    with pytest.raises(HsstError, match="lacks output"):
        compare_outputs(ref, {"boxes": ref["boxes"]}, "fp16")


# -- the probe-net: onnx and onnx-int8 --------------------------------------------------------------------------
def test_embedder_onnx_that_is_not_the_checkpoints_network_is_kept_as_failed(tmp_path, monkeypatch, probe_ckpt,
                                                                              face_dir, lfw_faces):
    from hsst.export import embedder_target as embedder
    from hsst.export.parity import torch_embeddings
    from stand_in import stand_in_probe_net

    other = stand_in_probe_net(lfw_faces[:48], seed=1)  # the reference: another network than the one exported
    monkeypatch.setattr(embedder, "torch_embeddings", lambda _model, x, **kw: torch_embeddings(other, x, **kw))
    exporter = Exporter(ExportOptions(weights=probe_ckpt, data=face_dir, output=tmp_path, name="m",
                                      formats=("onnx", "onnx-int8")))
    with pytest.raises(GateFailed, match="m.onnx.failed failed its accuracy gate"):
        exporter.run()
    facts = _assert_kept_as_failed(tmp_path / "m.onnx")
    assert facts["parity"]["reference"] == "torch" and facts["format"] == "onnx"
    assert [a.kind for a in exporter.result.artifacts] == ["onnx"]  # nothing is built from a failed file
    assert not (tmp_path / "m.int8.onnx").exists()


@pytest.fixture(scope="module")
def stand_in_onnx(tmp_path_factory, probe_ckpt, face_dir):
    out = tmp_path_factory.mktemp("gate-onnx")
    (art,) = Exporter(ExportOptions(weights=probe_ckpt, data=face_dir, output=out, dynamic=True, batch=4)).run() \
        .artifacts
    return art.path


def test_embedder_onnx_int8_calibrated_on_wrong_faces_is_kept_as_failed(tmp_path, monkeypatch, stand_in_onnx,
                                                                       face_dir):
    from hsst.export import quantize

    real = quantize.quantize_onnx
    # Calibrated on faces at 2% of their contrast, the int8 ranges clip every real face (calibrated on the faces
    # themselves, this ONNX passes: test_export_cli.py::test_onnx_int8_from_exported_onnx).
    monkeypatch.setattr(quantize, "quantize_onnx", lambda src, dst, faces, **kw: real(src, dst, faces * 0.02, **kw))
    monkeypatch.setattr(quantize, "FLOAT_LAYER_STEPS", (0,))  # no mixed-precision search: the gate is the subject
    exporter = Exporter(ExportOptions(weights=stand_in_onnx, data=face_dir, output=tmp_path, name="m",
                                      formats=("onnx-int8",), dynamic=True, batch=4, calib_images=16))
    with pytest.raises(GateFailed, match="m.int8.onnx.failed failed its accuracy gate"):
        exporter.run()
    facts = _assert_kept_as_failed(tmp_path / "m.int8.onnx")
    assert facts["precision"] == "int8" and facts["parity"]["reference"] == "onnxruntime-fp32"


# -- the face detectors -----------------------------------------------------------------------------------------
def _changed_copy(src, dst):
    """``src`` with every float weight moved by half its spread: loads and runs, but is another model."""
    proto = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for init in proto.graph.initializer:
        w = onnx.numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 1:
            init.CopyFrom(onnx.numpy_helper.from_array(w + 0.5 * w.std() * rng.standard_normal(w.shape)
                                                       .astype(np.float32), init.name))
    onnx.save(proto, str(dst))
    return dst


def test_detector_onnx_that_is_not_the_runtimes_model_is_kept_as_failed(tmp_path, monkeypatch, face_dir,
                                                                         detectors_only):
    from hsst.export import detector_target as detector
    from hsst.export.cli import main

    real = detector.runtime_model
    monkeypatch.setattr(detector, "runtime_model", lambda name: _changed_copy(real(name), tmp_path / f"{name}.x"))
    res = CliRunner().invoke(main, ["--detector", "--data", str(face_dir), "-o", str(tmp_path / "out")])
    assert res.exit_code == EXIT_GATE, res.output
    assert "blazeface_full.onnx.failed failed its accuracy gate" in res.output
    facts = _assert_kept_as_failed(tmp_path / "out" / "detector" / "blazeface_full.onnx", kind="json")
    assert facts["kind"] == "face-detector" and facts["parity"]["gate"] == "onnx"
    report = json.loads((tmp_path / "out" / "export-report.json").read_text())
    assert report["artifacts"][0]["kind"] == "detector-onnx" and report["artifacts"][0]["path"].endswith(".failed")


def test_detector_onnx_passes_its_gate_through_the_exporter(tmp_path, face_dir, detectors_only):
    result = Exporter(ExportOptions(detector=True, data=face_dir, output=tmp_path)).run()
    assert [a.kind for a in result.artifacts] == ["detector-onnx"] * 3
    for art in result.artifacts:
        record = json.loads(art.sidecar.read_text())
        assert record["status"] == "ok" and record["parity"]["passed"] and record["parity"]["faces"] == 8


# -- no TensorRT here: the builder that builds nothing -------------------------------------------------------------
def test_command_printer_builds_nothing_and_says_what_to_run(tmp_path):
    printer = CommandPrinter("TensorRT not available (test)")
    spec = EngineSpec(name="m", onnx=tmp_path / "m.onnx", out_dir=tmp_path, input_name="input", chw=(1, 112, 112),
                      batch=8, profile=(1, 4, 8), precision="fp16", device=("gpu", None), workspace=None,
                      inputs=np.zeros((1, 1, 112, 112), np.float32), jetson_command="hsst-export --weights m.onnx")
    assert printer.build(spec) is None
    with pytest.raises(EngineNotBuilt, match="TensorRT engine NOT built: TensorRT not available") as info:
        printer.raise_pending("TensorRT engine")
    assert info.value.commands[0] == "hsst-export --weights m.onnx" and "TRTVER=" in info.value.commands[1]
    assert "--saveEngine=m.8.${TRTVER}.gpu.fp16.engine" in info.value.commands[2]
    printer.raise_pending("TensorRT engine")  # nothing pending: nothing raised
