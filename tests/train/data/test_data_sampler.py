"""Identity / item batch samplers: distinct identities, seeded epochs, exact resume, DDP slices, collate."""
from __future__ import annotations

import itertools

import pytest
import torch

from hsst.core.errors import ConfigError
from hsst.train.data import IdentityBatchSampler, ItemBatchSampler, collate_items, collate_pairs


def _take(sampler, n):
    return [next(sampler) for _ in range(n)]


def test_batches_hold_distinct_identities_and_cover_epochs():
    sampler = IdentityBatchSampler(num_identities=23, batch_size=5, seed=7)
    assert len(sampler) == 4  # 23 // 5, the partial batch is dropped
    batches = _take(sampler, 12)  # three epochs
    for batch in batches:
        ids = [i for i, _ in batch]
        assert len(batch) == 5 and len(set(ids)) == 5 and all(0 <= i < 23 for i in ids)
    epochs = [list(itertools.chain.from_iterable(batches[e * 4:(e + 1) * 4])) for e in range(3)]
    for keys in epochs:
        ids = [i for i, _ in keys]
        assert len(set(ids)) == 20  # without replacement within an epoch
    assert [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]  # a new permutation per epoch
    seeds = [s for keys in epochs for _, s in keys]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2 ** 63 for s in seeds)
    assert sampler.state_dict()["epoch"] == 2 and sampler.step == 12


def test_same_seed_same_stream_other_seed_other_stream():
    assert _take(IdentityBatchSampler(30, 4, seed=1), 10) == _take(IdentityBatchSampler(30, 4, seed=1), 10)
    assert _take(IdentityBatchSampler(30, 4, seed=1), 10) != _take(IdentityBatchSampler(30, 4, seed=2), 10)


def test_too_few_identities_says_how_many_are_needed():
    with pytest.raises(ConfigError, match="needs at least batch_size x world_size = 8 x 1 = 8 identities"):
        IdentityBatchSampler(num_identities=5, batch_size=8)
    with pytest.raises(ConfigError, match="8 x 2 = 16 identities.*has 10"):
        IdentityBatchSampler(num_identities=10, batch_size=8, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        IdentityBatchSampler(40, 4, rank=2, world_size=2)


@pytest.mark.parametrize("consumed", [0, 3, 5, 9, 10])
def test_resume_mid_epoch_continues_exactly(consumed):
    reference = IdentityBatchSampler(17, 3, seed=11)  # 5 batches per epoch
    expected = _take(reference, consumed + 12)[consumed:]
    interrupted = IdentityBatchSampler(17, 3, seed=11)
    _take(interrupted, consumed)
    state = interrupted.state_dict()
    assert set(state) >= {"epoch", "position", "seed"}
    resumed = IdentityBatchSampler(17, 3, seed=999)  # the checkpoint's seed wins
    resumed.load_state_dict(dict(state))
    assert _take(resumed, 12) == expected
    by_step = IdentityBatchSampler(17, 3, seed=11)
    by_step.load_state_dict(by_step.state_for_step(consumed))
    assert _take(by_step, 12) == expected


def test_ddp_ranks_get_disjoint_slices_of_the_global_batch():
    world = 3
    ranks = [IdentityBatchSampler(40, 4, seed=5, rank=r, world_size=world) for r in range(world)]
    single = IdentityBatchSampler(40, 4 * world, seed=5)  # the same global batches on one process
    assert len(ranks[0]) == len(single) == 3
    for _ in range(7):
        parts = [next(r) for r in ranks]
        ids = [[i for i, _ in part] for part in parts]
        assert all(len(part) == 4 for part in parts)
        assert len(set(itertools.chain.from_iterable(ids))) == 4 * world  # disjoint across ranks
        assert list(itertools.chain.from_iterable(parts)) == next(single)


def test_item_sampler_and_state_errors():
    sampler = ItemBatchSampler(num_items=50, batch_size=8, seed=2, rank=1, world_size=2)
    batches = _take(sampler, 6)  # 3 per epoch
    assert all(len(b) == 8 for b in batches)
    first_epoch = [i for b in batches[:3] for i, _ in b]
    assert len(set(first_epoch)) == 24
    resumed = ItemBatchSampler(50, 8, seed=2, rank=1, world_size=2)
    resumed.load_state_dict(sampler.state_dict())
    reference = ItemBatchSampler(50, 8, seed=2, rank=1, world_size=2)
    assert _take(resumed, 4) == _take(reference, 10)[6:]
    with pytest.raises(ConfigError, match="lacks"):
        resumed.load_state_dict({"epoch": 1})
    with pytest.raises(ConfigError, match="beyond"):
        resumed.load_state_dict({"epoch": 0, "position": 9, "seed": 2})
    with pytest.raises(ConfigError, match="needs at least"):
        ItemBatchSampler(5, 8)


def test_collate_functions():
    pairs = [(torch.full((1, 4, 4), float(i)), torch.zeros(1, 4, 4), i) for i in range(3)]
    nir, vis, labels = collate_pairs(pairs)
    assert nir.shape == vis.shape == (3, 1, 4, 4) and labels.tolist() == [0, 1, 2] and labels.dtype == torch.int64
    images, labels = collate_items([(torch.ones(3, 2, 2), 7), (torch.zeros(3, 2, 2), 9)])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [7, 9]
