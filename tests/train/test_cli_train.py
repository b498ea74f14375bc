"""hsst-train through click: a real smoke run, resume, and errors before any work."""
from __future__ import annotations

import json

from click.testing import CliRunner

from hsst.train.cli import main
from hsst.train.logging_utils import read_jsonl

TINY = ["--input-size", "32", "--batch-size", "4", "--max-identities", "8", "--queue-size", "8", "--lr", "0.01",
        "--device", "cpu", "--threads", "1", "--no-progress"]


def test_cli_trains_and_prints_where_results_are(orl_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["--data", str(orl_dir), "--iters", "2", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    for line, name in (("probe-net:", "probe_net.pt"), ("config:", "config.json"), ("log:", "train_log.jsonl")):
        assert f"{line}" in res.output and str(out / name) in res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["optim"]["milestones"] == [1] and cfg["model"]["input_size"] == 32
    # --resume with a longer run: the saved config is the base, --iters extends it
    res = CliRunner().invoke(main, ["--out", str(out), "--resume", "--iters", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert [r["iter"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3]
    # a time-boxed slice: --pause-after leaves a resumable run, a plain --resume finishes it
    res = CliRunner().invoke(main, ["--out", str(out), "--resume", "--iters", "5", "--pause-after", "4"])
    assert res.exit_code == 0, res.output
    assert [r["iter"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4]
    res = CliRunner().invoke(main, ["--out", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    assert [r["iter"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4, 5]
    # a second fresh run into the same folder must not silently destroy the first
    res = CliRunner().invoke(main, ["--data", str(orl_dir), "--iters", "2", "--out", str(out), *TINY])
    assert res.exit_code == 1 and "already holds a training run" in res.output and "--resume" in res.output


def test_cli_rejects_bad_combinations_before_any_work(tmp_path):
    runner = CliRunner()
    out = tmp_path / "never"
    cases = [
        (["--data", str(tmp_path), "--teacher", "dlib"], "is for --method pretrain (dlib)"),
        (["--casia", str(tmp_path)], "needs --fold"),
        (["--data", str(tmp_path), "--casia", str(tmp_path), "--fold", "1"], "exclusive"),
        (["--data", str(tmp_path), "--queue-size", "0"], "queue-size"),
        (["--data", str(tmp_path), "--input-size", "100"], "multiple of 16"),
        (["--data", str(tmp_path), "--iters", "100", "--milestones", "50,20"], "strictly increasing"),
        (["--data", str(tmp_path), "--in-chans", "3", "--color", "gray"], "contradicts"),
        (["--data", str(tmp_path), "--method", "plain", "--loss", "softmax", "--margin", "0.2"], "no effect"),
    ]
    for args, message in cases:
        res = runner.invoke(main, [*args, "--out", str(out)])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
    assert not out.exists()


def test_cli_print_config_and_data_errors(tmp_path):
    res = CliRunner().invoke(main, ["--data", str(tmp_path), "--method", "plain", "--loss", "triplet",
                                    "--in-chans", "3", "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = json.loads(res.output)
    assert cfg["method"] == "plain" and cfg["loss"]["name"] == "triplet" and cfg["model"]["color"] == "rgb"
    res = CliRunner().invoke(main, ["--data", str(tmp_path), "--nir-transform", "thermal", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "unknown NIR transform 'thermal'" in res.output and "gray" in res.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert res.exit_code == 1 and "Error" in res.output and str(tmp_path / "empty") in res.output


def test_cli_backbone_alias_resolves_to_the_registry_name(tmp_path):
    res = CliRunner().invoke(main, ["--data", str(tmp_path), "--backbone", "iresnet50", "--print-config"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["model"]["backbone"] == "resnet50"


def test_cli_resume_of_a_run_started_with_overwrite(tmp_path):
    saved = {"run": {"out": str(tmp_path), "overwrite": True}, "data": {"data": str(tmp_path)}, "optim": {"iters": 7, "milestones": [5]}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--resume", "--print-config"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    assert run["resume"] is True and run["overwrite"] is False
    assert json.loads(result.output)["optim"]["iters"] == 7  # the saved run's settings are kept


# -- bad files are named as such, not as a batch size or a torch internal --------------------------------------------
def _corrupt_identities(root, orl_dir, names):
    """Identity folders whose images are all broken: garbage, a truncated real photo, a text file named .jpg."""
    real = (orl_dir / "s1" / "1.pgm").read_bytes()
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 8)
        (root / name / "2.pgm").write_bytes(real[: len(real) // 2])
        (root / name / "3.jpg").write_text("a text file named .jpg")


def test_cli_corrupt_images_are_not_counted_as_images(orl_dir, tmp_path):
    data = tmp_path / "data"
    _corrupt_identities(data, orl_dir, ["p1", "p2", "p3", "p4"])
    res = CliRunner().invoke(main, ["--data", str(data), "--iters", "1", "--out", str(tmp_path / "o"), *TINY,
                                    "--batch-size", "8"])
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 1 and "needs at least" not in res.output, res.output
    assert last.startswith("no usable identity in") and "0 images" in last and "unreadable or corrupt image: 12" in last


def test_cli_batch_size_error_says_what_the_scan_left_out(orl_dir, tmp_path):
    data = tmp_path / "data"
    _corrupt_identities(data, orl_dir, ["p1", "p2"])
    for subject in ("s1", "s2"):
        (data / subject).symlink_to(orl_dir / subject, target_is_directory=True)
    res = CliRunner().invoke(main, ["--data", str(data), "--iters", "1", "--out", str(tmp_path / "o"), *TINY])
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 1, res.output
    assert "4 identities" in last and "the dataset has 2" in last and "unreadable or corrupt image: 6" in last


def test_cli_truncated_init_checkpoint(orl_dir, tmp_path):
    from hsst.runtime.model_files import ASSETS_MODELS

    truncated = tmp_path / "init.pt"
    truncated.write_bytes((ASSETS_MODELS / "hsst-mobilefacenet-112.pt").read_bytes()[:100_000])
    res = CliRunner().invoke(main, ["--data", str(orl_dir), "--init", str(truncated), "--iters", "1",
                                    "--out", str(tmp_path / "o"), *TINY])
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 1, res.output
    assert last == (f"Error: cannot read checkpoint {truncated}: the file is truncated (100000 bytes, no zip "
                    "directory); re-copy or re-create it")
