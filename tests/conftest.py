"""Test fixtures: the shared data folder (read in place, never copied) and hardware markers.

The shared folder is ``$HSST_SHARED`` or ``../shared`` beside the repository; tests that need it skip with a
reason when it is absent.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hsst.samples import shared_dir as shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_data_dir()


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    if not _has_module("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_trt = pytest.mark.skip(reason="needs TensorRT + pycuda (run on a Jetson or a TensorRT GPU host)")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_teacher = pytest.mark.skip(reason="needs the dlib teacher: pip install -e .[teacher]")
    has_trt = _has_module("tensorrt") and _has_module("pycuda")
    has_gpu = _cuda_available()
    has_teacher = _has_module("dlib") and _has_module("face_recognition_models")
    for item in items:
        if "trt" in item.keywords and not has_trt:
            item.add_marker(skip_trt)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "teacher" in item.keywords and not has_teacher:
            item.add_marker(skip_teacher)


def _shared_subdir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set HSST_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_subdir()


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return _shared_subdir("datasets", "lfw")


@pytest.fixture(scope="session")
def orl_dir() -> Path:
    return _shared_subdir("datasets", "att_orl")


@pytest.fixture(scope="session")
def masks_dir() -> Path:
    return _shared_subdir("masks")


@pytest.fixture(scope="session")
def pretrained_mobilefacenet() -> Path:
    """The fetched ``mobilefacenet-ms1m`` weights (set-up step ``python -m hsst.pretrained fetch``)."""
    from hsst.core.errors import ModelError
    from hsst.pretrained import pretrained_path

    try:
        return pretrained_path("mobilefacenet-ms1m")
    except ModelError as exc:
        pytest.skip(f"pretrained weights not fetched: {exc}")


@pytest.fixture
def lfw_tree(tmp_path: Path, lfw_dir: Path) -> Path:
    """Six LFW identities with >= 4 photos each, linked (not copied) into a temporary identity-folder tree."""
    root = tmp_path / "lfw6"
    root.mkdir()
    picked = [d for d in sorted(lfw_dir.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 4][:6]
    for folder in picked:
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    return root
