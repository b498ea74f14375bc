import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.eval.cli import main


def _copy_onnx(eval_models, tmp_path):
    dst = tmp_path / "model.onnx"
    shutil.copy(eval_models["onnx"], dst)
    shutil.copy(sidecar_path(eval_models["onnx"]), sidecar_path(dst))
    return dst


def test_cli_pairs_writes_report_and_thresholds(eval_models, tiny_pairs, lfw_dir, tmp_path):
    model = _copy_onnx(eval_models, tmp_path)
    out = tmp_path / "report"
    args = ["--model", str(model), "--pairs", str(tiny_pairs), "--images", str(lfw_dir), "--faces", "box",
            "--cache", str(tmp_path / "c.sqlite"), "--out", str(out), "--no-progress", "--write-thresholds"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "thresholds: 1 FARs written" in res.output
    meta = ModelMeta.load(sidecar_path(model))
    assert set(meta.thresholds) == {"0.1"}  # 10 impostor pairs resolve FAR 0.1 only
    assert meta.extra["thresholds_from"]["protocol"] == "pairs" and meta.extra["thresholds_from"]["faces"] == "box"
    report = json.loads((out / "eval.json").read_text())
    assert report["pairs"]["threshold_table"]["0.1"]["threshold"] == pytest.approx(meta.thresholds["0.1"])
    # the next run's fixed threshold comes from the model's table (at --threshold-far)
    res = CliRunner().invoke(main, args[:-1] + ["--threshold-far", "0.1"])
    assert res.exit_code == 0, res.output
    fixed = json.loads((out / "eval.json").read_text())["pairs"]["fixed_threshold"]
    assert fixed["threshold"] == pytest.approx(meta.thresholds["0.1"]) and "model thresholds" in fixed["source"]


def test_cli_casia_fold_writes_thresholds_into_checkpoint(eval_models, casia_eval_tree, tmp_path):
    ckpt = tmp_path / "probe_net.pt"
    shutil.copy(eval_models["checkpoint"], ckpt)
    res = CliRunner().invoke(main, ["--model", str(ckpt), "--casia", str(casia_eval_tree), "--fold", "1", "--faces",
                                    "box", "--no-cache", "--device", "cpu", "--out", str(tmp_path / "r"),
                                    "--no-progress", "--write-thresholds"])
    assert res.exit_code == 0, res.output
    assert "Rank-1" in res.output
    from hsst.train.models import load_probe_checkpoint

    _, meta = load_probe_checkpoint(ckpt)
    assert set(meta.thresholds) == {"0.1"}  # 12 probes x 5 impostor identities resolve FAR 0.1 only
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["folds"][0]["name"] == "fold1"


def test_cli_needs_exactly_one_dataset(eval_models, tiny_pairs, lfw_dir, orl_dir):
    res = CliRunner().invoke(main, ["--model", str(eval_models["onnx"]), "--pairs", str(tiny_pairs), "--images",
                                    str(lfw_dir), "--data", str(orl_dir)])
    assert res.exit_code == 2 and "exactly one dataset" in res.output
    res = CliRunner().invoke(main, ["--model", str(eval_models["onnx"]), "--data", str(orl_dir), "--fold", "3"])
    assert res.exit_code == 2 and "--fold only applies" in res.output


def test_onnx_pairs_evaluation_does_not_import_torch(eval_models, tiny_pairs, lfw_dir, tmp_path):
    code = (
        "import sys\n"
        "from hsst.eval.runner import EvalConfig, evaluate\n"
        f"r = evaluate(EvalConfig(model={str(eval_models['onnx'])!r}, protocol='pairs', pairs={str(tiny_pairs)!r}, "
        f"images={str(lfw_dir)!r}, faces='detect', use_cache=False, progress=False))\n"
        "assert r['pairs']['pairs'] == 20\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_summary_says_na_without_a_percent_sign():
    from hsst.eval.cli import _percent

    assert _percent(None) == "n/a" and _percent(0.9731) == "97.31%"


def test_plain_identity_folders_under_the_default_protocol_suggest_first_image(eval_models, orl_dir):
    """ORL is ``<id>/<images>``: the default all-vis protocol says which protocol reads it, not "no images"."""
    res = CliRunner().invoke(main, ["--model", str(eval_models["onnx"]), "--data", str(orl_dir), "--aligned",
                                    "--no-cache", "--no-progress"])
    assert res.exit_code == 1 and "--protocol first-image" in res.output, res.output
    assert "identity folder without images" not in res.output and res.exc_info[0] is SystemExit


def test_cli_detects_with_a_gate_configs_detector_and_reports_it(eval_models, tiny_pairs, lfw_dir, tmp_path):
    from hsst.runtime.config import load_config

    pytest.importorskip("tflite2onnx")
    config = "firmware_configs/jetson-orin-nano.yaml"  # a TensorRT gate: its settings run on onnxruntime here
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["--model", str(eval_models["onnx"]), "--pairs", str(tiny_pairs), "--images",
                                    str(lfw_dir), "--config", config, "--det-thresh", "0.4", "--no-cache",
                                    "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    gate = load_config(config).detector
    faces = json.loads((out / "eval.json").read_text())["faces"]
    assert faces["gate_config"] == config and faces["detector"]["backend"] == "onnxruntime"
    assert (faces["detector"]["det_thresh"], faces["detector"]["min_face"]) == (0.4, gate.min_face)
    line = f"det_thresh 0.4, min_face {gate.min_face}, normalize {gate.normalize}; from {config}"
    assert line in res.output and line in (out / "eval.md").read_text()


def test_cli_detector_options_need_faces_detect(eval_models, tiny_pairs, lfw_dir):
    res = CliRunner().invoke(main, ["--model", str(eval_models["onnx"]), "--pairs", str(tiny_pairs), "--images",
                                    str(lfw_dir), "--aligned", "--min-face", "30"])
    assert res.exit_code == 2 and "--min-face" in res.output and "--faces aligned" in res.output
