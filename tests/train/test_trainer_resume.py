"""Checkpoint / resume: an interrupted run that resumes equals an uninterrupted run, bit for bit (CPU)."""
from __future__ import annotations

import pytest
import torch

from hsst.core.errors import ConfigError, ModelError
from hsst.train.checkpointing import PROBE_NAME, RESUME_NAME, load_train_state
from hsst.train.config import TrainConfig
from hsst.train.logging_utils import read_jsonl
from hsst.train.models import load_probe_checkpoint
from hsst.train.trainer import Trainer, train


def tiny(orl_dir, out, method="hsst", **sections) -> TrainConfig:
    """A seconds-long run on real AT&T/ORL images: 32 px MobileFaceNet, 4 identities per batch."""
    d = {"method": method,
         "data": {"data": str(orl_dir), "max_identities": 12},
         "model": {"input_size": 32},
         "optim": {"iters": 6, "batch_size": 4, "lr": 0.01, "milestones": [4]},
         "hsst": {"queue_size": 8, "ema": 0.9},
         "run": {"out": str(out), "device": "cpu", "save_every": 3, "progress": False, "deterministic": True,
                 "threads": 1}}
    for name, values in sections.items():
        d.setdefault(name, {}).update(values)
    return TrainConfig.from_dict(d)


def _final_state(out):
    state = load_train_state(out / RESUME_NAME)
    return state["probe"], state["method"]


@pytest.mark.parametrize("method,loss", [("hsst", "softmax"), ("plain", "am-softmax")])
def test_resume_equals_uninterrupted(orl_dir, tmp_path, method, loss):
    full = train(tiny(orl_dir, tmp_path / "full", method, loss={"name": loss}))

    # interrupted: checkpoint at 3, one more step (lost, like a kill after the checkpoint), then new objects
    trainer = Trainer(tiny(orl_dir, tmp_path / "cut", method, loss={"name": loss}))
    try:
        trainer.fit(stop_after=4)
    finally:
        trainer.close()
    assert load_train_state(tmp_path / "cut" / RESUME_NAME)["iteration"] == 3
    # the resumed half loads with 2 worker processes (prefetching): the batches must still be the same
    resumed = train(tiny(orl_dir, tmp_path / "cut", method, loss={"name": loss}, run={"resume": True},
                         data={"workers": 2}))
    assert resumed.start_iteration == 3

    full_log = [r["loss"] for r in read_jsonl(full.log_path)]
    cut_log = read_jsonl(resumed.log_path)
    assert [r["iter"] for r in cut_log] == list(range(1, 7))  # the lost step 4 was dropped, then redone
    assert [r["loss"] for r in cut_log] == full_log
    assert [r["lr"] for r in cut_log] == [r["lr"] for r in read_jsonl(full.log_path)]

    probe_a, extra_a = _final_state(tmp_path / "full")
    probe_b, extra_b = _final_state(tmp_path / "cut")
    for name in probe_a:
        assert torch.equal(probe_a[name], probe_b[name]), name
    for name in extra_a:  # gallery-net + both queues (hsst) / classifier head (plain)
        assert torch.equal(extra_a[name], extra_b[name]), name
    model, meta = load_probe_checkpoint(tmp_path / "cut" / PROBE_NAME)
    assert meta.training["iterations"] == 6 and meta.preprocess.crop_size == 32


def test_pause_then_resume_equals_uninterrupted(orl_dir, tmp_path):
    """--pause-after between periodic checkpoints writes its own; the resumed run matches an unpaused one."""
    full = train(tiny(orl_dir, tmp_path / "full", "plain"))
    paused = train(tiny(orl_dir, tmp_path / "cut", "plain"), pause_after=4)
    assert paused.iterations == 4 and load_train_state(tmp_path / "cut" / RESUME_NAME)["iteration"] == 4
    resumed = train(tiny(orl_dir, tmp_path / "cut", "plain", run={"resume": True}))
    assert resumed.start_iteration == 4
    assert [r["loss"] for r in read_jsonl(resumed.log_path)] == [r["loss"] for r in read_jsonl(full.log_path)]
    probe_a, _ = _final_state(tmp_path / "full")
    probe_b, _ = _final_state(tmp_path / "cut")
    assert all(torch.equal(probe_a[name], probe_b[name]) for name in probe_a)


@pytest.mark.parametrize("pause_after", [0, 6, 9])
def test_pause_outside_the_schedule_is_refused(orl_dir, tmp_path, pause_after):
    with pytest.raises(ConfigError, match="--pause-after"):
        train(tiny(orl_dir, tmp_path, "plain"), pause_after=pause_after)


def test_resume_refuses_other_config(orl_dir, tmp_path):
    train(tiny(orl_dir, tmp_path, optim={"iters": 3, "milestones": [2]}))
    with pytest.raises(ConfigError, match="loss.name"):
        Trainer(tiny(orl_dir, tmp_path, loss={"name": "triplet"}, optim={"milestones": [2]},
                     run={"resume": True})).setup()


def test_resume_without_checkpoint_says_so(orl_dir, tmp_path):
    trainer = Trainer(tiny(orl_dir, tmp_path, run={"resume": True}))
    try:
        with pytest.raises(ModelError, match="no resume checkpoint"):
            trainer.setup()
    finally:
        trainer.close()


def test_checkpoint_write_is_atomic(orl_dir, tmp_path, monkeypatch):
    """A crash inside torch.save (process killed mid-write) leaves the previous checkpoint intact."""
    trainer = Trainer(tiny(orl_dir, tmp_path, optim={"iters": 3, "milestones": [2]}, run={"save_every": 1}))
    try:
        trainer.fit(stop_after=1)
        before = (tmp_path / RESUME_NAME).read_bytes()
        real_save = torch.save

        def torn_save(obj, f, *a, **k):
            f.write(b"half a checkpoint")  # torch.save writes into the open temporary file
            raise KeyboardInterrupt("killed mid-write")

        monkeypatch.setattr(torch, "save", torn_save)
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(stop_after=2)
        monkeypatch.setattr(torch, "save", real_save)
    finally:
        trainer.close()
    assert (tmp_path / RESUME_NAME).read_bytes() == before
    assert load_train_state(tmp_path / RESUME_NAME)["iteration"] == 1
    assert not list(tmp_path.glob(".*.tmp"))
