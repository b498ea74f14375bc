"""Two-process DDP on CPU (gloo): identical queues, gallery-nets and probe weights on both ranks."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hsst.train.checkpointing import PROBE_NAME, RESUME_NAME, load_train_state
from hsst.train.config import TrainConfig
from hsst.train.logging_utils import read_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, dump: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from hsst.train.trainer import Trainer

    trainer = Trainer(TrainConfig.from_dict(cfg_dict))
    try:
        trainer.fit()
        torch.save({"probe": trainer.probe.state_dict(), "method": trainer.method.state_dict(),
                    "batches": trainer.batches_consumed}, f"{dump}.{rank}")
    finally:
        trainer.close()


def _run(orl_dir, tmp_path, method, loss):
    cfg = {"method": method, "loss": {"name": loss},
           "data": {"data": str(orl_dir), "max_identities": 16},
           "model": {"input_size": 32},
           "optim": {"iters": 3, "batch_size": 4, "lr": 0.01, "milestones": [2]},
           "hsst": {"queue_size": 12, "ema": 0.9},
           "run": {"out": str(tmp_path / "run"), "device": "cpu", "save_every": 2, "progress": False,
                   "threads": 1}}
    dump = str(tmp_path / "rank")
    mp.spawn(_worker, args=(2, _free_port(), cfg, dump), nprocs=2, join=True)
    r0, r1 = torch.load(f"{dump}.0"), torch.load(f"{dump}.1")
    for part in ("probe", "method"):  # probe-net + gallery-net + queues (hsst) or classifier head (plain)
        assert r0[part].keys() == r1[part].keys()
        for name in r0[part]:
            assert torch.equal(r0[part][name], r1[part][name]), (part, name)
    # only rank 0 wrote: one log with 3 steps, one probe-net, one resume state with world_size 2
    out = tmp_path / "run"
    assert [r["iter"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3]
    assert (out / PROBE_NAME).is_file()
    state = load_train_state(out / RESUME_NAME)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    for name, value in state["probe"].items():
        assert torch.equal(value, r0["probe"][name])
    return r0


@pytest.mark.slow
def test_two_process_hsst_keeps_queues_and_weights_identical(orl_dir, tmp_path):
    r0 = _run(orl_dir, tmp_path, "hsst", "softmax")
    # 2 warm-up + 3 training global batches of 2 x 4 identities; the queues hold both ranks' features
    assert r0["batches"] == 5 and int(r0["method"]["nir_queue.count"]) == 12
    labels = r0["method"]["nir_queue.queue_labels"]
    assert (labels >= 0).all() and len(set(labels.tolist())) >= 8


@pytest.mark.slow
def test_two_process_plain_classifier_head_is_synchronised(orl_dir, tmp_path):
    r0 = _run(orl_dir, tmp_path, "plain", "am-softmax")
    assert r0["method"]["head.weight"].shape == (16, 512)
