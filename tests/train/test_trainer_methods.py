"""Plain baseline (classifier and triplet) and VIS pretraining (classification, dlib distillation) on real data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hsst.core.errors import ConfigError, ModelError
from hsst.train.checkpointing import RESUME_NAME, load_train_state
from hsst.train.config import TrainConfig
from hsst.train.logging_utils import read_jsonl
from hsst.train.methods import distillation_loss
from hsst.train.models import create_backbone, load_probe_checkpoint
from hsst.train.trainer import Trainer, train


def tiny(orl_dir, out, method, **sections) -> TrainConfig:
    d = {"method": method,
         "data": {"data": str(orl_dir), "max_identities": 8},
         "model": {"input_size": 32},
         "optim": {"iters": 3, "batch_size": 4, "lr": 0.01, "milestones": [2]},
         "run": {"out": str(out), "device": "cpu", "save_every": 0, "progress": False, "threads": 1}}
    for name, values in sections.items():
        d.setdefault(name, {}).update(values)
    return TrainConfig.from_dict(d)


@pytest.mark.parametrize("method,loss,key", [
    ("plain", "arc-softmax", "plain"),
    ("plain", "triplet", "plain-triplet"),
    ("pretrain", "softmax", "pretrain"),
])
def test_method_runs_and_writes_a_probe_net(orl_dir, tmp_path, method, loss, key):
    result = train(tiny(orl_dir, tmp_path, method, loss={"name": loss}))
    assert result.method == key and result.iterations == 3
    log = read_jsonl(result.log_path)
    assert [r["iter"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    assert [r["lr"] for r in log] == pytest.approx([0.01, 0.01, 0.001])  # lr / 10 at milestone 2
    model, meta = load_probe_checkpoint(result.probe_checkpoint)
    assert meta.training["method"] == key and model.embedding_dim == 512
    state = load_train_state(result.resume_checkpoint)
    if key == "plain-triplet":
        assert state["method"] == {}
        assert {"loss_nir_vis", "loss_vis_nir"} <= set(log[0])
    else:  # the classifier head is part of the resume state
        assert state["method"]["head.weight"].shape == (8, 512)
        assert "accuracy" in log[0]


def test_pretrain_classification_uses_vis_only_and_init_loads_it(orl_dir, tmp_path):
    pre = Trainer(tiny(orl_dir, tmp_path / "pre", "pretrain"))
    try:
        pre.setup()
        assert {m for _, _, m in pre.dataset.items} == {"vis"} and len(pre.dataset) == 80
        result = pre.fit()
    finally:
        pre.close()
    # --init accepts the pretrain output; fine-tuning starts from exactly those weights
    init = Trainer(tiny(orl_dir, tmp_path / "ft", "hsst", model={"init": str(result.probe_checkpoint)},
                        hsst={"queue_size": 4, "calibrate_bn": False}))
    try:
        init.setup()
        pretrained, _ = load_probe_checkpoint(result.probe_checkpoint)
        for (name, a), b in zip(init.probe.state_dict().items(), pretrained.state_dict().values()):
            assert torch.equal(a, b), name
    finally:
        init.close()


def test_init_with_nothing_matching_fails(orl_dir, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    trainer = Trainer(tiny(orl_dir, tmp_path / "run", "plain", model={"init": str(other)}))
    try:
        with pytest.raises(ModelError, match="no tensor matched"):
            trainer.setup()
    finally:
        trainer.close()


def test_init_reports_foreign_prefixes(orl_dir, tmp_path, caplog):
    net = create_backbone("mobilefacenet", input_size=32)
    foreign = tmp_path / "facex.pt"
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in net.state_dict().items()}}, foreign)
    trainer = Trainer(tiny(orl_dir, tmp_path / "run", "plain", model={"init": str(foreign)}))
    try:
        with caplog.at_level("INFO", logger="hsst"):
            trainer.setup()
        assert torch.equal(trainer.probe.state_dict()["linear.weight"], net.state_dict()["linear.weight"])
        assert any("loaded" in r.getMessage() and "init" in r.getMessage() for r in caplog.records)
    finally:
        trainer.close()


def test_distillation_loss_values():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    assert distillation_loss(s, t).item() == pytest.approx(0.5)  # cos 1 and 0
    assert distillation_loss(s, t, mse_weight=1.0).item() == pytest.approx(0.5 + 0.5)  # mean sq diff of unit vecs


@pytest.mark.teacher
def test_pretrain_distills_dlib_and_caches_descriptors(orl_dir, tmp_path):
    cache = tmp_path / "dlib.npz"
    cfg = tiny(orl_dir, tmp_path / "a", "pretrain", data={"max_identities": 4}, teacher={"name": "dlib",
                                                                                         "cache": str(cache)})
    result = train(cfg)
    assert result.method == "pretrain-distill" and np.isfinite(result.final_loss)
    assert 0.0 <= result.final_loss <= 2.0  # 1 - cos
    with np.load(cache) as data:
        assert data["desc"].shape == (40, 128)
        norms = np.linalg.norm(data["desc"], axis=1)
    assert np.all(norms > 0.1)
    state = load_train_state(tmp_path / "a" / RESUME_NAME)
    assert state["method"]["projection.linear.weight"].shape == (128, 512)
    mtime = cache.stat().st_mtime_ns
    train(TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "out": str(tmp_path / "b")}}))
    assert cache.stat().st_mtime_ns == mtime  # second run read every descriptor from the cache


@pytest.mark.gpu
def test_cuda_mixed_precision_hsst(orl_dir, tmp_path):
    result = train(tiny(orl_dir, tmp_path, "hsst", hsst={"queue_size": 8}, model={"input_size": 112},
                        run={"device": "cuda", "amp": True}))
    assert np.isfinite(result.final_loss)
    state = load_train_state(result.resume_checkpoint)
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0


def _from_pretrained(lfw_tree, out, method, **sections) -> TrainConfig:
    d = {"method": method,
         "data": {"data": str(lfw_tree), "nir_transform": "nir-sim+mask", "min_images": 2},
         "model": {"init": "mobilefacenet-ms1m"},
         "optim": {"iters": 8, "batch_size": 8, "lr": 0.001, "milestones": []},
         "teacher": {"cache": str(out / "teacher.npz")},
         "run": {"out": str(out), "device": "cpu", "save_every": 0, "progress": False, "threads": 2}}
    for name, values in sections.items():
        d.setdefault(name, {}).update(values)
    return TrainConfig.from_dict(d)


def test_distill_from_the_pretrained_import_lowers_its_loss(pretrained_mobilefacenet, lfw_tree, tmp_path):
    config = _from_pretrained(lfw_tree, tmp_path, "distill")
    result = train(config)
    assert result.method == "distill" and config.teacher.name == "mobilefacenet-ms1m"
    log = read_jsonl(result.log_path)
    losses = [r["loss"] for r in log]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(0 < r["cosine"] <= 1 for r in log)
    model, meta = load_probe_checkpoint(result.probe_checkpoint)
    assert meta.arch == "mobilefacenet_tf" and model.embedding_dim == 192 and meta.preprocess.color == "gray"


def test_hsst_accepts_the_pretrained_weights_by_name(pretrained_mobilefacenet, lfw_tree, tmp_path):
    config = _from_pretrained(lfw_tree, tmp_path, "hsst", optim={"iters": 2, "batch_size": 4},
                              hsst={"queue_size": 8})
    trainer = Trainer(config)
    try:
        trainer.setup()
        from hsst.train.models.pretrained import create_pretrained

        reference = create_pretrained("mobilefacenet-ms1m").state_dict()
        assert all(torch.equal(v, reference[k]) for k, v in trainer.method.gallery.state_dict().items())
        result = trainer.fit()
    finally:
        trainer.close()
    assert result.iterations == 2


@pytest.mark.parametrize("changes,match", [
    ({"model": {"backbone": "resnet50", "init": "mobilefacenet-ms1m"}}, "loads into --backbone mobilefacenet_tf"),
    ({"method": "distill", "model": {"init": None}}, "--method distill pulls the student"),
    ({"method": "pretrain", "teacher": {"name": "mobilefacenet-ms1m"}}, "is for --method distill"),
    ({"method": "plain", "teacher": {"name": "mobilefacenet-ms1m"}}, "not --method plain"),
])
def test_pretrained_init_and_teacher_combinations_are_checked(tmp_path, changes, match):
    d = {"method": changes.get("method", "hsst"), "data": {"data": str(tmp_path)},
         "model": {"init": "mobilefacenet-ms1m", **changes.get("model", {})},
         "teacher": changes.get("teacher", {}), "run": {"out": str(tmp_path / "run")}}
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(d).validate()


def test_pretrained_init_sets_backbone_and_embedding_size(tmp_path):
    config = TrainConfig.from_dict({"method": "hsst", "data": {"data": str(tmp_path)},
                                    "model": {"init": "mobilefacenet-ms1m"}}).validate()
    assert (config.model.backbone, config.model.embedding_dim) == ("mobilefacenet_tf", 192)


def test_hsst_teacher_term_holds_a_frozen_copy_of_the_init(pretrained_mobilefacenet, lfw_tree, tmp_path):
    config = _from_pretrained(lfw_tree, tmp_path, "hsst", optim={"iters": 2, "batch_size": 4},
                              hsst={"queue_size": 8, "teacher_weight": 1.0})
    result = train(config)
    log = read_jsonl(result.log_path)
    assert all(0 <= r["loss_teacher"] < 4 for r in log)
    state = load_train_state(result.resume_checkpoint)["method"]
    from hsst.train.models.pretrained import create_pretrained

    reference = create_pretrained("mobilefacenet-ms1m").state_dict()
    assert all(torch.equal(state[f"teacher.{k}"], v) for k, v in reference.items())  # never updated
    assert "--teacher-weight 1.0" in config.command_line()


def test_plain_head_is_imprinted_from_the_pretrained_network(pretrained_mobilefacenet, lfw_tree, tmp_path):
    """With --init the plain classifier starts at each identity's mean VIS embedding: on real faces its first
    loss is far below a random head's (which would scramble the pretrained network with its first gradients)."""
    import torch.nn.functional as F

    first_loss = {}
    for imprint in (True, False):
        config = _from_pretrained(lfw_tree, tmp_path / str(imprint), "plain", optim={"iters": 1, "batch_size": 16},
                                  loss={"imprint": imprint})
        trainer = Trainer(config)
        try:
            trainer.setup()
            head = trainer.method.extra["head"]
            if imprint:
                ds = trainer.dataset
                label, vis = 0, [i for i, (_, lab, m) in enumerate(ds.items) if lab == 0 and m == "vis"]
                with torch.no_grad():
                    trainer.probe.eval()
                    emb = F.normalize(trainer.probe(torch.stack([ds[(i, 0)][0] for i in vis])), dim=1)
                    trainer.probe.train()
                expected = F.normalize(emb.sum(0), dim=0)
                assert torch.allclose(F.normalize(head.weight[label], dim=0), expected, atol=1e-5)
            first_loss[imprint] = read_jsonl(trainer.fit().log_path)[0]["loss"]
        finally:
            trainer.close()
    assert config.loss.imprint is False and first_loss[True] < 0.5 * first_loss[False]


def test_imprint_defaults_to_on_with_an_init(orl_dir, tmp_path):
    assert tiny(orl_dir, tmp_path, "plain").validate().loss.imprint is False
    assert _from_pretrained(orl_dir, tmp_path, "plain").validate().loss.imprint is True
