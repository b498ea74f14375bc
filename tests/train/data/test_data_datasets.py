"""PairDataset / ImageDataset on real ORL and LFW faces: determinism, shared preprocessing, bad images."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hsst.core.errors import ConfigError, DatasetError
from hsst.core.metadata import Preprocess
from hsst.core.preprocess import to_input
from hsst.train.data import (FaceLoader, GrayscaleNir, IdentityBatchSampler, Identity, ImageDataset,
                             ItemBatchSampler, PairDataset, collate_items, collate_pairs, index_generic,
                             index_vis_folders)

GRAY = Preprocess.for_size(112, color="gray")
RGB = Preprocess.for_size(112, color="rgb")


@pytest.fixture(scope="module")
def orl_index(orl_dir):
    return index_vis_folders(orl_dir)


def test_pair_items_shapes_labels_and_determinism(orl_index):
    dataset = PairDataset(orl_index, FaceLoader(112), GRAY)
    assert len(dataset) == 40 and dataset.num_classes == 40
    nir, vis, label = dataset[(5, 1234)]
    assert nir.shape == vis.shape == (1, 112, 112) and nir.dtype == torch.float32 and label == 5
    again = PairDataset(orl_index, FaceLoader(112), GRAY)[(5, 1234)]  # a fresh dataset: same tensors
    assert torch.equal(again[0], nir) and torch.equal(again[1], vis)
    assert torch.equal(dataset[(5, 1234)][0], nir)
    others = [dataset[(5, s)][0] for s in range(1235, 1245)]
    assert any(not torch.equal(o, nir) for o in others)


def test_synthetic_pairs_use_two_different_photos(orl_index):
    dataset = PairDataset(orl_index, FaceLoader(112), GRAY)
    for seed in range(20):
        nir_path, _, vis_path, _, label = dataset.pick((seed % 40, seed))
        assert nir_path != vis_path and nir_path.parent == vis_path.parent
        assert nir_path.parent.name == orl_index.identities[label]


def test_pair_tensors_are_the_shared_preprocessing(lfw_dir):
    index = index_vis_folders(lfw_dir, min_images=5, max_identities=4)
    loader = FaceLoader(112)
    dataset = PairDataset(index, loader, RGB, nir_transform=GrayscaleNir(), augment=None)
    nir_path, _, vis_path, _, _ = dataset.pick((2, 77))
    nir, vis, _ = dataset[(2, 77)]
    np.testing.assert_array_equal(vis.numpy(), to_input([loader.load(vis_path)], RGB)[0])
    np.testing.assert_array_equal(nir.numpy(), to_input([GrayscaleNir()(loader.load(nir_path), None)], RGB)[0])
    assert torch.equal(nir[0], nir[1]) and torch.equal(nir[1], nir[2])  # simulated NIR: gray in 3 channels
    assert not torch.equal(vis[0], vis[2])  # colour photo


def _broken_after_scan(index):
    """The first NIR image of person01, made unreadable after the scan left the corrupt files out (a disk error, a
    copy still in progress): what the datasets replace at load time."""
    corrupt = index.nir["person01"][0]
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 no longer a JPEG")
    return corrupt


def test_real_pairs_and_corrupt_image_replacement(generic_tree, caplog):
    index = index_generic(generic_tree["root"])
    assert generic_tree["corrupt"] not in index.nir["person01"]  # the scan leaves corrupt files out
    corrupt = _broken_after_scan(index)
    warmed = PairDataset(index, FaceLoader(112), GRAY)
    with caplog.at_level(logging.WARNING, logger="hsst.train.data"):
        picks = [warmed.pick((0, seed)) for seed in range(30)]
    assert list(warmed.bad_images) == [corrupt] and "cannot decode" in warmed.bad_images[corrupt]
    assert sum(str(corrupt) in r.getMessage() for r in caplog.records) == 1  # logged once, not per use
    assert all(nir_path != corrupt and nir_path.parent.name == "NIR" and vis_path.parent.name == "vis"
               for nir_path, _, vis_path, _, _ in picks)
    assert len({nir_path for nir_path, *_ in picks}) == 2
    # The replacement does not depend on whether the bad file was already known (worker history).
    for seed in range(30):
        fresh = PairDataset(index, FaceLoader(112), GRAY)
        a, b = fresh[(0, seed)], warmed[(0, seed)]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2] == 0


def test_identity_without_readable_images_is_a_dataset_error(generic_tree):
    index = index_generic(generic_tree["root"])
    for path in index.nir["person03"]:
        path.write_bytes(b"broken")
    dataset = PairDataset(index, FaceLoader(112), GRAY)
    with pytest.raises(DatasetError, match="identity 'person03': none of its 3 NIR images is readable"):
        dataset[(2, 0)]
    assert len(dataset.bad_images) == 3


def test_image_dataset_pools_modalities(orl_index):
    dataset = ImageDataset(orl_index, FaceLoader(112), GRAY, nir_transform=GrayscaleNir(), augment=None)
    assert len(dataset) == 800 and dataset.labels.shape == (800,) and dataset.num_classes == 40
    assert np.bincount(dataset.labels).tolist() == [20] * 40
    modalities = [m for _, _, m in dataset.items]
    assert modalities.count("nir") == modalities.count("vis") == 400
    image, label = dataset[(13, 99)]
    assert image.shape == (1, 112, 112) and label == dataset.labels[13]
    assert torch.equal(dataset[(13, 99)][0], image)
    vis_only = ImageDataset(orl_index, FaceLoader(112), GRAY, GrayscaleNir(), None, modalities=("vis",))
    assert len(vis_only) == 400
    with pytest.raises(ConfigError, match="modalities"):
        ImageDataset(orl_index, FaceLoader(112), GRAY, modalities=("thermal",))


def test_image_dataset_replaces_corrupt_item(generic_tree):
    index = index_generic(generic_tree["root"])
    corrupt = _broken_after_scan(index)
    dataset = ImageDataset(index, FaceLoader(112), GRAY, nir_transform=Identity(), augment=None)
    position = [p for p, _, _ in dataset.items].index(corrupt)
    image, label = dataset[(position, 5)]
    assert label == 0 and corrupt in dataset.bad_images
    fresh = ImageDataset(index, FaceLoader(112), GRAY, nir_transform=Identity(), augment=None)
    assert torch.equal(fresh[(position, 5)][0], image)


def test_crop_size_mismatch_is_a_config_error(orl_index):
    with pytest.raises(ConfigError, match="crop_size"):
        PairDataset(orl_index, FaceLoader(144), GRAY)


def test_dataloader_batches_with_samplers(orl_index):
    pairs = PairDataset(orl_index, FaceLoader(112), GRAY)
    sampler = IdentityBatchSampler(orl_index.num_identities, batch_size=8, seed=3)
    nir, vis, labels = next(iter(DataLoader(pairs, batch_sampler=sampler, collate_fn=collate_pairs, num_workers=1)))
    assert nir.shape == vis.shape == (8, 1, 112, 112) and labels.dtype == torch.int64
    assert len(set(labels.tolist())) == 8
    images = ImageDataset(orl_index, FaceLoader(112), GRAY)
    batch, labels = next(iter(DataLoader(images, batch_sampler=ItemBatchSampler(len(images), 6, seed=1),
                                         collate_fn=collate_items)))
    assert batch.shape == (6, 1, 112, 112) and labels.shape == (6,)
