"""Make a shipped checkpoint and its ONNX sidecar agree, with no path of the machine that trained them.

    python tools/seal_model.py --onnx sdk/assets/models/hsst-mobilefacenet-112.onnx \
        --checkpoint sdk/assets/models/hsst-mobilefacenet-112.pt --alias /data/train_crops=TRAIN_CROPS

* the checkpoint gets the sidecar's name and FAR -> threshold table (a re-export of it writes the same file
  name and keeps the gate's thresholds);
* every ``PATH`` given with ``--alias PATH=NAME`` becomes ``NAME`` in both files' training metadata;
* the sidecar's ``source.sha256`` names the checkpoint as it is written here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import torch

from hsst.core.files import file_sha256
from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.train.checkpointing import atomic_torch_save


def replace_paths(value, aliases: Dict[str, str]):
    """``value`` (plain JSON-like data) with every alias path replaced by its name."""
    text = json.dumps(value)
    for path in sorted(aliases, key=len, reverse=True):  # longest first: nested paths stay whole
        text = text.replace(path, aliases[path])
    return json.loads(text)


def seal(onnx: Path, checkpoint: Path, aliases: Dict[str, str]) -> None:
    side = sidecar_path(onnx)
    meta = ModelMeta.load(side)
    meta.training = replace_paths(meta.training, aliases)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt_meta = ModelMeta.from_dict(ckpt["meta"])
    ckpt_meta.name = meta.name = onnx.name[: -len(".onnx")]
    ckpt_meta.thresholds = dict(meta.thresholds)
    ckpt_meta.training = replace_paths(ckpt_meta.training, aliases)
    if "thresholds_from" in meta.extra:
        ckpt_meta.extra = {**ckpt_meta.extra, "thresholds_from": meta.extra["thresholds_from"]}
    ckpt["meta"] = ckpt_meta.to_dict()
    atomic_torch_save(ckpt, checkpoint)
    meta.extra = {**meta.extra, "source": {**meta.extra.get("source", {}), "sha256": file_sha256(checkpoint)}}
    meta.save(side)


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, type=Path)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--alias", action="append", default=[], help="PATH=NAME")
    args = parser.parse_args(argv)
    seal(args.onnx, args.checkpoint, dict(item.partition("=")[::2] for item in args.alias))


if __name__ == "__main__":
    main()
