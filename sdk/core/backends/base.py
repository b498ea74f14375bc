"""One inference backend interface for every model the gate runs (embedding, detection).

A backend owns a loaded model and runs named float32 tensors through it. Implementations: onnxruntime
(CPU, CUDA EP where present) and TensorRT (pycuda). Pick one by name with :func:`create_backend`.
"""
from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import InputError
from hsst.core.registry import Registry

logger = logging.getLogger(__name__)

Shape = Tuple[Optional[int], ...]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (None for a dynamic dimension) and numpy dtype."""

    name: str
    shape: Shape
    dtype: np.dtype


class Backend(abc.ABC):
    """A loaded model that maps named input arrays to named output arrays.

    Subclasses implement :meth:`run`, :attr:`inputs`, :attr:`outputs` and :meth:`close`. Backends are used
    from one worker thread at a time; the TensorRT backend makes that thread's CUDA context current itself.
    """

    #: registry name, set by :func:`register_backend`.
    name: str = ""

    @property
    @abc.abstractmethod
    def inputs(self) -> List[TensorSpec]:
        """Input tensors."""

    @property
    @abc.abstractmethod
    def outputs(self) -> List[TensorSpec]:
        """Output tensors."""

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        """Run the model.

        Args:
            feeds: input name -> C-contiguous array of the input's dtype.
            output_names: outputs to return (None: all).

        Returns:
            Output name -> array (owned by the caller).
        """

    @property
    def batch_limit(self) -> Optional[int]:
        """Largest batch the model accepts (None: any); static-batch models accept exactly this many."""
        first = self.inputs[0].shape
        return first[0] if first and first[0] is not None else None

    @property
    def static_batch(self) -> bool:
        """Whether the batch dimension is fixed (inputs must be padded to :attr:`batch_limit`)."""
        return self.inputs[0].shape[0] is not None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a single-input, single-output model on ``batch``."""
        spec = self.inputs[0]
        check_input(batch, spec)
        return self.run({spec.name: batch}, [self.outputs[0].name])[self.outputs[0].name]

    def close(self) -> None:
        """Release the model (idempotent)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_input(array: np.ndarray, spec: TensorSpec) -> None:
    """Raise :class:`InputError` unless ``array`` fits ``spec`` (rank, fixed dims, dtype, contiguity)."""
    if not isinstance(array, np.ndarray):
        raise InputError(f"input {spec.name!r} must be a numpy array, got {type(array).__name__}")
    if array.ndim != len(spec.shape) or any(s is not None and s != a for s, a in zip(spec.shape, array.shape)):
        want = "x".join("N" if s is None else str(s) for s in spec.shape)
        raise InputError(f"input {spec.name!r} must have shape {want}, got {array.shape}")
    if array.dtype != spec.dtype:
        raise InputError(f"input {spec.name!r} must be {spec.dtype}, got {array.dtype}")
    if not array.flags.c_contiguous:
        raise InputError(f"input {spec.name!r} must be C-contiguous (np.ascontiguousarray)")


def latency_percentiles(fn: Callable[[np.ndarray], object], x: np.ndarray, iters: int = 200,
                        warmup: int = 20) -> Dict[str, float]:
    """Wall-clock latency of ``fn(x)`` (e.g. ``backend.infer``) in milliseconds over ``iters`` calls.

    Returns:
        ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``, ``iters``, ``batch`` and ``faces_per_s``, the figures
        engine sidecars and the TensorRT self-test report.
    """
    if iters < 1 or warmup < 0:
        raise InputError(f"latency needs iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    for _ in range(warmup):
        fn(x)
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn(x)
        times[i] = (time.perf_counter() - t0) * 1e3
    p50, p90, p99 = np.percentile(times, (50, 90, 99))
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(times.mean()),
            "iters": int(iters), "batch": int(x.shape[0]), "faces_per_s": float(x.shape[0] * 1e3 / times.mean())}


#: Inference backends by name (``onnxruntime``, ``tensorrt``).
BACKENDS: Registry[type] = Registry("backend")


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator registering a backend under ``name`` (also its ``name`` attribute)."""

    def decorate(cls: type) -> type:
        cls.name = name
        return BACKENDS.register(cls, name=name)

    return decorate


def list_backends() -> List[str]:
    """Registered backend names."""
    return BACKENDS.names()


def create_backend(name: str, model_path: Union[str, Path], **options) -> Backend:
    """Load ``model_path`` with the backend registered as ``name`` (``onnxruntime`` or ``tensorrt``).

    Raises:
        ConfigError: unknown backend name.
        ModelError: missing or unloadable model, or the backend's libraries are not installed.
    """
    # Import here so registering stays lazy and TensorRT is only imported when asked for.
    from hsst.core.backends import onnxruntime_backend, tensorrt_backend  # noqa: F401

    return BACKENDS.get(name)(model_path, **options)
