"""HSST training step (EMA gallery-net, queues) and a short real run whose loss falls."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsst.train.config import TrainConfig
from hsst.train.logging_utils import read_jsonl
from hsst.train.models import load_probe_checkpoint
from hsst.train.trainer import Trainer, train


def tiny(orl_dir, out, **sections) -> TrainConfig:
    d = {"data": {"data": str(orl_dir), "max_identities": 12},
         "model": {"input_size": 32},
         "optim": {"iters": 4, "batch_size": 4, "lr": 0.01, "milestones": [3]},
         "hsst": {"queue_size": 8, "ema": 0.9},
         "run": {"out": str(out), "device": "cpu", "save_every": 0, "progress": False, "threads": 1}}
    for name, values in sections.items():
        d.setdefault(name, {}).update(values)
    return TrainConfig.from_dict(d)


def test_prefill_fills_both_queues_from_the_gallery(orl_dir, tmp_path):
    trainer = Trainer(tiny(orl_dir, tmp_path))
    try:
        trainer.setup()
        m = trainer.method
        assert len(m.nir_queue) == len(m.vis_queue) == 8  # ceil(8 / 4) = 2 warm-up batches
        assert trainer.batches_consumed == 2 and trainer.iteration == 0
        sampler = trainer.sampler
        expected = np.concatenate([sampler.global_batch_at(0, 0), sampler.global_batch_at(0, 1)])
        assert m.nir_queue.labels().tolist() == expected.tolist() == m.vis_queue.labels().tolist()
        assert not m.gallery.training
        assert all(not p.requires_grad for p in m.gallery.parameters())
    finally:
        trainer.close()


def test_step_updates_ema_and_enqueues_gallery_features(orl_dir, tmp_path):
    trainer = Trainer(tiny(orl_dir, tmp_path))
    try:
        trainer.setup()
        m = trainer.method
        gallery_before = copy.deepcopy(m.gallery)
        old_nir, old_vis = m.nir_queue.features().clone(), m.vis_queue.features().clone()
        keys = trainer.sampler.global_batch_at(0, 2)  # identities of the batch step 1 draws (after 2 warm-ups)

        parts = trainer.step()
        assert set(parts) == {"loss", "loss_nir_vis", "loss_vis_nir"}
        assert parts["loss"] == pytest.approx(parts["loss_nir_vis"] + parts["loss_vis_nir"], rel=1e-5)

        # EMA: gallery = 0.9 gallery_before + 0.1 probe_after, parameters and BN running statistics
        probe = dict(trainer.probe.named_parameters()) | dict(trainer.probe.named_buffers())
        before = dict(gallery_before.named_parameters()) | dict(gallery_before.named_buffers())
        for name, value in list(m.gallery.named_parameters()) + list(m.gallery.named_buffers()):
            if value.is_floating_point():
                torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * probe[name], rtol=0, atol=1e-6)
            else:
                assert torch.equal(value, probe[name])
        assert "running_mean" in " ".join(n for n, _ in m.gallery.named_buffers())

        # queues: the 4 oldest entries dropped, the batch's gallery features (pre-EMA gallery) appended
        assert m.nir_queue.labels()[-4:].tolist() == keys.tolist() == m.vis_queue.labels()[-4:].tolist()
        torch.testing.assert_close(m.nir_queue.features()[:4], old_nir[4:])
        torch.testing.assert_close(m.vis_queue.features()[:4], old_vis[4:])
        sampler_keys = [(int(i), s) for i, s in _keys_of_batch(trainer, 2)]
        nir = torch.stack([trainer.dataset[k][0] for k in sampler_keys])
        vis = torch.stack([trainer.dataset[k][1] for k in sampler_keys])
        with torch.no_grad():
            torch.testing.assert_close(m.nir_queue.features()[-4:], F.normalize(gallery_before(nir)),
                                       rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(m.vis_queue.features()[-4:], F.normalize(gallery_before(vis)),
                                       rtol=1e-4, atol=1e-5)
    finally:
        trainer.close()


def _keys_of_batch(trainer, step):
    """The (identity, sample_seed) keys of the step-th batch, from a fresh sampler in that state."""
    sampler = copy.deepcopy(trainer.sampler)
    sampler.load_state_dict(sampler.state_for_step(step))
    return next(sampler)


@pytest.mark.slow
def test_real_hsst_run_loss_falls(orl_dir, tmp_path):
    """40 AT&T/ORL identities, NIR side = grayscale, 64 px MobileFaceNet from scratch, 30 steps of 8 pairs.

    Scale 10 instead of 30 keeps the loss of a random network smooth enough to compare means over 8 steps.
    """
    cfg = tiny(orl_dir, tmp_path, data={"max_identities": 0}, model={"input_size": 64},
               optim={"iters": 30, "batch_size": 8, "lr": 0.01, "milestones": [24]},
               hsst={"queue_size": 32, "ema": 0.9}, loss={"scale": 10.0})
    result = train(cfg)
    losses = [r["loss"] for r in read_jsonl(result.log_path)]
    assert len(losses) == 30 and all(np.isfinite(losses))
    first, last = float(np.mean(losses[:8])), float(np.mean(losses[-8:]))
    assert last < 0.8 * first, (first, last, losses)
    model, meta = load_probe_checkpoint(result.probe_checkpoint)
    assert meta.training["method"] == "hsst" and meta.preprocess.color == "gray"
    assert result.config_path.is_file() and TrainConfig.load(result.config_path).hsst.queue_size == 32


def test_lfw_identities_with_five_images(lfw_dir, tmp_path):
    """LFW (250x250 RGB, loosely centred): identities with 5+ photos, the NIR side made by the gray transform."""
    result = train(tiny(lfw_dir, tmp_path, data={"min_images": 5, "max_identities": 8},
                        optim={"iters": 2, "milestones": []}))
    assert result.iterations == 2 and np.isfinite(result.final_loss)
    cfg = TrainConfig.load(result.config_path)
    assert cfg.data.min_images == 5 and cfg.data.nir_transform == "gray"
