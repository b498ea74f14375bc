"""TensorRT and CUDA (pycuda) for every hsst component that runs or builds engines: the gate's TensorRT backend,
the exporter's builds, accuracy gates and INT8 calibration, and the Jetson self-test.

Nothing here imports ``tensorrt`` or ``pycuda`` at module import: :func:`import_tensorrt` and
:func:`import_pycuda` import them when called and turn a missing library into a :class:`ModelError` that says
what to install. pycuda is the one CUDA binding (it ships for JetPack 4.6 to 6.x alike).

Threading: a :class:`CudaContext` is a CUDA context of its own on one device. Code pushes it around every piece
of CUDA work (:meth:`CudaContext.active`) so any thread can use it (pycuda otherwise fails in worker threads
with "invalid device context"), and :meth:`CudaContext.close` detaches it so the interpreter does not abort
with "context stack was not empty upon module cleanup".
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import numpy as np

from hsst.core.errors import InputError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["TensorRTUnavailable", "import_tensorrt", "import_pycuda", "CudaContext", "cuda_device_info",
           "cuda_device_name", "TENSORRT_HINT", "PYCUDA_HINT"]

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


class CudaContext:
    """A CUDA context of its own on one device (pycuda), current only inside :meth:`active`.

    Args:
        device: CUDA device index.

    Raises:
        ModelError: pycuda, the driver or the device is missing.
    """

    def __init__(self, device: int = 0) -> None:
        self.drv = import_pycuda()
        self.index = int(device)
        self._dev = _device(self.drv, self.index)
        try:
            self._ctx = self._dev.make_context()  # created AND pushed
        except Exception as exc:  # pycuda._driver.Error: out of memory, device busy or prohibited
            raise ModelError(f"cannot create a CUDA context on device {self.index} ({self.name}): {exc}") from None
        self._ctx.pop()
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
        """Detach (destroy) the context; call from the thread that created it, with the context not current."""
        if self._closed:
            return
        self._closed = True
        self._ctx.detach()  # pushes, destroys and pops when not current (pycuda's Context.detach)

    def __repr__(self) -> str:
        return f"CudaContext(device={self.index}, closed={self._closed})"
