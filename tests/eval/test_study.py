"""The study driver's plumbing on a tiny ORL configuration (2 iterations, 64 px, pretrain + one HSST run)."""
import json

import pytest

from hsst.eval.study import (Study, StudyConfig, make_split, plan_runs, pretrain_identities, render_results)


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
def test_study_runs_resumes_and_reports(orl_dir, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps(make_split(orl_dir, n_test=8, max_probes=2, seed=0)))
    out = tmp_path / "study"
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
    assert "**In progress:** 1 of 10 planned" in text  # --only ran 1 run of the plan
    assert (tmp_path / "study" / "roc_masked.png").is_file()

    # a validation-split ablation folder: one study per setting, rendered as one table with its commands
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "queue8").symlink_to(out, target_is_directory=True)
    (tmp_path / "val" / "ext_init").symlink_to(tmp_path / "ext", target_is_directory=True)
    text = render_results(out, tmp_path / "RESULTS.md", ablations=tmp_path / "val")
    assert "## Validation-split ablations" in text and "--ablations" in text
    assert "| queue8 | hsst-softmax-masked-s0 | `--input-size 64 --batch-size 4 --queue-size 8` |" in text
    assert "| ext_init | pretrain | `(the init: pretrain, 2 / 2 iterations)` |" in text  # how strong each init is
    assert "| queue8 | pretrain | `(the init: pretrain, 2 / 2 iterations)` |" in text


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
    from hsst.eval.study import _mean_spread

    stat = _mean_spread([0.40, 0.44])
    assert stat["n"] == 2 and abs(stat["mean"] - 0.42) < 1e-12 and abs(stat["std"] - 0.04 / 2 ** 0.5) < 1e-12


def test_ablations_without_finished_runs_is_a_clear_error(tmp_path):
    from hsst.core.errors import DatasetError
    from hsst.eval.study import render_ablations

    with pytest.raises(DatasetError, match="no finished ablation runs"):
        render_ablations(tmp_path)
