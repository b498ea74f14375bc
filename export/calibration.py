"""Aligned face crops for parity checks and INT8 calibration, and the TensorRT entropy calibrator.

:class:`FaceImageFolder` reads a folder of aligned crops (recursively) the way the model's metadata says,
skipping and reporting files that are not usable images. The same faces feed the ONNX parity gate, the
TensorRT accuracy gate, onnxruntime INT8 calibration and TensorRT INT8 calibration.

:func:`make_entropy_calibrator` builds an ``IInt8EntropyCalibrator2`` (TensorRT 8.x-10.x; TensorRT 11 has no
calibrators and takes Q/DQ ONNX instead) whose cache is written after the first calibration and offered to
TensorRT on later builds; :class:`CalibrationFeed` is its host side.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np

from hsst.core.files import atomic_write_bytes
from hsst.core.errors import ConfigError, DatasetError, ImageReadError, InputError
from hsst.core.image import IMAGE_SUFFIXES, image_files, read_image
from hsst.core.metadata import Preprocess
from hsst.core.preprocess import to_input

logger = logging.getLogger(__name__)

__all__ = ["SkippedImage", "FaceImageFolder", "fit_crop", "default_faces", "calibration_cache_path",
           "CalibrationFeed", "make_entropy_calibrator"]


@dataclass(frozen=True)
class SkippedImage:
    """A file the loader could not use, and why."""

    path: Path
    reason: str


def fit_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Bring a crop to ``size`` x ``size``: centre square crop, then resize (area down, linear up).

    Crops made by :func:`hsst.core.alignment.align_face` at the model's size pass through untouched.
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = image[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


MAKE_CROPS_HINT = ("pass --data DIR: aligned face crops (hsst-mask --in PHOTOS --out faces/ --no-mask --align 112 "
                   "makes them) or face photos, which are detected and aligned here")


def default_faces() -> Optional[Path]:
    """The bundled sample face photo (scikit-image's astronaut, :mod:`hsst.samples`), when it is installed."""
    from hsst.samples import sample_face_path

    try:
        return sample_face_path()
    except ConfigError:
        return None


class FaceImageFolder:
    """Faces below ``root`` (any depth), read for a model's :class:`Preprocess`.

    The folder holds either aligned crops (every image already ``crop_size`` square, as ``hsst-mask --align``
    and the gate make them) or photos: then the runtime's face detector finds the largest face of each and
    aligns it with the 5-point template, as the gate does (``align`` decides; None tells from the files).

    Args:
        root: a folder of images (``.jpg``, ``.png``, ``.pgm``... any of ``IMAGE_SUFFIXES``), or one image file.
        pre: the model's preprocessing (crop size, colour).
        limit: use at most this many files, spread evenly over the sorted list (covers all identities of
            an ``<id>/<img>`` layout instead of the first few).
        align: True: detect and align a face in every image; False: take images as they are (centre square crop
            and resize to ``crop_size``); None: True unless every image is already ``crop_size`` square.

    Attributes:
        files: the files considered.
        skipped: files that could not be used, with the reason (filled by :meth:`crops`).
    """

    def __init__(self, root: Union[str, Path], pre: Preprocess, limit: Optional[int] = None,
                 align: Optional[bool] = None) -> None:
        self.root = Path(root)
        self.pre = pre
        if self.root.is_file() and self.root.suffix.lower() in IMAGE_SUFFIXES:
            files = [self.root]
        elif not self.root.is_dir():
            raise DatasetError(f"face folder not found: {self.root}; {MAKE_CROPS_HINT}")
        else:
            files = image_files(self.root)
        if not files:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}; {MAKE_CROPS_HINT}")
        if limit is not None and 0 < limit < len(files):
            idx = np.linspace(0, len(files) - 1, num=limit).round().astype(int)
            files = [files[i] for i in sorted(set(idx.tolist()))]
        self.files: List[Path] = files
        self.align = align
        self.skipped: List[SkippedImage] = []
        self._crops: Optional[List[np.ndarray]] = None

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """Short hash of the file list (relative names and sizes): names calibration caches."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{path.relative_to(self.root).as_posix()}:{path.stat().st_size}\n".encode())
        return digest.hexdigest()[:8]

    def crops(self) -> List[np.ndarray]:
        """The usable crops (``crop_size`` square, as stored: gray or BGR); bad files skipped and reported.

        Raises:
            DatasetError: no file could be used.
        """
        if self._crops is not None:
            return self._crops
        crops, skipped, images = [], [], []
        size = self.pre.crop_size
        for path in self.files:
            try:
                images.append((path, read_image(path)))
            except (ImageReadError, InputError) as exc:
                skipped.append(SkippedImage(path, str(exc)))
        align = self.align if self.align is not None else any(im.shape[:2] != (size, size) for _, im in images)
        finder = _FaceAligner(size, self.pre.template) if align and images else None
        if finder is not None:
            logger.info("%s: photos, not %dx%d crops: detecting and aligning the largest face of each", self.root,
                        size, size)
        for path, image in images:
            try:
                crop = finder.align(image) if finder is not None else fit_crop(image, size)
            except (InputError, cv2.error) as exc:
                skipped.append(SkippedImage(path, str(exc)))
                continue
            if crop is None:
                skipped.append(SkippedImage(path, "no face found"))
            else:
                crops.append(crop)
        self.skipped = skipped
        if skipped:
            shown = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
            logger.warning("skipped %d of %d images under %s (%s%s)", len(skipped), len(self.files), self.root,
                           shown, "; ..." if len(skipped) > 5 else "")
        if not crops:
            raise DatasetError(f"none of the {len(self.files)} images under {self.root} gave a face; first problem: "
                               f"{skipped[0].path.name}: {skipped[0].reason}; {MAKE_CROPS_HINT}")
        self._crops = crops
        return crops

    def tensor(self) -> np.ndarray:
        """All usable crops as one (N, C, S, S) float32 network input."""
        return to_input(self.crops(), self.pre)

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[np.ndarray]:
        """Network-input batches of ``batch_size`` (C-contiguous float32).

        Args:
            batch_size: faces per batch.
            drop_last: leave out a final partial batch (TensorRT calibration with a static batch needs full
                batches).
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        crops = self.crops()
        stop = len(crops) - len(crops) % batch_size if drop_last else len(crops)
        if stop == 0:
            raise DatasetError(f"{len(crops)} usable faces under {self.root} are fewer than one batch of "
                               f"{batch_size}; add faces or lower --batch")
        for start in range(0, stop, batch_size):
            yield np.ascontiguousarray(to_input(crops[start:start + batch_size], self.pre))


class _FaceAligner:
    """The largest face of a photo, aligned as the gate aligns it (its detector and default settings)."""

    def __init__(self, crop_size: int, template: Optional[Sequence] = None) -> None:
        from hsst.face import FaceAnalysis
        from hsst.runtime.config import DetectorConfig

        settings = DetectorConfig()
        self.app = FaceAnalysis(crop_size=crop_size, template=template).prepare(ctx_id=-1, det_thresh=settings.det_thresh,
                                                             min_face=settings.min_face)

    def align(self, image: np.ndarray) -> Optional[np.ndarray]:
        faces = self.app.get(image, max_num=1)
        return faces[0].aligned if faces else None


def calibration_cache_path(out_dir: Union[str, Path], stem: str, model_sha256: str, data: FaceImageFolder,
                           trt_version: str) -> Path:
    """``<out>/<stem>.<trtver>.<model hash>-<data hash>.calib``: reused only by the same TensorRT, model and faces.

    The TensorRT version is in the name because TensorRT skips a cache written by another version (after a
    JetPack upgrade) and then calibrates afresh; a new name keeps the old cache out of the way.
    """
    from hsst.export.tensorrt_build import trt_version_tag

    return Path(out_dir) / f"{stem}.{trt_version_tag(trt_version)}.{model_sha256[:8]}-{data.fingerprint()}.calib"


class CalibrationFeed:
    """Host-side batches for a TensorRT calibrator: read lazily, errors kept for after the build.

    TensorRT asks for batches only when it does not accept the cache, so nothing is read before the first
    :meth:`next_batch`. Its Python trampoline prints and swallows an exception raised inside ``get_batch``
    (and takes it as the end of the data), so :meth:`next_batch` keeps the error and returns None, and the
    builder calls :meth:`raise_error` once the build returns.

    Args:
        data: calibration faces.
        batch_size: faces per batch.
    """

    def __init__(self, data: FaceImageFolder, batch_size: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.count = 0
        self.error: Optional[BaseException] = None
        self._batches: Optional[Iterator[np.ndarray]] = None

    def next_batch(self) -> Optional[np.ndarray]:
        """The next (batch, C, S, S) float32 batch, or None at the end of the data or after an error."""
        if self.error is not None:
            return None
        try:
            if self._batches is None:
                self._batches = self.data.batches(self.batch_size)
            batch = next(self._batches, None)
        except Exception as exc:  # kept: TensorRT would swallow it
            self.error = exc
            logger.error("INT8 calibration stopped: %s", exc)
            return None
        if batch is not None:
            self.count += batch.shape[0]
        return batch

    def raise_error(self) -> None:
        """Re-raise the error :meth:`next_batch` kept, if any."""
        if self.error is not None:
            raise self.error


def make_entropy_calibrator(trt: Any, data: FaceImageFolder, batch_size: int, cache_path: Union[str, Path],
                            cuda: Any) -> Any:
    """An ``IInt8EntropyCalibrator2`` over aligned faces (TensorRT 8.x-10.x).

    Args:
        trt: the imported ``tensorrt`` module.
        data: calibration faces.
        batch_size: faces per calibration batch (the engine's max batch or the profile's opt).
        cache_path: calibration cache; offered to TensorRT if it exists, written after calibrating.
        cuda: the current :class:`hsst.core.backends.cuda.CudaContext`, for the device buffer.

    Returns:
        The calibrator, to assign to ``config.int8_calibrator``; after the build call its ``feed.raise_error()``
        and ``free()``.
    """
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise InputError(f"TensorRT {trt.__version__} has no calibrators (TensorRT 11 builds INT8 from Q/DQ "
                         "ONNX only); hsst-export --trt --int8 writes that Q/DQ ONNX for you")
    cache_path = Path(cache_path)

    class _FaceCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration batches from device memory; caches the scales."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feed = CalibrationFeed(data, batch_size)
            c, s = data.pre.channels, data.pre.crop_size
            self._nbytes = batch_size * c * s * s * 4
            self._device = None  # allocated on the first batch: none is needed when TensorRT takes the cache

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:  # noqa: ARG002  (one input)
            batch = self.feed.next_batch()
            if batch is None:
                return None
            try:
                if self._device is None:
                    self._device = cuda.malloc(self._nbytes)
                cuda.memcpy_htod(self._device, batch, self._nbytes)
            except Exception as exc:  # kept for the same reason as the feed's own errors
                self.feed.error = exc
                return None
            return [int(self._device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if cache_path.is_file():
                logger.info("offering INT8 calibration cache %s to TensorRT", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_path, bytes(cache))
            logger.info("wrote INT8 calibration cache %s (%d faces)", cache_path, self.feed.count)

        def free(self) -> None:
            if self._device is not None:
                cuda.free(self._device)
                self._device = None

    return _FaceCalibrator()
