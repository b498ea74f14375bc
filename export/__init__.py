"""hsst.export: probe-net (and face detectors) -> ONNX, onnxruntime INT8 and TensorRT engines, with accuracy gates.

Python API (mirrors ``hsst-export``)::

    from hsst.export import export
    result = export(weights="probe.pt", data="faces/", formats=("onnx", "engine"), half=True, dynamic=True, batch=8)

Submodules: ``options`` (the option/format table), ``exporter`` (the pipeline: one method per format),
targets (what is exported: ``embedder``, the probe-net; ``detector``, the face detectors), ``builders`` (how an
engine is made: TensorRT Python API, trtexec, or the commands to run on the Jetson), ``gate`` (the one accuracy
gate every file passes), ``parity`` (comparisons), ``sidecar``, ``onnx_export``, ``calibration`` (face loader,
TensorRT calibrator), ``quantize`` (onnxruntime INT8 / Q/DQ), ``tensorrt_build`` (TensorRT Python API),
``trtexec`` (command lines), ``selftest`` (Jetson self-test), ``cli``. Built engines run through the gate
runtime's own TensorRT backend (``hsst.core.backends``), so the gates test what the gate runs.
Importing this package does not import torch or TensorRT; the steps that need them import them.
"""
from hsst.export.exporter import EngineNotBuilt, ExportResult, Exporter, GateFailed, export
from hsst.export.options import DEFAULT_OPSET, FORMATS, OPTION_FORMATS, ExportOptions
from hsst.export.parity import GATES, ParityReport, compare_embeddings
from hsst.export.sidecar import check_engine_compat, read_sidecar, write_sidecar
from hsst.export.tensorrt_build import api_generation, engine_filename, trt_version_tag

__all__ = [
    "export", "Exporter", "ExportResult", "GateFailed", "EngineNotBuilt",
    "ExportOptions", "FORMATS", "OPTION_FORMATS", "DEFAULT_OPSET",
    "GATES", "ParityReport", "compare_embeddings",
    "check_engine_compat", "read_sidecar", "write_sidecar",
    "api_generation", "engine_filename", "trt_version_tag",
]
