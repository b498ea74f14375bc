"""Inference backends behind one interface: onnxruntime (CPU / CUDA EP) and TensorRT (pycuda, optional).

``tensorrt_backend`` is hsst's one TensorRT engine runner (gate runtime and exporter alike); ``cuda`` holds the
optional TensorRT / pycuda imports, the CUDA context and device queries. Neither imports TensorRT or pycuda
until an engine is loaded.
"""
from hsst.core.backends.base import (Backend, TensorSpec, create_backend, latency_percentiles, list_backends,
                                        register_backend)
from hsst.core.backends.onnxruntime_backend import OnnxRuntimeBackend

__all__ = ["Backend", "TensorSpec", "create_backend", "list_backends", "register_backend", "latency_percentiles",
           "OnnxRuntimeBackend"]
