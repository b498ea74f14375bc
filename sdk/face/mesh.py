"""The 468-point face mesh (MediaPipe face landmark model) through onnxruntime.

The mesh is a dense 3D reconstruction with a fixed topology: vertex ``i`` is the same point of the face in
every image. It gives the detector its 5 landmarks (eye centres, nose tip, mouth corners) and the masked-face
synthesis its geometry. The model sees a 192x192 RGB crop of a square, eye-aligned region of interest (ROI)
around the face; :class:`FaceMesh` maps the vertices back to image pixels.

Index constants name vertices as they appear in an upright, non-mirrored image: ``LEFT_*`` is the eye or
mouth corner on the *left of the image* (the subject's right), the convention of
:data:`hsst.core.alignment.KEYPOINT_NAMES`.

The triangle list is not part of the model. ``FaceMesh.triangles`` is a fixed Delaunay triangulation of a
frontal mean shape, stored in ``sdk/assets/face_mesh_triangles.npy`` and made by
``tools/make_face_mesh_topology.py`` (see ``docs/DETECTION.md``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.errors import InputError, ModelError
from hsst.core.image import check_frame, to_gray_or_bgr
from hsst.face.weights import create_session

NUM_VERTICES = 468
INPUT_SIZE = 192
#: ROI side = this factor x the longer side of the detector box (MediaPipe's value).
ROI_SCALE = 1.5

# Contours, in order around the eye opening.
LEFT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LEFT_EYE_CORNERS = (33, 133)      # outer, inner
RIGHT_EYE_CORNERS = (263, 362)    # outer, inner
LEFT_EYEBROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
RIGHT_EYEBROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
NOSE_TIP = 1
#: Nose point of the 5 alignment landmarks: vertex 4, just above the tip (vertex 1). Measured on 199 LFW
#: faces, it sits closer to the nose landmark of MTCNN, the annotation convention the template comes from.
ALIGN_NOSE = 4
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1)   # from between the eyes down to the tip
MOUTH_LEFT = 61
MOUTH_RIGHT = 291
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
CHIN = 152
FOREHEAD = 10
#: Face outline, clockwise in the image from the top of the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclass
class MeshRoi:
    """Square, rotated region the mesh model looks at.

    Attributes:
        cx: centre x in image pixels.
        cy: centre y in image pixels.
        size: side in image pixels.
        angle: rotation in radians of the ROI's x axis from the image x axis (the eye line's angle).
    """

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    @classmethod
    def from_box(cls, box: Sequence[float], eyes: Optional[np.ndarray] = None,
                 scale: float = ROI_SCALE) -> "MeshRoi":
        """ROI around a detector box ``x1, y1, x2, y2``, rotated by the eye line if ``eyes`` (2, 2) is given."""
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).ravel()[:4])
        angle = 0.0
        if eyes is not None:
            (lx, ly), (rx, ry) = np.asarray(eyes, dtype=np.float64)[:2]
            angle = math.atan2(ry - ly, rx - lx)
        return cls((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale, angle)

    @classmethod
    def from_vertices(cls, vertices: np.ndarray, scale: float = ROI_SCALE) -> "MeshRoi":
        """ROI for the next frame (or a refinement pass) from a mesh: eye-aligned box of its vertices."""
        pts = np.asarray(vertices, dtype=np.float64)[:, :2]
        le, re = pts[LEFT_EYE_CORNERS[0]], pts[RIGHT_EYE_CORNERS[0]]
        angle = math.atan2(re[1] - le[1], re[0] - le[0])
        rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
        local = pts @ rot.T
        lo, hi = local.min(0), local.max(0)
        centre = rot.T @ ((lo + hi) / 2)
        return cls(float(centre[0]), float(centre[1]), float((hi - lo).max() * scale), angle)

    def to_tensor_matrix(self, size: int = INPUT_SIZE) -> np.ndarray:
        """(2, 3) affine matrix from image pixels to the model's ``size`` x ``size`` input."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = size / self.size
        rot = np.array([[c, s], [-s, c]]) * k
        shift = size / 2 - rot @ np.array([self.cx, self.cy])
        return np.hstack([rot, shift[:, None]])


@dataclass
class MeshResult:
    """One face mesh.

    Attributes:
        vertices: (468, 3) float32; x, y in image pixels, z relative depth in the same scale as x
            (negative is towards the camera, 0 near the face's centre plane).
        score: face presence probability in [0, 1] reported by the model for the ROI.
        roi: the region the model looked at.
    """

    vertices: np.ndarray
    score: float
    roi: MeshRoi

    def keypoints(self) -> np.ndarray:
        """(5, 2) float32 landmarks in the order of :data:`hsst.core.alignment.KEYPOINT_NAMES`."""
        return mesh_keypoints(self.vertices)


def mesh_keypoints(vertices: np.ndarray) -> np.ndarray:
    """Five alignment landmarks from a mesh: eye centres (mean of the eye contour), nose, mouth corners."""
    v = np.asarray(vertices, dtype=np.float32)[:, :2]
    return np.stack([v[list(LEFT_EYE_CONTOUR)].mean(0), v[list(RIGHT_EYE_CONTOUR)].mean(0),
                     v[ALIGN_NOSE], v[MOUTH_LEFT], v[MOUTH_RIGHT]]).astype(np.float32)


def _load_asset(name: str) -> np.ndarray:
    # Path of the hsst.assets package, not importlib.resources.files: that needs Python 3.9 and JetPack 5
    # (Xavier) ships 3.8.
    from hsst import assets

    try:
        return np.load(Path(assets.__file__).parent / name)
    except (FileNotFoundError, OSError) as exc:
        raise ModelError(f"mesh asset {name} is missing from hsst/assets ({exc}); regenerate it with "
                         f"python tools/make_face_mesh_topology.py") from None


_TRIANGLES: Optional[np.ndarray] = None
_CANONICAL: Optional[np.ndarray] = None


def mesh_triangles() -> np.ndarray:
    """(T, 3) int32 vertex indices; counter-clockwise on screen (y down) for a frontal face."""
    global _TRIANGLES
    if _TRIANGLES is None:
        _TRIANGLES = _load_asset("face_mesh_triangles.npy").astype(np.int32)
        _TRIANGLES.setflags(write=False)
    return _TRIANGLES


def canonical_vertices() -> np.ndarray:
    """(468, 3) float32 frontal mean shape the triangulation was made on (x right, y down, z towards the back).

    Normalised: eye centres at (-1, 0) and (1, 0) with z centred on the mean; a natural UV space.
    """
    global _CANONICAL
    if _CANONICAL is None:
        _CANONICAL = _load_asset("face_mesh_canonical.npy").astype(np.float32)
        _CANONICAL.setflags(write=False)
    return _CANONICAL


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + math.exp(-max(min(x, 80.0), -80.0))))


class FaceMesh:
    """468-point face mesh regressor.

    Args:
        providers: onnxruntime execution providers (default CPU).
        threads: onnxruntime intra-op threads (0: onnxruntime's default).
        model_dir: folder of exported ONNX files (see :func:`hsst.face.weights.model_path`).
        backend: ``onnxruntime`` or ``tensorrt`` (see :func:`hsst.face.weights.create_session`).

    Example:
        >>> mesh = FaceMesh()
        >>> result = mesh.predict(gray_frame, box=[x1, y1, x2, y2])
        >>> result.vertices.shape
        (468, 3)
    """

    def __init__(self, providers: Optional[Sequence] = None, threads: int = 0, model_dir=None,
                 backend: str = "onnxruntime") -> None:
        self.session = create_session("face_mesh", providers, threads, model_dir, backend)
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        if list(shape[1:]) != [3, INPUT_SIZE, INPUT_SIZE]:
            raise ModelError(f"face mesh model expects input {shape}, this code needs [1, 3, 192, 192]")

    @property
    def triangles(self) -> np.ndarray:
        """(T, 3) int32 triangle list over the 468 vertices (see :func:`mesh_triangles`)."""
        return mesh_triangles()

    def predict(self, image: np.ndarray, box: Optional[Sequence[float]] = None,
                roi: Optional[MeshRoi] = None, eyes: Optional[np.ndarray] = None) -> MeshResult:
        """Mesh of the face in ``box`` (x1, y1, x2, y2) or ``roi``.

        Args:
            image: HxW gray or HxWx3 BGR frame, uint8 or uint16 (16-bit is range-scaled).
            box: detector box; the ROI is this box enlarged by :data:`ROI_SCALE` and squared.
            roi: explicit region (takes precedence over ``box``).
            eyes: (2, 2) image-left and image-right eye points to level the ROI (optional).
        """
        check_frame(image)
        if roi is None:
            if box is None:
                h, w = image.shape[:2]
                roi = MeshRoi(w / 2, h / 2, float(max(w, h)))
            else:
                roi = MeshRoi.from_box(box, eyes)
        if not (roi.size > 1 and np.isfinite([roi.cx, roi.cy, roi.size, roi.angle]).all()):
            raise InputError(f"invalid mesh ROI {roi}: size must be > 1 px and all values finite")
        tensor, matrix = self._preprocess(image, roi)
        raw, flag = self.session.run(None, {self.input_name: tensor})
        pts = raw.reshape(NUM_VERTICES, 3).astype(np.float64)
        inv = cv2.invertAffineTransform(matrix)
        xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = pts[:, 2] * (roi.size / INPUT_SIZE)
        vertices = np.column_stack([xy, z]).astype(np.float32)
        return MeshResult(vertices, _sigmoid(float(np.ravel(flag)[-1])), roi)

    @staticmethod
    def _preprocess(image: np.ndarray, roi: MeshRoi) -> Tuple[np.ndarray, np.ndarray]:
        matrix = roi.to_tensor_matrix()
        crop = cv2.warpAffine(to_gray_or_bgr(image), matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if crop.ndim == 2 else cv2.COLOR_BGR2RGB)
        tensor = crop.transpose(2, 0, 1)[None].astype(np.float32) * (1.0 / 255.0)
        return np.ascontiguousarray(tensor), matrix


