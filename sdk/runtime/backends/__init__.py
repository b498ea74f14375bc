"""Inference backends behind one interface: onnxruntime (CPU / CUDA EP) and TensorRT (pycuda, optional)."""
from hsst.runtime.backends.base import Backend, TensorSpec, create_backend, list_backends, register_backend
from hsst.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

__all__ = ["Backend", "TensorSpec", "create_backend", "list_backends", "register_backend", "OnnxRuntimeBackend"]
