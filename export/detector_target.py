"""The face detectors as an export target (``hsst-export --detector``): ONNX + sidecar, TensorRT engines.

The detector ONNX files come from :func:`hsst.face.weights.export_face_models` (BlazeFace and the face mesh,
static 1x3xSxS NCHW inputs). Their sidecar is a plain JSON record (they are not embedding models, so not a
ModelMeta): ``kind``, ``name``, ``inputs`` / ``outputs``, ``sha256``, ``source``, ``license``, ``versions``,
``status``, ``parity`` and, for engines, the same ``tensorrt`` record as the probe-net engines, which
:func:`hsst.core.metadata.check_engine_compat` reads.

Every file passes the one accuracy gate (:mod:`hsst.export.gate`) on real images (``--data``, else the bundled
sample photo; every output, cosine per image): an ONNX copy against the model the face runtime loads
(:func:`runtime_model`; TensorFlow Lite is not installed, so the tflite -> ONNX conversion itself is not
re-checked here), an engine against onnxruntime on that ONNX.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.errors import ConfigError
from hsst.core.metadata import Preprocess
from hsst.export.builders import BuiltEngine, EngineSpec
from hsst.export.calibration import FaceImageFolder, default_faces, fit_crop
from hsst.export.gate import Candidate, Gate
from hsst.export.options import ExportOptions, parse_device
from hsst.export.parity import ParityReport, compare_outputs, onnx_outputs
from hsst.export.sidecar import JsonSidecar, file_sha256, library_versions

logger = logging.getLogger(__name__)

__all__ = ["DetectorTarget", "export_detector_onnx", "detector_sidecar", "detector_inputs", "detector_gate",
           "runtime_model"]


def detector_sidecar(onnx_path: Path, manifest: Dict[str, Any], **facts: Any) -> Dict[str, Any]:
    """The JSON record written beside a detector ONNX / engine."""
    from hsst.export.onnx_export import onnx_io

    name = model_name(onnx_path)
    ins, outs = onnx_io(onnx_path)
    info = manifest.get("models", {}).get(name, {})
    record = {"kind": "face-detector", "name": name, "format": "onnx", "file": onnx_path.name,
              "sha256": file_sha256(onnx_path), "inputs": [{"name": n, "shape": s, "layout": "NCHW",
                                                            "dtype": "float32", "color": "rgb"} for n, s in ins],
              "outputs": [{"name": n, "shape": s} for n, s in outs], "source": info.get("source"),
              "license": info.get("license"), "versions": library_versions(),
              "exported_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "status": "ok"}
    record.update(facts)
    return record


def model_name(path: Path) -> str:
    """``blazeface_short.onnx`` / ``blazeface_short.1.8502.gpu.fp16.engine`` -> ``blazeface_short``."""
    return path.name.split(".")[0]


def runtime_model(name: str) -> Path:
    """The ONNX the face runtime loads for ``name`` (:func:`hsst.face.weights.model_path`): the ONNX gate's
    reference."""
    from hsst.face.weights import model_path

    return model_path(name)


def detector_inputs(onnx_path: Path, images: FaceImageFolder, limit: int = 8) -> np.ndarray:
    """Real images as the detector's (N, 3, S, S) float32 input (RGB scaled to [-1, 1])."""
    from hsst.export.onnx_export import onnx_io

    (_, shape), = onnx_io(onnx_path)[0][:1]
    if any(isinstance(d, str) for d in shape[1:]):
        raise ConfigError(f"{onnx_path.name} has symbolic spatial dimensions {shape}; only static detector inputs "
                          "are built into engines")
    size = int(shape[2])
    batch = []
    for crop in images.crops()[:limit]:
        rgb = cv2.cvtColor(crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2RGB)
        rgb = fit_crop(rgb, size).astype(np.float32) / 127.5 - 1.0
        batch.append(rgb.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch))


def detector_gate(reference: Dict[str, np.ndarray], candidate: Dict[str, np.ndarray], gate: str) -> ParityReport:
    """Worst output's agreement (per image cosine of each flattened output) of an engine with onnxruntime."""
    return compare_outputs(reference, candidate, gate, "onnxruntime-fp32", "tensorrt")


class DetectorTarget:
    """The face detectors: ONNX copies of the models the face runtime loads, and one engine spec per model.

    Args:
        opts: the run's options (``data``, ``half`` / ``int8``, ``device``, ``workspace``).
        out: the output folder; the files go to ``out/detector``.
        names: models to export (default :data:`hsst.face.weights.DETECTOR_MODELS`).

    Attributes:
        onnx_paths: the ONNX files written by :meth:`onnx`.
    """

    label = "detector engines"
    onnx_kind, engine_kind = "detector-onnx", "detector-engine"
    formats = ("onnx", "engine")

    def __init__(self, opts: ExportOptions, out: Path, names: Optional[Sequence[str]] = None) -> None:
        self.opts = opts
        self.folder = Path(out) / "detector"
        self.names = tuple(names) if names else None
        self.onnx_paths: List[Path] = []
        self._images: Optional[FaceImageFolder] = None
        if opts.int8 and "engine" in opts.formats:
            logger.warning("detectors are built FP16: INT8 calibration applies to the probe-net only")

    @property
    def precision(self) -> str:
        return "fp16" if (self.opts.half or self.opts.int8) else "fp32"

    def images(self) -> FaceImageFolder:
        """Whole frames for the gates (``--data``, else the bundled sample photo), at most 8."""
        if self._images is None:
            root = self.opts.data or default_faces()
            if root is None:
                raise ConfigError("the detector gates need real images: pass --data DIR (photos or face crops)")
            self._images = FaceImageFolder(root, Preprocess(color="bgr", crop_size=256), limit=8, align=False)
        return self._images

    def onnx(self) -> Iterator[Candidate]:
        """Each detector ONNX (checked, loadable), against the model the face runtime loads."""
        import onnx

        from hsst.face.weights import DETECTOR_MODELS, export_face_models

        paths = export_face_models(self.folder, self.names or DETECTOR_MODELS)
        manifest = self._manifest()
        for path in paths:
            onnx.checker.check_model(onnx.load(str(path)), full_check=True)
            reference = runtime_model(model_name(path))
            x = detector_inputs(path, self.images())
            self.onnx_paths.append(path)
            yield Candidate(self.onnx_kind, path, onnx_outputs(reference, x, batch=1, static=True),
                            onnx_outputs(path, x, batch=1, static=True), "onnx",
                            (f"onnxruntime ({reference.name})", "onnxruntime"),
                            JsonSidecar(detector_sidecar(path, manifest)))

    def engine_spec(self, onnx_path: Path) -> EngineSpec:
        """A static batch-1 FP16 (``--half`` / ``--int8``) or FP32 engine of one detector."""
        from hsst.export.onnx_export import onnx_io

        (input_name, shape), = onnx_io(onnx_path)[0][:1]
        inputs = detector_inputs(onnx_path, self.images())  # also refuses symbolic spatial dimensions
        return EngineSpec(name=model_name(onnx_path), onnx=onnx_path, out_dir=onnx_path.parent, input_name=input_name,
                          chw=tuple(int(d) for d in shape[1:]), batch=int(shape[0]),  # type: ignore[arg-type]
                          profile=None, precision=self.precision, device=parse_device(self.opts.device),
                          workspace=self.opts.workspace, inputs=inputs)

    def engine_record(self, spec: EngineSpec, built: BuiltEngine,
                      latency: Optional[Dict[str, float]]) -> JsonSidecar:
        """The engine's record: its ONNX's, with the engine's file, hash, precision, build record and latency."""
        measured = {"latency_ms": latency} if latency else {}
        return JsonSidecar(detector_sidecar(spec.onnx, self._manifest(), format="engine", file=built.path.name,
                                            sha256=file_sha256(built.path), precision=spec.precision,
                                            tensorrt=built.tensorrt, **measured))

    def _manifest(self) -> Dict[str, Any]:
        return json.loads((self.folder / "face_models.json").read_text())


def export_detector_onnx(out_dir: Path, names: Optional[Sequence[str]] = None,
                         data: Optional[Path] = None) -> List[Tuple[Path, Path]]:
    """Write the detector ONNX files into ``out_dir/detector``, each through the accuracy gate.

    Args:
        out_dir: the output folder.
        names: models to export (default :data:`hsst.face.weights.DETECTOR_MODELS`).
        data: images for the gate (default: the bundled sample photo).

    Returns:
        ``(onnx, sidecar)`` pairs.

    Raises:
        GateFailed: a file does not compute what the face runtime's model computes (kept as ``.failed``).
    """
    gate = Gate([])
    target = DetectorTarget(ExportOptions(detector=True, data=data), Path(out_dir), names)
    return [(art.path, art.sidecar) for art in (gate.check(c) for c in target.onnx())]
