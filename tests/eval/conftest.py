"""Evaluation fixtures: a real (untrained, seeded) MobileFaceNet as checkpoint and ONNX, small dataset trees.

The model is 64 px so that plumbing tests run fast on two shared CPU cores; assertions are about plumbing
(counts, cache hits, report fields, checkpoint == ONNX), never about accuracy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import cv2
import pytest

from hsst.core.image import read_image

CROP = 64


@pytest.fixture(scope="session")
def eval_models(tmp_path_factory) -> Dict[str, Path]:
    torch = pytest.importorskip("torch")
    from hsst.core.metadata import sidecar_path
    from hsst.export.onnx_export import export_onnx
    from hsst.train.models import create_backbone, meta_for, save_probe_checkpoint

    torch.manual_seed(0)
    model = create_backbone("mobilefacenet", input_size=CROP, embedding_dim=128, in_chans=1).eval()
    meta = meta_for(model, name="test-mobilefacenet-64")
    root = tmp_path_factory.mktemp("eval_models")
    ckpt = save_probe_checkpoint(root / "probe_net.pt", model, meta)
    onnx_path = root / "probe_net.onnx"
    export_onnx(model, meta, onnx_path, dynamic=True)
    meta.save(sidecar_path(onnx_path))
    return {"checkpoint": ckpt, "onnx": onnx_path}


def _write(path: Path, image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


@pytest.fixture
def orl_folders(tmp_path: Path, orl_dir: Path) -> Dict[str, Path]:
    """ORL as gallery/probe folders (symlinks): gallery = image 1 of each of the 40 identities, probes = the rest."""
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for subject in sorted(orl_dir.glob("s*")):
        for image in sorted(subject.glob("*.pgm")):
            target = (gallery if image.name == "1.pgm" else probes) / subject.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(image)
    return {"gallery": gallery, "probes": probes}


@pytest.fixture
def casia_eval_tree(tmp_path: Path, orl_dir: Path) -> Path:
    """CASIA NIR-VIS 2.0 layout (as tests/train/data builds it) with two test folds from ORL faces.

    Fold k: gallery = VIS image 1 of identities 1..6, probes = NIR images k+1, k+2 of each; NIR files are
    .bmp listed as .jpg, lines are Windows paths with CRLF and a BOM, as in the real lists.
    """
    root = tmp_path / "casia"
    gallery, probes = {1: [], 2: []}, {1: [], 2: []}
    for k in range(1, 7):
        ident = f"{10000 + k}"
        for n in range(1, 5):
            _write(root / "s1" / "NIR" / ident / f"{n:03d}.bmp", read_image(orl_dir / f"s{k}" / f"{n}.pgm"))
            for fold in (1, 2):
                if n in (fold + 1, fold + 2):
                    probes[fold].append(f"s1\\NIR\\{ident}\\{n:03d}.jpg")
        vis = cv2.cvtColor(read_image(orl_dir / f"s{k}" / "9.pgm"), cv2.COLOR_GRAY2BGR)
        _write(root / "s1" / "VIS" / ident / "001.jpg", vis)
        for fold in (1, 2):
            gallery[fold].append(f"s1\\VIS\\{ident}\\001.jpg")
    protocols = root / "protocols"
    protocols.mkdir(parents=True)
    for fold in (1, 2):
        for name, lines in ((f"vis_gallery_{fold}.txt", gallery[fold]), (f"nir_probe_{fold}.txt", probes[fold])):
            (protocols / name).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines + [""]).encode("utf-8"))
    return root


@pytest.fixture
def tiny_pairs(tmp_path: Path, lfw_dir: Path) -> Path:
    """20 lines of pairs_filtered.txt (10 same, 10 different) with the original header line."""
    lines = (lfw_dir / "pairs_filtered.txt").read_text(encoding="utf-8").splitlines()
    same = [line for line in lines if len(line.split()) == 3][:10]
    diff = [line for line in lines if len(line.split()) == 4][:10]
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(["10 300"] + same + diff) + "\n", encoding="utf-8")
    return path
