"""Face-detector models through the same exporter (``hsst-export --detector``): ONNX + sidecar, TensorRT engines.

The detector ONNX files come from :func:`hsst.face.models.export_face_models` (BlazeFace and the face mesh,
static 1x3xSxS NCHW inputs). Their sidecar is a plain JSON record (they are not embedding models, so not a
ModelMeta): ``kind``, ``name``, ``inputs`` / ``outputs``, ``sha256``, ``source``, ``license``, ``versions`` and,
for engines, the same ``tensorrt`` record as the probe-net engines, which
:func:`hsst.core.metadata.check_engine_compat` reads. Engines pass a gate against onnxruntime on real images
(every output, mean cosine per image).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from hsst.core.files import atomic_write_json
from hsst.core.errors import ConfigError
from hsst.core.metadata import sidecar_path
from hsst.export.calibration import FaceImageFolder, fit_crop
from hsst.export.parity import GATES, ParityReport, compare_embeddings, onnx_session
from hsst.export.sidecar import file_sha256, library_versions

logger = logging.getLogger(__name__)

__all__ = ["export_detector_onnx", "detector_sidecar", "detector_inputs", "detector_gate"]


def detector_sidecar(onnx_path: Path, manifest: Dict[str, Any], **facts: Any) -> Dict[str, Any]:
    """The JSON record written beside a detector ONNX / engine."""
    from hsst.export.onnx_export import onnx_io

    name = onnx_path.name.split(".")[0]
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


def write_json(record: Dict[str, Any], model_path: Path) -> Path:
    return atomic_write_json(sidecar_path(model_path), record, sort_keys=True)


def export_detector_onnx(out_dir: Path, names: Optional[Sequence[str]] = None) -> List[Tuple[Path, Path]]:
    """Write the detector ONNX files and their sidecars into ``out_dir/detector``.

    Returns:
        ``(onnx, sidecar)`` pairs.
    """
    from hsst.face.models import DETECTOR_MODELS, export_face_models

    folder = Path(out_dir) / "detector"
    paths = export_face_models(folder, tuple(names or DETECTOR_MODELS))
    manifest = json.loads((folder / "face_models.json").read_text())
    written = []
    for path in paths:
        import onnx

        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        onnx_session(path)  # loads in onnxruntime, or raises with the reason
        written.append((path, write_json(detector_sidecar(path, manifest), path)))
    return written


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
    """Worst output's agreement (per image cosine of each flattened output) between two runtimes."""
    if gate not in GATES:
        raise ConfigError(f"unknown gate {gate!r}")
    reports = []
    for name, ref in reference.items():
        if name not in candidate:
            raise ConfigError(f"candidate runtime lacks output {name!r}")
        n = ref.shape[0]
        reports.append(compare_embeddings(ref.reshape(n, -1), candidate[name].reshape(n, -1), gate,
                                          "onnxruntime-fp32", f"tensorrt ({name})"))
    return min(reports, key=lambda r: (r.passed, r.cosine_mean))
