"""Runtime fixtures: real models (an exported MobileFaceNet, the packaged face detector), real LFW faces, and a
scene builder that assembles gate videos (people entering, standing, leaving) from LFW photos.

torch is used here (to export a MobileFaceNet) and only here: ``hsst.runtime`` itself never imports it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hsst.core.errors import ModelError
from hsst.synth.scene import SceneBuilder
from hsst.core.metadata import sidecar_path


def _export_mobilefacenet(path: Path, batch: int, dynamic: bool) -> Path:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: cannot export a MobileFaceNet for the runtime tests")
    import torch

    from hsst.export.onnx_export import export_onnx
    from hsst.train.models import create_backbone, meta_for

    torch.manual_seed(0)
    model = create_backbone("mobilefacenet", input_size=112, in_chans=1).eval()
    meta = meta_for(model, name="mobilefacenet-untrained-test")
    export_onnx(model, meta, path, batch=batch, dynamic=dynamic)
    meta.save(sidecar_path(path))
    return path


@pytest.fixture(scope="session")
def mfn_onnx(tmp_path_factory) -> Path:
    """An UNTRAINED MobileFaceNet (112, gray) as ONNX with a dynamic batch and its JSON sidecar."""
    return _export_mobilefacenet(tmp_path_factory.mktemp("mfn") / "mfn.onnx", batch=2, dynamic=True)


@pytest.fixture(scope="session")
def mfn_onnx_static(tmp_path_factory) -> Path:
    """The same network exported with a STATIC batch of 4."""
    return _export_mobilefacenet(tmp_path_factory.mktemp("mfn_static") / "mfn_b4.onnx", batch=4, dynamic=False)


@pytest.fixture(scope="session")
def embedder(mfn_onnx):
    from hsst.runtime.embedder import Embedder

    return Embedder.from_file(mfn_onnx, threads=1)


@pytest.fixture(scope="session")
def finder():
    """The packaged face detector (BlazeFace + mesh landmarks) behind :class:`hsst.face.FaceFinder`."""
    from hsst.runtime.config import DetectorConfig
    from hsst.runtime.pipeline import create_face_finder

    try:
        return create_face_finder(DetectorConfig(threads=1))
    except ModelError as exc:
        pytest.skip(f"face detector models unavailable: {exc}")


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The shipped, trained default embedding model (sdk/assets/models)."""
    from hsst.runtime.models import default_embedding_model

    return default_embedding_model()


@pytest.fixture
def scene_builder():
    return SceneBuilder
