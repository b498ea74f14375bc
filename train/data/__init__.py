"""NIR-VIS training data (torch): datasets, samplers and NIR transforms over the torch-free dataset indexes and
face loader of :mod:`hsst.data` (re-exported here for the trainer's one import).

Typical use::

    index = index_dataset("/data/lfw", min_images=5)            # layout detected, VIS-only: simulated NIR
    loader = FaceLoader(preprocess.crop_size)
    pairs = PairDataset(index, loader, preprocess, nir_transform=resolve_nir_transform("gray"))
    sampler = IdentityBatchSampler(index.num_identities, batch_size=64, seed=0)
    batches = DataLoader(pairs, batch_sampler=sampler, collate_fn=collate_pairs)
"""
from hsst.train.data.datasets import ImageDataset, PairDataset
from hsst.data import (EXPECTED_LAYOUTS, LAYOUTS, LFW_FACE_BOX, FaceLoader, NirVisIndex, ScanReport, SkippedItem,
                       detect_layout, index_casia, index_dataset, index_generic, index_vis_folders)
from hsst.train.data.sampler import (IdentityBatchSampler, ItemBatchSampler, collate_items, collate_pairs,
                                     derive_seed)
from hsst.train.data.transforms import (Compose, GrayscaleNir, Identity, RandomHorizontalFlip,
                                        available_nir_transforms, register_nir_transform, resolve_nir_transform)

__all__ = [
    "ImageDataset", "PairDataset",
    "EXPECTED_LAYOUTS", "LAYOUTS", "detect_layout", "index_casia", "index_dataset", "index_generic",
    "index_vis_folders",
    "LFW_FACE_BOX", "FaceLoader",
    "NirVisIndex", "ScanReport", "SkippedItem",
    "IdentityBatchSampler", "ItemBatchSampler", "collate_items", "collate_pairs", "derive_seed",
    "Compose", "GrayscaleNir", "Identity", "RandomHorizontalFlip", "available_nir_transforms",
    "register_nir_transform", "resolve_nir_transform",
]
