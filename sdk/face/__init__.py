"""Face detection with 5 landmarks, the 468-point face mesh, and the insightface-shaped ``FaceAnalysis``.

Models are ONNX files made from packaged weights (see :mod:`hsst.face.weights`); nothing is downloaded.
"""
from hsst.face.analysis import FaceAnalysis, Recognizer
from hsst.face.cropper import FaceCropper
from hsst.face.detector import DETECTORS, BlazeFaceDetector, FaceDetector, MTCNNDetector, create_detector
from hsst.face.finder import FaceFinder
from hsst.face.mesh import FaceMesh, MeshResult, MeshRoi, mesh_keypoints
from hsst.face.weights import export_face_models, model_path
from hsst.face.types import Face

__all__ = [
    "FaceAnalysis", "Recognizer", "FaceCropper", "FaceFinder", "DETECTORS", "BlazeFaceDetector", "FaceDetector",
    "MTCNNDetector", "create_detector", "Face", "FaceMesh", "MeshResult", "MeshRoi", "mesh_keypoints",
    "export_face_models", "model_path",
]
