"""The study driver (tools/study.py): its plumbing on a tiny ORL configuration (2 iterations, 64 px, pretrain +
one HSST run), its command line, and that it stays out of the ``hsst`` package."""
import importlib.util
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hsst.core.errors import DatasetError
from study import Study, StudyConfig, make_split, plan_runs, pretrain_identities, render_results


def test_split_is_deterministic_and_disjoint(orl_dir):
    a = make_split(orl_dir, n_test=10, max_probes=3, seed=0)
    b = make_split(orl_dir, n_test=10, max_probes=3, seed=0)
    c = make_split(orl_dir, n_test=10, max_probes=3, seed=1)
    assert a == b and a["test"]["identities"] != c["test"]["identities"]
    test, train = set(a["test"]["identities"]), set(a["train"]["identities"])
    assert len(test) == 10 and not test & train and len(train) == 30
    assert a["test"]["probe_images"] == 30 and a["pretrain"]["count"] == 30


def test_plan_runs_tables_and_seeds():
    names = [r.name for r in plan_runs([0, 1])]
    assert len(names) == len(set(names))
    assert "hsst-softmax-masked-s1" in names and "plain-softmax-masked-s1" in names
    assert "hsst-softmax-nonmasked-s0" in names and "hsst-softmax-nonmasked-s1" not in names
    assert "hsst-triplet-masked-s0" in names and "hsst-triplet-masked-s1" not in names
    assert len(names) == 4 + 2 + 6  # Table I (4 + 2 extra seeds) and Table II (6 more losses x methods)
    assert len(plan_runs([0, 1], all_seeds=True)) == 2 * (4 + 6)


@pytest.mark.slow
def test_study_runs_resumes_and_reports(orl_dir, tmp_path, monkeypatch):
    split = tmp_path / "split.json"
    split.write_text(json.dumps(make_split(orl_dir, n_test=8, max_probes=2, seed=0)))
    monkeypatch.chdir(tmp_path)  # a relative --out is relative to the current folder, for the training runs too
    out = Path("study")
    cfg = StudyConfig(out=str(out), lfw=str(orl_dir), split=str(split), iters=2, pretrain_iters=2, seeds=[0],
                      only="pretrain,hsst-softmax-masked-s0", common_args="--input-size 64 --batch-size 4",
                      pretrain_args="--loss softmax", train_args="--queue-size 8", plain_transform="gray",
                      masked_transform="gray", device="cpu", eval_batch_size=32, progress=False)
    finished = Study(cfg).run()
    assert finished == ["hsst-softmax-masked-s0"]
    assert sorted(p.name for p in (out / "data" / "train").iterdir()) == sorted(
        json.loads(split.read_text())["train"]["identities"])
    assert len(list((out / "data" / "pretrain").iterdir())) == len(pretrain_identities(json.loads(split.read_text()),
                                                                                        orl_dir))
    rec = json.loads((out / "runs" / "hsst-softmax-masked-s0" / "result.json").read_text())
    assert "--init" in rec["train"]["command"] and "pretrain/probe_net.pt" in rec["train"]["command"]
    for test in ("nonmasked", "masked"):
        assert rec["eval"][test]["fold"]["probe_images"] == 16 and "simulated NIR" in rec["eval"][test]["title"]
    assert (out / "runs" / "pretrain" / "result.json").is_file()

    # second invocation: nothing is retrained or re-evaluated
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    Study(cfg).run()
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")} == stamps
    record = (out / "study.json").read_text()
    Study(StudyConfig(**{**cfg.__dict__, "dry_run": True})).run()
    assert (out / "study.json").read_text() == record  # a dry run records nothing

    # an init trained elsewhere (--init) is evaluated as the study's pretrain row
    init = out / "runs" / "pretrain" / "probe_net.pt"
    ext = Study(StudyConfig(**{**cfg.__dict__, "out": str(tmp_path / "ext"), "init": str(init), "only": "pretrain"}))
    assert ext.run() == []
    ext_rec = json.loads((tmp_path / "ext" / "runs" / "pretrain" / "result.json").read_text())
    assert ext_rec["train"]["external"] and ext_rec["train"]["checkpoint"] == str(init)
    assert ext_rec["train"]["config"]["method"] == "pretrain"  # hsst-train's config.json beside the checkpoint
    assert ext_rec["train"]["iterations"] == 2
    assert ext_rec["eval"]["masked"]["model_sha256"] == rec_init_sha(out)

    (tmp_path / "NOTES.md").write_text("Chosen before any test result.\n")
    ext_text = render_results(tmp_path / "ext", tmp_path / "EXT.md", notes=tmp_path / "NOTES.md")
    assert "| pretrain | I,II | - | trained outside the study: `--init " in ext_text  # its run has no command
    assert "trained outside the study" in ext_text and "## Notes\n\nChosen before any test result." in ext_text
    text = render_results(out, tmp_path / "RESULTS.md")
    assert "simulated NIR" in text and "| softmax, HSST |" in text and "roc_masked.png" in text
    assert "made with `python tools/study.py split --n-test 8 --seed 0 --max-probes 2`" in text
    assert "Regenerate this page: `python tools/study.py report --runs study --out " in text
    assert "**In progress:** 1 of 10 planned" in text  # --only ran 1 run of the plan
    assert (tmp_path / "study" / "roc_masked.png").is_file()

    # a validation-split ablation folder: one study per setting, rendered as one table with its commands
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "queue8").symlink_to(out.resolve(), target_is_directory=True)
    (tmp_path / "val" / "ext_init").symlink_to(tmp_path / "ext", target_is_directory=True)
    text = render_results(out, tmp_path / "RESULTS.md", ablations=tmp_path / "val")
    assert "## Validation-split ablations" in text and "--ablations" in text
    assert "| queue8 | hsst-softmax-masked-s0 | `--input-size 64 --batch-size 4 --queue-size 8` |" in text
    assert "| ext_init | pretrain | `(the init: pretrain, 2 / 2 iterations)` |" in text  # how strong each init is
    assert "| queue8 | pretrain | `(the init: pretrain, 2 / 2 iterations)` |" in text

    # settings on the study's own test split beside the tables (e.g. a baseline evaluated as an --init)
    (tmp_path / "beside").mkdir()
    (tmp_path / "beside" / "distill").symlink_to(tmp_path / "ext", target_is_directory=True)
    text = render_results(out, tmp_path / "RESULTS.md", baselines=tmp_path / "beside")
    assert "## Beside the tables" in text and "--baselines" in text
    assert "| distill | pretrain | `(the init: pretrain, 2 / 2 iterations)` |" in text
    other = tmp_path / "beside_other" / "val_run"
    shutil.copytree(tmp_path / "ext", other)
    result = other / "runs" / "pretrain" / "result.json"
    rec = json.loads(result.read_text())
    rec["eval"]["nonmasked"]["fingerprint"] = "0" * 64  # as if evaluated on a validation split's test images
    result.write_text(json.dumps(rec))
    with pytest.raises(DatasetError, match="val_run/pretrain was evaluated on other test images"):
        render_results(out, tmp_path / "RESULTS.md", baselines=tmp_path / "beside_other")


def rec_init_sha(out):
    return json.loads((out / "runs" / "pretrain" / "result.json").read_text())["eval"]["masked"]["model_sha256"]


def test_validation_split_never_touches_the_test_identities(orl_dir):
    study = make_split(orl_dir, n_test=8, max_probes=2, seed=0)
    val = make_split(orl_dir, n_test=8, max_probes=2, seed=1,
                     exclude={"rule": "the study's test", "identities": study["test"]["identities"]})
    held_out = set(study["test"]["identities"])
    assert held_out.isdisjoint(val["test"]["identities"]) and held_out.isdisjoint(val["train"]["identities"])
    assert held_out.isdisjoint(pretrain_identities(val, orl_dir))
    assert val["excluded"]["identities"] == sorted(held_out)


def test_spread_is_the_sample_standard_deviation():
    from study import _mean_spread

    stat = _mean_spread([0.40, 0.44])
    assert stat["n"] == 2 and abs(stat["mean"] - 0.42) < 1e-12 and abs(stat["std"] - 0.04 / 2 ** 0.5) < 1e-12


def test_settings_without_finished_runs_is_a_clear_error(tmp_path):
    from study import render_settings

    with pytest.raises(DatasetError, match="no finished ablation runs"):
        render_settings(tmp_path)
    with pytest.raises(DatasetError, match="no finished baseline runs"):
        render_settings(tmp_path, "baseline")


ROOT = Path(__file__).resolve().parents[2]


def test_commands_shown_for_the_committed_splits_are_the_tool():
    """The committed split files were written by the driver before it left the package; the page shows the
    command as it runs now (the same arguments), and the files themselves (and their sha256) stay as they are."""
    from study import _current_command

    for name in ("lfw_split.json", "lfw_val_split.json"):
        made = json.loads((ROOT / "docs" / "study" / name).read_text())["created_with"]
        assert _current_command(made) == "python tools/study.py " + made.split(" ", 3)[3]
    assert _current_command("python tools/study.py split --seed 1") == "python tools/study.py split --seed 1"


def test_the_command_line_runs_from_the_repository_root(tmp_path):
    """``python tools/study.py`` works from a clone; ``report`` writes only the ``--out`` it is named."""
    result = subprocess.run([sys.executable, "tools/study.py", "-h"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and all(c in result.stdout for c in ("split", "run", "report")), result.stderr

    from click.testing import CliRunner
    from study import main

    result = CliRunner().invoke(main, ["report", "--runs", str(tmp_path)])
    assert result.exit_code == 2 and "Missing option '--out'" in result.output  # never docs/RESULTS.md by default


def test_every_study_command_in_the_docs_is_the_tool():
    """docs/, README and the model card name ``python tools/study.py <command>`` with a command it has."""
    from study import main

    pages = [ROOT / "README.md", ROOT / "sdk" / "assets" / "models" / "MODEL_CARD.md", *(ROOT / "docs").rglob("*.md")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "hsst.eval.study" not in text, page
        for command in re.findall(r"python tools/study\.py (\S+)", text):
            assert command in main.commands, (page, command)


def test_the_study_is_not_in_the_package(monkeypatch):
    """Research tooling stays out of the wheel: no ``hsst.eval.study``, no ``tools`` package in setup.py, and no
    package module imports the tool."""
    import setuptools

    assert importlib.util.find_spec("hsst.eval.study") is None
    with pytest.raises(ModuleNotFoundError):
        __import__("hsst.eval.study")

    setup_kwargs = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: setup_kwargs.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    packages, package_dir = setup_kwargs["packages"], setup_kwargs["package_dir"]
    assert "hsst.eval" in packages and not any(p.split(".")[0] in ("tools", "study") for p in packages)
    folders = set()
    for package in packages:
        top = max((k for k in package_dir if package == k or package.startswith(k + ".")), key=len)
        folder = (ROOT / package_dir[top]).joinpath(*package[len(top):].split(".")[1:] or [""]).resolve()
        assert folder.is_dir() and (ROOT / "tools") not in (folder, *folder.parents), package
        folders.add(folder)
    assert not any((folder / "study.py").exists() for folder in folders)
    importer = re.compile(r"^\s*(from|import)\s+(tools\b|study\b|hsst\.eval\.study\b|hsst\.eval\s+import\s+study)",
                          re.M)
    for folder in folders:
        for source in folder.glob("*.py"):
            assert not importer.search(source.read_text(encoding="utf-8")), source
