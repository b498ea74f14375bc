"""TensorRT backend through pycuda: pinned host buffers, device buffers, one stream, async copies.

Supports both TensorRT Python API generations found on Jetsons:

* TensorRT >= 8.5 (JetPack 5.1, 6.x; TensorRT 10.x): named I/O tensors, ``set_input_shape``,
  ``set_tensor_address`` and ``execute_async_v3``.
* TensorRT 8.2 (Jetson Nano, JetPack 4.6): bindings, ``set_binding_shape`` and ``execute_async_v2``
  (``execute_async`` for implicit-batch engines).

Threading: the backend owns a :class:`~hsst.core.backends.cuda.CudaContext` on the requested device and
makes it current around every call, so the worker thread that runs inference need not be the one that loaded
the engine. :meth:`close` frees the buffers inside the context, then detaches it. This is the one engine runner
of hsst: the gate runtime and the exporter's accuracy gates, latency figures and self-test all use it.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import InputError, ModelError
from hsst.core.metadata import ModelMeta, check_engine_compat, sidecar_path
from hsst.core.backends.base import Backend, TensorSpec, register_backend
from hsst.core.backends.cuda import CudaContext, import_pycuda, import_tensorrt, numpy_dtype

logger = logging.getLogger(__name__)


class _Binding:
    """One I/O tensor with its pinned host buffer and device buffer (sized for the largest shape)."""

    def __init__(self, name: str, index: int, is_input: bool, dtype: np.dtype, shape: Tuple[int, ...],
                 max_shape: Tuple[int, ...]) -> None:
        self.name = name
        self.index = index
        self.is_input = is_input
        self.dtype = dtype
        self.shape = shape          # as the engine reports it, -1 for dynamic
        self.max_shape = max_shape  # largest concrete shape (profile max)
        self.min_batch = max_shape[0] if max_shape and max_shape[0] > 0 else 1  # profile min (inputs)
        self.host = None
        self.device = None

    def allocate(self, cuda: Any) -> None:
        count = int(np.prod(self.max_shape))
        self.host = cuda.pagelocked_empty(count, self.dtype)
        self.device = cuda.mem_alloc(max(self.host.nbytes, 1))


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """A serialized TensorRT engine run with pycuda.

    Args:
        model_path: ``.engine`` file (plain TensorRT bytes, as written by hsst-export / trtexec).
        device: CUDA device index.
        max_batch: batch to size buffers for when the engine's profile allows more.
        check_sidecar: when the engine's JSON sidecar exists, check its TensorRT version and GPU against this
            device first (off for an engine just built, whose sidecar is not written yet).

    Raises:
        TensorRTUnavailable: ``tensorrt`` does not import.
        ModelError: missing or unloadable engine, no pycuda, no GPU, or a sidecar for another TensorRT / GPU.
    """

    def __init__(self, model_path: Union[str, Path], device: int = 0, max_batch: Optional[int] = None,
                 check_sidecar: bool = True, **_ignored) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"TensorRT engine not found: {path}; build it on this device with "
                             "hsst-export (engines are not portable across TensorRT versions or GPUs)")
        trt = import_tensorrt()
        cuda = import_pycuda()
        self._trt, self._cuda = trt, cuda
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        self._bindings: List[_Binding] = []
        self._runtime = self._engine = self._context = self._stream = None
        self._ctx = CudaContext(device)
        if check_sidecar and sidecar_path(path).is_file():
            # Fail with "rebuild on this device" before TensorRT's own "Version tag does not match".
            try:
                check_engine_compat(ModelMeta.load(sidecar_path(path)), trt.__version__, self._ctx.name)
            except Exception:
                self._ctx.close()
                raise
        self._ctx.push()
        try:
            self._trt_logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._trt_logger)
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self._engine is None:
                raise ModelError(f"TensorRT {trt.__version__} cannot deserialize {path}: it was built with "
                                 "another TensorRT version or for another GPU; rebuild it on this device")
            self._context = self._engine.create_execution_context()
            self._named = hasattr(self._engine, "num_io_tensors") and hasattr(self._context, "execute_async_v3")
            self._bindings = self._discover(max_batch)
            for binding in self._bindings:
                binding.allocate(cuda)
            self._stream = cuda.Stream()
        except Exception:
            try:
                self._free()  # CUDA objects must die while their context is current
            finally:
                self._ctx.pop()
                self._ctx.close()
            raise
        self._ctx.pop()
        _LIVE.add(self)
        logger.info("TensorRT %s engine %s (%s API) on %s: %s", trt.__version__, path.name,
                    "named-tensor" if self._named else "bindings", self._ctx.name,
                    [(b.name, b.shape, "in" if b.is_input else "out") for b in self._bindings])

    # -- discovery ----------------------------------------------------------------------------------------
    def _discover(self, max_batch: Optional[int]) -> List[_Binding]:
        trt, engine = self._trt, self._engine
        bindings: List[_Binding] = []
        self._implicit = bool(getattr(engine, "has_implicit_batch_dimension", False))
        if self._named:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            for i, name in enumerate(names):
                is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                dtype = numpy_dtype(engine.get_tensor_dtype(name), name)
                shape = tuple(engine.get_tensor_shape(name))
                bindings.append(_Binding(name, i, is_input, dtype, shape, shape))
            profiles = {b.name: engine.get_tensor_profile_shape(b.name, 0)
                        for b in bindings if b.is_input and -1 in b.shape}
        else:
            for i in range(engine.num_bindings):
                name = engine.get_binding_name(i)
                dtype = numpy_dtype(engine.get_binding_dtype(i), name)
                shape = tuple(engine.get_binding_shape(i))
                if self._implicit:
                    shape = (engine.max_batch_size,) + shape
                bindings.append(_Binding(name, i, engine.binding_is_input(i), dtype, shape, shape))
            profiles = {b.name: engine.get_profile_shape(0, b.index)
                        for b in bindings if b.is_input and -1 in b.shape}
        for b in bindings:
            if b.is_input and b.name in profiles:
                lo, limit = tuple(profiles[b.name][0]), tuple(profiles[b.name][2])
                b.min_batch = int(lo[0])
                if max_batch is not None and lo[0] != limit[0]:
                    limit = (max(lo[0], min(limit[0], max_batch)),) + limit[1:]
                b.max_shape = limit
        # Output sizes follow the inputs: set the largest input shapes and ask the context.
        self._set_input_shapes({b.name: b.max_shape for b in bindings if b.is_input})
        for b in bindings:
            if not b.is_input:
                b.max_shape = self._output_shape(b)
                if any(d < 0 for d in b.max_shape):
                    raise ModelError(f"cannot size output {b.name!r} of {self.path}: shape {b.max_shape}")
        return bindings

    def _set_input_shapes(self, shapes: Mapping[str, Tuple[int, ...]]) -> None:
        if self._implicit:
            return
        for b_name, shape in shapes.items():
            if self._named:
                ok = self._context.set_input_shape(b_name, tuple(shape))
            else:
                ok = self._context.set_binding_shape(self._engine.get_binding_index(b_name), tuple(shape))
            if ok is False:
                raise InputError(f"engine {self.path.name} rejects input shape {tuple(shape)} for {b_name!r}")

    def _output_shape(self, b: _Binding) -> Tuple[int, ...]:
        if self._implicit:
            return b.max_shape
        if self._named:
            return tuple(self._context.get_tensor_shape(b.name))
        return tuple(self._context.get_binding_shape(b.index))

    # -- Backend interface --------------------------------------------------------------------------------
    @property
    def inputs(self) -> List[TensorSpec]:
        return [TensorSpec(b.name, tuple(None if d < 0 else d for d in b.shape), b.dtype)
                for b in self._bindings if b.is_input]

    @property
    def outputs(self) -> List[TensorSpec]:
        return [TensorSpec(b.name, tuple(None if d < 0 else d for d in b.shape), b.dtype)
                for b in self._bindings if not b.is_input]

    @property
    def batch_limit(self) -> Optional[int]:
        first = next(b for b in self._bindings if b.is_input)
        return int(first.max_shape[0])

    @property
    def static_batch(self) -> bool:
        # A profile pinned to one batch (min = opt = max, as DLA engines need) is static for the caller too.
        first = next(b for b in self._bindings if b.is_input)
        if self._implicit:
            return False
        return first.shape[0] != -1 or first.min_batch == first.max_shape[0]

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        if self._closed:
            raise ModelError(f"TensorRT backend for {self.path} is closed")
        inputs = [b for b in self._bindings if b.is_input]
        missing = [b.name for b in inputs if b.name not in feeds]
        if missing:
            raise InputError(f"missing inputs {missing} for engine {self.path.name}")
        shapes = {}
        for b in inputs:
            array = feeds[b.name]
            if array.dtype != b.dtype:
                raise InputError(f"input {b.name!r} must be {b.dtype}, got {array.dtype}")
            if array.ndim != len(b.max_shape) or any(a > m for a, m in zip(array.shape, b.max_shape)):
                raise InputError(f"input {b.name!r} shape {array.shape} exceeds the engine's maximum {b.max_shape}")
            if array.shape[0] < b.min_batch:
                raise InputError(f"input {b.name!r} batch {array.shape[0]} is below the engine's profile minimum "
                                 f"{b.min_batch} (pad the batch; static_batch says so)")
            shapes[b.name] = array.shape
        batch = next(iter(shapes.values()))[0]
        cuda = self._cuda
        with self._lock:
            with self._ctx.active():
                self._set_input_shapes(shapes)
                for b in inputs:
                    src = np.ascontiguousarray(feeds[b.name]).ravel()
                    b.host[:src.size] = src
                    cuda.memcpy_htod_async(b.device, b.host[:src.size], self._stream)
                outputs = [b for b in self._bindings if not b.is_input]
                out_shapes = {}
                for b in outputs:
                    shape = self._output_shape(b)
                    if self._implicit:
                        shape = (batch,) + tuple(shape[1:])
                    out_shapes[b.name] = shape
                if self._named:
                    for b in self._bindings:
                        self._context.set_tensor_address(b.name, int(b.device))
                    ok = self._context.execute_async_v3(stream_handle=self._stream.handle)
                elif self._implicit:
                    ok = self._context.execute_async(batch_size=batch, bindings=[int(b.device) for b in self._bindings],
                                                     stream_handle=self._stream.handle)
                else:
                    ok = self._context.execute_async_v2(bindings=[int(b.device) for b in self._bindings],
                                                        stream_handle=self._stream.handle)
                if ok is False:
                    raise ModelError(f"TensorRT execution failed for {self.path.name} (see the TensorRT log)")
                results = {}
                for b in outputs:
                    count = int(np.prod(out_shapes[b.name]))
                    cuda.memcpy_dtoh_async(b.host[:count], b.device, self._stream)
                self._stream.synchronize()
                for b in outputs:
                    count = int(np.prod(out_shapes[b.name]))
                    results[b.name] = b.host[:count].reshape(out_shapes[b.name]).copy()
        names = output_names or [b.name for b in self._bindings if not b.is_input]
        return {n: results[n] for n in names}

    def _free(self) -> None:
        """Release buffers, stream, execution context and engine (the CUDA context must be current)."""
        for b in self._bindings:
            if b.device is not None:
                b.device.free()
            b.device = b.host = None
        self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None

    def close(self) -> None:
        """Free buffers and the engine inside the context, then detach the context (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ctx.push()
            try:
                self._free()
            finally:
                self._ctx.pop()
                self._ctx.close()
        _LIVE.discard(self)


_LIVE: "weakref.WeakSet[TensorRTBackend]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Backends a user forgot to close must still release their context before pycuda's own cleanup runs.
    for backend in list(_LIVE):
        try:
            backend.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            logger.exception("closing TensorRT backend at exit failed")
