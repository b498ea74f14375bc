"""TensorRT and CUDA (pycuda) for every hsst component that runs or builds engines: the gate's TensorRT backend,
the exporter's builds, accuracy gates and INT8 calibration, and the Jetson self-test.

Nothing here imports ``tensorrt`` or ``pycuda`` at module import: :func:`import_tensorrt` and
:func:`import_pycuda` import them when called and turn a missing library into a :class:`ModelError` that says
what to install. pycuda is the one CUDA binding (it ships for JetPack 4.6 to 6.x alike).

Threading: a :class:`CudaContext` is a handle on the device's primary context, shared by every backend of the
process. Code pushes it around every piece of CUDA work (:meth:`CudaContext.active`) so any thread can use it
(pycuda otherwise fails in worker threads with "invalid device context") and pops it after, so no context is
left current when the interpreter cleans up ("context stack was not empty upon module cleanup").
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from hsst.core.errors import InputError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["TensorRTUnavailable", "import_tensorrt", "import_pycuda", "CudaContext", "cuda_device_info",
           "cuda_device_name", "numpy_dtype", "TRT_DATATYPES", "TENSORRT_HINT", "PYCUDA_HINT"]

TENSORRT_HINT = ("On a Jetson TensorRT comes with JetPack (python3-libnvinfer): use the system python3 or a venv "
                 "created with --system-site-packages; on a desktop GPU: pip install tensorrt. Otherwise use "
                 "backend 'onnxruntime'.")
PYCUDA_HINT = ("pycuda runs TensorRT engines: on a Jetson pip install pycuda with CUDA's include and lib paths set "
               "(export PATH=/usr/local/cuda/bin:$PATH CPATH=/usr/local/cuda/include "
               "LIBRARY_PATH=/usr/local/cuda/lib64); on a desktop GPU: pip install pycuda.")


class TensorRTUnavailable(ModelError):
    """``import tensorrt`` failed on this machine."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` saying how to get it."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from a CUDA/TensorRT library that does not load
        raise TensorRTUnavailable(f"TensorRT not available ({type(exc).__name__}: {exc}). {TENSORRT_HINT}") from None
    return trt


# ``trt.DataType`` member names per TensorRT generation (NVIDIA's API reference for each release).
TRT_DATATYPES: Dict[str, Tuple[str, ...]] = {
    "8.0-8.4": ("FLOAT", "HALF", "INT8", "INT32", "BOOL"),
    "8.5": ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"),
    "8.6": ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8"),
    "9.x": ("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8"),
    "10.x": ("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8", "INT4", "FP4", "E8M0"),
}

# Our own table instead of ``trt.nptype``: on TensorRT 8.2-8.5 that function touches ``np.bool``, which numpy
# >= 1.24 removed (NVIDIA/TensorRT#2701), so every engine load failed with an AttributeError on JetPack 5.
_NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                 "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(trt_dtype: Any, tensor: str = "") -> np.dtype:
    """The numpy dtype of a ``trt.DataType`` (any TensorRT generation, any numpy).

    Args:
        trt_dtype: a ``tensorrt.DataType`` member (or its name, e.g. ``"HALF"``).
        tensor: the I/O tensor's name, for the error message.

    Raises:
        ModelError: a type numpy has no dtype for (FP8, BF16, INT4, FP4, E8M0): the engine's I/O must be re-built
            with FP32 / FP16 inputs and outputs.

    >>> numpy_dtype("HALF")
    dtype('float16')
    """
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in _NUMPY_DTYPES:
        where = f" of tensor {tensor!r}" if tensor else ""
        raise ModelError(f"TensorRT data type {name}{where} has no numpy equivalent; hsst runs engines whose inputs "
                         "and outputs are FP32, FP16 or integer: rebuild the engine keeping FP32 I/O (hsst-export "
                         "does; with ModelOpt AutoCast pass --keep_io_types)")
    return np.dtype(_NUMPY_DTYPES[name])


_INIT_LOCK = threading.Lock()


def import_pycuda() -> Any:
    """``pycuda.driver``, initialised (``cuInit``), or :class:`ModelError` saying what is missing."""
    try:
        import pycuda.driver as drv
    except Exception as exc:  # ImportError, or OSError when libcuda does not load
        raise ModelError(f"pycuda not available ({type(exc).__name__}: {exc}). {PYCUDA_HINT}") from None
    with _INIT_LOCK:
        try:
            drv.init()  # idempotent
        except Exception as exc:  # pycuda._driver.Error (a RuntimeError): no driver or no GPU
            raise ModelError(f"CUDA driver initialisation failed ({exc}); check the GPU and its driver "
                             "(nvidia-smi, or tegrastats on a Jetson)") from None
    return drv


def _device(drv: Any, device: int) -> Any:
    count = drv.Device.count()
    if not 0 <= device < count:
        raise ModelError(f"CUDA device {device} does not exist: this machine has {count} CUDA device(s)")
    return drv.Device(device)


def cuda_device_info(device: int = 0) -> Dict[str, str]:
    """``{"gpu": name, "compute_capability": "major.minor", "pycuda": version}`` of one CUDA device.

    Raises:
        ModelError: pycuda, the driver or the device is missing.
    """
    drv = import_pycuda()
    dev = _device(drv, device)
    major, minor = dev.compute_capability()
    import pycuda

    return {"gpu": str(dev.name()).strip(), "compute_capability": f"{major}.{minor}",
            "pycuda": str(getattr(pycuda, "VERSION_TEXT", "?"))}


def cuda_device_name(device: int = 0) -> Optional[str]:
    """The CUDA device name engines are recorded with (as in their sidecars), or None without pycuda / a GPU."""
    try:
        return cuda_device_info(device)["gpu"]
    except ModelError as exc:
        logger.debug("no CUDA device name: %s", exc)
        return None


_PRIMARY: Dict[int, Any] = {}
_PRIMARY_LOCK = threading.Lock()


def _primary_context(drv: Any, dev: Any, index: int) -> Any:
    """The device's primary context, retained once per process and shared by every :class:`CudaContext`."""
    with _PRIMARY_LOCK:
        ctx = _PRIMARY.get(index)
        if ctx is None:
            try:
                ctx = dev.retain_primary_context()
            except Exception as exc:  # pycuda._driver.Error: out of memory, device busy or prohibited
                raise ModelError(f"cannot retain the CUDA context of device {index} ({str(dev.name()).strip()}): "
                                 f"{exc}") from None
            _PRIMARY[index] = ctx
        return ctx


class CudaContext:
    """A handle on one device's primary CUDA context (pycuda), current only inside :meth:`active`.

    Every handle on a device shares that device's primary context, the one the CUDA runtime (and so TensorRT
    itself) uses, as NVIDIA's samples advise: a Jetson's 4-8 GB shared memory holds one context per process
    instead of one per backend. The context stays retained for the life of the process, as the CUDA runtime
    keeps it; :meth:`close` only retires the handle, so it is correct from any thread (pycuda's ``detach()``
    from a thread other than the creator's silently does nothing).

    Args:
        device: CUDA device index.

    Raises:
        ModelError: pycuda, the driver or the device is missing.
    """

    def __init__(self, device: int = 0) -> None:
        self.drv = import_pycuda()
        self.index = int(device)
        self._dev = _device(self.drv, self.index)
        self._ctx = _primary_context(self.drv, self._dev, self.index)
        self._closed = False

    @property
    def name(self) -> str:
        """The device name (as TensorRT sidecars record it)."""
        return str(self._dev.name()).strip()

    @property
    def compute_capability(self) -> str:
        """``major.minor``, e.g. ``8.7`` for Orin."""
        major, minor = self._dev.compute_capability()
        return f"{major}.{minor}"

    def push(self) -> None:
        """Make this context current in the calling thread (pair with :meth:`pop`)."""
        if self._closed:
            raise ModelError(f"CUDA context on device {self.index} is closed")
        self._ctx.push()

    def pop(self) -> None:
        """Undo :meth:`push` (the context must be the current one)."""
        self.drv.Context.pop()

    @contextmanager
    def active(self) -> Iterator["CudaContext"]:
        """Current in this thread for the ``with`` block."""
        self.push()
        try:
            yield self
        finally:
            self.pop()

    # The few memory calls code outside a backend needs (the INT8 calibrator's device buffer); call them
    # while the context is active.
    def malloc(self, nbytes: int) -> Any:
        """A device buffer (``int(buf)`` is its address for TensorRT); release with :meth:`free`."""
        return self.drv.mem_alloc(max(int(nbytes), 1))

    def memcpy_htod(self, dst: Any, host: np.ndarray, nbytes: Optional[int] = None) -> None:
        """Copy ``host`` into the device buffer ``dst`` (of ``nbytes`` when given, to check the fit)."""
        host = np.ascontiguousarray(host)
        if nbytes is not None and host.nbytes > nbytes:
            raise InputError(f"{host.nbytes} bytes do not fit a device buffer of {nbytes} bytes")
        self.drv.memcpy_htod(dst, host)

    @staticmethod
    def free(buf: Any) -> None:
        """Release a buffer from :meth:`malloc` (once: pycuda raises on a second free)."""
        buf.free()

    def close(self) -> None:
        """Retire this handle (idempotent, any thread); the shared primary context stays for other handles."""
        self._closed = True

    def __repr__(self) -> str:
        return f"CudaContext(device={self.index}, closed={self._closed})"
