"""Gallery fixtures: real LFW faces (detected and aligned by the gate's face path) embedded with the shipped
model once per session, fresh keys, and galleries in tmp_path.

hsst.gallery itself never imports the runtime or the exporter; the tests use them to make real templates.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "sdk" / "assets" / "models" / "hsst-mobilefacenet-112.onnx"
PEOPLE = 16          # LFW identities with >= PHOTOS photos
PHOTOS = 3


@dataclass
class RealFaces:
    """Aligned crops of real LFW photos and their embeddings by the shipped model."""

    names: List[str]          # identity of each crop
    crops: List[np.ndarray]   # 112x112 aligned crops (uint8)
    embeddings: np.ndarray    # (N, 192) float32, L2-normalised
    model: Path               # the ONNX file
    model_hash: str

    def of(self, name: str) -> np.ndarray:
        return np.ascontiguousarray(self.embeddings[[i for i, n in enumerate(self.names) if n == name]])

    def crops_of(self, name: str) -> List[np.ndarray]:
        return [c for c, n in zip(self.crops, self.names) if n == name]

    @property
    def people(self) -> List[str]:
        return sorted(set(self.names))

    def probes(self):
        """``(names, (P, D) embeddings)``: the last photo of each person (never enrolled by ``enrolled``)."""
        names = self.people
        return names, np.ascontiguousarray(np.stack([self.of(n)[-1] for n in names]))


@pytest.fixture(scope="session")
def real_faces(lfw_dir: Path, tmp_path_factory) -> RealFaces:
    """PEOPLE x PHOTOS LFW photos -> aligned crops (FaceImageFolder: the gate's detector and alignment) ->
    embeddings (Embedder, the shipped ONNX); photos without a usable face are dropped with their identity."""
    from hsst.core.metadata import ModelMeta, sidecar_path
    from hsst.export.calibration import FaceImageFolder
    from hsst.gallery.records import model_hash
    from hsst.runtime.embedder import Embedder

    meta = ModelMeta.load(sidecar_path(MODEL))
    root = tmp_path_factory.mktemp("lfw_people")
    folders = [d for d in sorted(lfw_dir.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= PHOTOS + 1]
    step = max(1, len(folders) // (PEOPLE + 4))
    chosen = folders[::step][:PEOPLE + 4]  # spread over the alphabet; a few spare for faceless photos
    links = []
    for folder in chosen:
        for photo in sorted(folder.glob("*.jpg"))[:PHOTOS]:
            link = root / f"{folder.name}__{photo.name}"
            link.symlink_to(photo.resolve())
            links.append(link)
    faces = FaceImageFolder(root, meta.preprocess, align=True)
    crops = faces.crops()
    bad = {s.path.name for s in faces.skipped}
    kept = [p for p in faces.files if p.name not in bad]
    names = [p.name.split("__")[0] for p in kept]
    complete = [n for n in sorted(set(names)) if names.count(n) == PHOTOS][:PEOPLE]
    pick = [i for i, n in enumerate(names) if n in complete]
    embedder = Embedder.from_file(MODEL, threads=1)
    emb = embedder.embed([crops[i] for i in pick])
    embedder.close()
    return RealFaces([names[i] for i in pick], [crops[i] for i in pick], np.ascontiguousarray(emb, np.float32),
                     MODEL, model_hash(MODEL))


@pytest.fixture
def keys(tmp_path: Path):
    from hsst.gallery.keys import FileKeys, generate_keys

    generate_keys(tmp_path / "keys")
    return FileKeys.from_dir(tmp_path / "keys")


@pytest.fixture
def store(tmp_path: Path, keys, real_faces: RealFaces):
    """An empty gallery bound to the shipped model."""
    from hsst.gallery.store import GalleryStore

    gallery = GalleryStore.create(tmp_path / "gallery.db", keys, real_faces.model_hash, dim=192)
    yield gallery
    gallery.close()


@pytest.fixture
def enrolled(store, real_faces: RealFaces):
    """The gallery with every person enrolled from their first PHOTOS - 1 photos (kept as aligned crops); the
    last photo of each is the probe."""
    for name in real_faces.people:
        store.enrol(name, real_faces.of(name)[:PHOTOS - 1], name=name.replace("_", " "),
                    attributes={"badge": name[:3].upper()}, quality={"passed": True, "score": 0.9},
                    photos=real_faces.crops_of(name)[:PHOTOS - 1])
    return store


@pytest.fixture
def searching():
    """``with searching(search):`` four threads call ``search(rng)`` in a loop while the block runs (the writer);
    the errors they meet are raised after it, so a torn read fails the test."""

    @contextmanager
    def run(search: Callable[[np.random.Generator], None], threads: int = 4):
        stop, errors = threading.Event(), []

        def loop(seed: int) -> None:
            rng = np.random.default_rng(seed)
            while not stop.is_set():
                try:
                    search(rng)
                except Exception as exc:  # noqa: BLE001 - reported after the block
                    errors.append(exc)
                    return

        workers = [threading.Thread(target=loop, args=(s,)) for s in range(threads)]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert not errors, errors[:3]

    return run
