"""hsst: masked NIR-VIS face recognition for access gates.

``hsst`` (this package) is the torch-free runtime and the shared core; ``hsst.train`` (torch) trains
models; ``hsst.export`` turns them into ONNX files and TensorRT engines.
"""
import logging

__version__ = "0.1.0"

#: The stable Python API of gate firmware (docs/API.md); names are added, never changed within a major version.
__all__ = ["__version__", "Gate", "Match", "EnrollReport", "GateConfig", "load_config", "Event", "HsstError"]

_LAZY = {"Gate": "hsst.runtime.gate", "Match": "hsst.runtime.gate", "EnrollReport": "hsst.runtime.enroll",
         "GateConfig": "hsst.runtime.config", "load_config": "hsst.runtime.config", "Event": "hsst.runtime.events",
         "HsstError": "hsst.core.errors"}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # Imported on first use: ``import hsst.core`` (the trainer, the exporter) must not load the gate's OpenCV
    # and onnxruntime.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hsst' has no attribute {name!r}")
