"""Test fixtures: the shared data folder (read in place, never copied), hardware markers, and small dataset
trees built in tmp_path from real AT&T/ORL faces.

The shared folder is ``$HSST_SHARED`` or ``../shared`` beside the repository; tests that need it skip with a
reason when it is absent.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest

from hsst.core.errors import ModelError
from hsst.core.image import read_image
from hsst.core.metadata import sidecar_path
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


# -- small NIR-VIS dataset trees built in tmp_path from real AT&T/ORL faces (never inside the repository) --
CORRUPT_BYTES = b"\xff\xd8\xff\xe0 this is not really a JPEG " * 4


def orl_face(orl_dir: Path, subject: int, image: int) -> np.ndarray:
    return read_image(orl_dir / f"s{subject}" / f"{image}.pgm")


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


@pytest.fixture
def casia_tree(tmp_path: Path, orl_dir: Path) -> Dict[str, object]:
    """A CASIA NIR-VIS 2.0 style tree with the quirks of the real one.

    * identities 10001..10004 in s1 (upper-case NIR/VIS folders), 10005 in s2 with lower-case folders;
    * NIR files are .bmp but nir_train_1.txt lists them as .jpg (as the real lists sometimes do);
    * lines are Windows paths with CRLF line ends and a UTF-8 BOM;
    * one listed file does not exist; identity 10006 only appears in the VIS list.
    """
    root = tmp_path / "casia"
    vis_lines, nir_lines, gallery, probes = [], [], [], []
    for k, ident in enumerate(["10001", "10002", "10003", "10004", "10005"], start=1):
        session, nir_dir, vis_dir = ("s2", "nir", "vis") if ident == "10005" else ("s1", "NIR", "VIS")
        for n in range(1, 4):
            _write(root / session / nir_dir / ident / f"{n:03d}.bmp", orl_face(orl_dir, k, n))
            nir_lines.append(f"{session}\\NIR\\{ident}\\{n:03d}.jpg")
        for n in range(1, 3):
            face = cv2.cvtColor(orl_face(orl_dir, k, 5 + n), cv2.COLOR_GRAY2BGR)
            _write(root / session / vis_dir / ident / f"{n:03d}.jpg", face)
            vis_lines.append(f"{session}\\VIS\\{ident}\\{n:03d}.jpg")
        gallery.append(f"{session}\\VIS\\{ident}\\001.jpg")
        probes.append(f"{session}\\NIR\\{ident}\\002.bmp")
    _write(root / "s1" / "VIS" / "10006" / "001.jpg", cv2.cvtColor(orl_face(orl_dir, 6, 1), cv2.COLOR_GRAY2BGR))
    vis_lines.append("s1\\VIS\\10006\\001.jpg")
    nir_lines.append("s1\\NIR\\10001\\099.bmp")  # listed, not on disk
    protocols = root / "protocols"
    protocols.mkdir(parents=True)
    for name, lines in (("vis_train_1.txt", vis_lines), ("nir_train_1.txt", nir_lines),
                        ("vis_gallery_1.txt", gallery), ("nir_probe_1.txt", probes)):
        (protocols / name).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines + [""]).encode("utf-8"))
    return {"root": root, "train_ids": ["10001", "10002", "10003", "10004", "10005"]}


@pytest.fixture
def generic_tree(tmp_path: Path, orl_dir: Path) -> Dict[str, object]:
    """``<id>/{nir,vis}`` tree: 4 good identities plus a corrupt file, an empty file, an empty identity folder
    and an identity with VIS images only."""
    root = tmp_path / "generic"
    for k in range(1, 5):
        ident = f"person{k:02d}"
        nir_name = "NIR" if k % 2 else "nir"  # letter case varies, as on real disks
        for n in range(1, 4):
            _write(root / ident / nir_name / f"{n}.png", orl_face(orl_dir, k, n))
        for n in range(4, 7):
            _write(root / ident / "vis" / f"{n}.jpg", cv2.cvtColor(orl_face(orl_dir, k, n), cv2.COLOR_GRAY2BGR))
    corrupt = root / "person01" / "NIR" / "9.jpg"
    corrupt.write_bytes(CORRUPT_BYTES)
    empty_file = root / "person02" / "vis" / "0.jpg"
    empty_file.write_bytes(b"")
    (root / "person05" / "nir").mkdir(parents=True)
    (root / "person05" / "vis").mkdir(parents=True)
    for n in range(1, 3):
        _write(root / "person06" / "vis" / f"{n}.jpg", orl_face(orl_dir, 6, n))
    (root / "person01" / "vis" / "notes.txt").write_text("not an image")
    return {"root": root, "corrupt": corrupt, "empty_file": empty_file,
            "good_ids": ["person01", "person02", "person03", "person04"]}


@pytest.fixture
def vis_tree(tmp_path: Path, orl_dir: Path) -> Path:
    """VIS-only identity folders: 5 identities of 4 ORL images, one with a single image."""
    root = tmp_path / "visfolders"
    for k in range(1, 6):
        for n in range(1, 5):
            _write(root / f"id{k}" / f"{n}.png", orl_face(orl_dir, k, n))
    _write(root / "id6" / "1.png", orl_face(orl_dir, 6, 1))
    return root


# -- real models: an UNTRAINED MobileFaceNet exported to ONNX (torch used here only), the packaged detector --
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
