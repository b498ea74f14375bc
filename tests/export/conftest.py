"""Export test fixtures: real faces from the shared data and an untrained stand-in probe-net saved as a checkpoint.

The stand-in (tools/stand_in.py) is a seeded MobileFaceNet LSUV-scaled on real faces: smooth like a trained
network, so parity and INT8 gates measure the runtimes, not a chaotic random net.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hsst.export.calibration import FaceImageFolder

# the stand-in probe-net is development tooling (tools/stand_in.py), not part of the package
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))


@pytest.fixture(scope="session")
def gray_meta():
    pytest.importorskip("torch")
    from hsst.train.models import create_backbone, meta_for

    return meta_for(create_backbone("mobilefacenet"), thresholds={"1e-3": 0.42, "1e-4": 0.51},
                    training={"method": "untrained stand-in (tests)"})


@pytest.fixture(scope="session")
def lfw_faces(lfw_dir, gray_meta) -> np.ndarray:
    """96 real LFW faces (centre crop + resize to 112) as gray network input."""
    return FaceImageFolder(lfw_dir, gray_meta.preprocess, limit=96, align=False).tensor()


@pytest.fixture(scope="session")
def probe_net(lfw_faces):
    from stand_in import stand_in_probe_net

    return stand_in_probe_net(lfw_faces[:48], seed=0)


@pytest.fixture(scope="session")
def probe_ckpt(tmp_path_factory, probe_net, gray_meta) -> Path:
    from hsst.train.models import save_probe_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "probe.pt"
    return save_probe_checkpoint(path, probe_net, gray_meta)


@pytest.fixture(scope="session")
def face_dir(tmp_path_factory, orl_dir) -> Path:
    """A small folder of real face images (ORL, linked, not copied) for CLI runs."""
    folder = tmp_path_factory.mktemp("faces")
    for i, src in enumerate(sorted(orl_dir.rglob("*.pgm"))[::10][:40]):
        (folder / f"{i:03d}_{src.parent.name}_{src.name}").symlink_to(src)
    return folder


@pytest.fixture()
def detectors_only(monkeypatch):
    """Exporter runs of the face detectors alone (no probe-net); skipped without the face-model packages."""
    from hsst.core.errors import HsstError
    from hsst.export.detector_target import runtime_model

    try:
        runtime_model("blazeface_full")
    except HsstError as exc:
        pytest.skip(f"face detector models unavailable: {exc}")
    monkeypatch.setattr("hsst.export.exporter.default_weights", lambda: None)
