"""Distillation teachers (dlib for VIS pretraining, pretrained networks for ``--method distill``) and their
on-disk descriptor cache.

dlib's 128-d ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``, CC0, with the 5-point
shape predictor) ships in the PyPI package ``face-recognition-models``; dlib itself comes from the prebuilt
``dlib-bin`` wheel. Both are the optional extra ``hsst[teacher]`` and never a runtime dependency.

dlib runs on the CPU at tens of milliseconds per face, so descriptors are computed once per image and cached
in an ``.npz`` file keyed by the image's path, size, mtime and the crop settings; later runs (and resumes)
read them back.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from hsst.core.files import atomic_write
from hsst.core.errors import ConfigError, DatasetError
from hsst.core.image import to_bgr
from hsst.core.metadata import Preprocess
from hsst.core.preprocess import to_input

logger = logging.getLogger(__name__)

_INSTALL = "pip install 'hsst[teacher]'  (= pip install dlib-bin face-recognition-models)"


def _model_dir() -> Path:
    """The ``models/`` folder of face_recognition_models, found without importing it.

    The package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ship; the weight
    files themselves are plain package data, so locating the package is enough.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"--teacher dlib needs the package face-recognition-models (dlib's weights): {_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not folder.is_dir():
        raise ConfigError(f"face-recognition-models is installed but {folder} is missing; reinstall it: {_INSTALL}")
    return folder


class DlibTeacher:
    """dlib's ResNet face descriptor on aligned face crops.

    A crop from :class:`~hsst.train.data.FaceLoader` frames the face like a detector box, so the whole crop is
    the face rectangle for dlib's 5-point shape predictor; ``dlib.get_face_chip`` then makes dlib's own
    150x150 chip from those landmarks and ``compute_face_descriptor`` gives the 128-d descriptor.

    Raises:
        ConfigError: dlib or the weight files are not installed.
    """

    name = "dlib"
    dim = 128
    chip_size = 150
    chip_padding = 0.25

    def __init__(self) -> None:
        try:
            import dlib  # optional extra
        except ImportError as exc:
            raise ConfigError(f"--teacher dlib needs dlib: {_INSTALL}") from exc

        folder = _model_dir()
        files = {"shape": folder / "shape_predictor_5_face_landmarks.dat",
                 "rec": folder / "dlib_face_recognition_resnet_model_v1.dat"}
        for path in files.values():
            if not path.is_file():
                raise ConfigError(f"dlib teacher weights not found: {path}; reinstall face-recognition-models")
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(files["shape"]))
        self.recognizer = dlib.face_recognition_model_v1(str(files["rec"]))
        self.version = f"dlib-{dlib.__version__}-resnet_v1"

    def describe(self, crop: np.ndarray) -> np.ndarray:
        """128-d float32 descriptor of a face crop (gray or BGR uint8)."""
        rgb = np.ascontiguousarray(to_bgr(crop)[:, :, ::-1])
        h, w = rgb.shape[:2]
        shape = self.shape_predictor(rgb, self._dlib.rectangle(0, 0, w - 1, h - 1))
        chip = self._dlib.get_face_chip(rgb, shape, size=self.chip_size, padding=self.chip_padding)
        return np.asarray(self.recognizer.compute_face_descriptor(chip), dtype=np.float32)


class PretrainedTeacher:
    """A frozen pretrained network (:mod:`hsst.pretrained`) on the colour crop, as the file was trained.

    The teacher sees the clean VIS crop in RGB (a gray crop is repeated on three channels), so the targets
    carry everything the network knows; the student, gray or not, learns to reach them from its own view.
    """

    def __init__(self, name: str) -> None:
        import torch

        from hsst.pretrained import weights
        from hsst.train.models.pretrained import create_pretrained

        spec = weights(name)
        self._torch = torch
        self.name = name
        self.dim = spec.embedding_dim
        self.version = f"{name}-{spec.sha256[:16]}-rgb"
        self.net = create_pretrained(name, in_chans=3)
        self.preprocess = Preprocess.for_size(112, color="rgb")

    def describe(self, crop: np.ndarray) -> np.ndarray:
        """Embedding (float32, not normalised) of a face crop (gray or BGR uint8)."""
        x = to_input([crop], self.preprocess)
        with self._torch.no_grad():
            return self.net(self._torch.from_numpy(x)).numpy()[0].astype(np.float32)


def create_teacher(name: str):
    """The teacher named ``name``: ``dlib`` or pretrained weights (see :data:`hsst.pretrained.PRETRAINED`)."""
    from hsst.pretrained import is_pretrained_name

    if name == "dlib":
        return DlibTeacher()
    if is_pretrained_name(name):
        return PretrainedTeacher(name)
    raise ConfigError(f"unknown teacher {name!r}; choose dlib or pretrained weights")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HSST_CACHE", Path.home() / ".cache" / "hsst"))


class DescriptorCache:
    """Teacher descriptors on disk: ``keys`` (str) and ``desc`` (N x dim float32) in one ``.npz``.

    A key is the sha1 of ``teacher version | absolute path | size | mtime_ns | crop description``: an edited
    or replaced image, another crop or another teacher never reuses a stale descriptor.

    Args:
        path: the ``.npz`` file (created on :meth:`save`).
        dim: descriptor length.
    """

    def __init__(self, path: Union[str, Path], dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self._table: Dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    keys, desc = data["keys"], data["desc"]
                if desc.ndim != 2 or desc.shape[1] != dim or len(keys) != len(desc):
                    raise ValueError(f"shape {desc.shape} for {len(keys)} keys, expected (*, {dim})")
                self._table = {str(k): d for k, d in zip(keys, desc)}
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                logger.warning("ignoring unreadable teacher cache %s (%s); descriptors are recomputed", self.path, exc)

    def __len__(self) -> int:
        return len(self._table)

    @staticmethod
    def key(path: Union[str, Path], context: str) -> str:
        path = Path(path).resolve()
        try:
            st = path.stat()
        except OSError as exc:
            raise DatasetError(f"image {path} is gone ({exc}); re-scan the dataset") from exc
        raw = f"{context}|{path}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Optional[np.ndarray]:
        return self._table.get(key)

    def put(self, key: str, desc: np.ndarray) -> None:
        self._table[key] = np.asarray(desc, dtype=np.float32).reshape(self.dim)

    def save(self) -> Path:
        """Write atomically (:func:`hsst.core.files.atomic_write`)."""
        keys = np.array(sorted(self._table), dtype=np.str_)
        desc = np.stack([self._table[k] for k in keys]) if len(keys) else np.zeros((0, self.dim), np.float32)
        return atomic_write(self.path, lambda fh: np.savez(fh, keys=keys, desc=desc))


def compute_targets(teacher: DlibTeacher, paths: Sequence[Path], load_crop: Callable[[Path], np.ndarray],
                    crop_context: str, cache_path: Union[str, Path], progress: bool = True,
                    save_every: int = 500) -> np.ndarray:
    """Teacher descriptors of ``paths`` (row i for paths[i]), from the cache or computed and cached.

    Args:
        teacher: the teacher network.
        paths: image files (ImageDataset item order; repeated paths are computed once).
        load_crop: path -> the un-augmented face crop the student sees (FaceLoader.load).
        crop_context: description of the crop settings (part of the cache key).
        cache_path: the ``.npz`` cache file.
        progress: show a tqdm bar for the images not yet cached.
        save_every: write the cache every N new descriptors (a killed run keeps its work).

    Returns:
        ``(len(paths), teacher.dim)`` float32.
    """
    cache = DescriptorCache(cache_path, teacher.dim)
    context = f"{teacher.version}|{crop_context}"
    keys = [cache.key(p, context) for p in paths]
    todo: List[int] = []
    seen = set()
    for i, k in enumerate(keys):
        if cache.get(k) is None and k not in seen:
            todo.append(i)
            seen.add(k)
    if todo:
        logger.info("computing %s teacher descriptors for %d images (%d cached in %s)", teacher.name, len(todo),
                    len(paths) - len(todo), cache.path)
        for n, i in enumerate(tqdm(todo, desc=f"{teacher.name} teacher", unit="img", disable=not progress), 1):
            cache.put(keys[i], teacher.describe(load_crop(paths[i])))
            if n % save_every == 0:
                cache.save()
        cache.save()
    else:
        logger.info("all %d teacher descriptors found in %s", len(paths), cache.path)
    return np.stack([cache.get(k) for k in keys]).astype(np.float32)
