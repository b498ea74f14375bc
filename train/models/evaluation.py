"""A probe-net checkpoint as a model of the evaluation (:class:`hsst.eval.embedders.EvalModel`), run in torch.

The evaluation is torch-free and never imports the trainer: it finds this class through the package's entry
point ``hsst.eval_models: checkpoint`` (setup.py), so ``hsst-eval --model probe_net.pt`` works where
``hsst[train]`` is installed and says what to install where it is not.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from hsst.core.errors import ModelError
from hsst.core.metadata import ModelMeta
from hsst.core.preprocess import l2_normalize, to_input
from hsst.eval.embedders import EvalModel
from hsst.train.checkpointing import atomic_torch_save, torch_load
from hsst.train.models.probe_checkpoint import load_probe_checkpoint


class CheckpointModel(EvalModel):
    """A probe-net checkpoint (``hsst.train.models.save_probe_checkpoint``) run in torch."""

    kind = "checkpoint"

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        model, meta = load_probe_checkpoint(path, map_location=self.device)
        super().__init__(path, meta)
        self.model = model.eval()
        self.batch_size = batch_size

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.meta.embedding_dim), np.float32)
        batch = to_input(crops, self.meta.preprocess)
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(batch[start:start + self.batch_size]).to(self.device)
                out.append(self.model(x).float().cpu().numpy())
        emb = np.concatenate(out)
        if emb.shape[1] != self.meta.embedding_dim:
            raise ModelError(f"{self.path}: output has {emb.shape[1]} values, metadata says {self.meta.embedding_dim}")
        return l2_normalize(emb)

    @staticmethod
    def write_thresholds(path: Path, thresholds: Dict[str, float], source: Optional[Dict[str, object]]) -> Path:
        """Rewrite the checkpoint's ``meta`` with a FAR -> threshold table (atomically)."""
        ckpt = torch_load(path, "probe-net checkpoint")
        meta = ModelMeta.from_dict(ckpt["meta"])
        meta.thresholds = dict(thresholds)
        if source:
            meta.extra = {**meta.extra, "thresholds_from": json.loads(json.dumps(source))}
        ckpt["meta"] = meta.to_dict()
        return atomic_torch_save(ckpt, path)
