"""Running a TensorRT engine from the exporter: accuracy gates, latency, INT8 calibration buffers.

CUDA memory comes from cuda-python (NVIDIA's current samples) or pycuda, whichever imports; the engine
*build* needs neither (FP16 builds run with TensorRT alone). Both TensorRT runtime APIs are handled:
the bindings API of TensorRT 8.2-8.4 (``execute_async_v2``) and named tensors of 8.5+ (``execute_async_v3``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import ModelError
from hsst.core.metadata import ModelMeta, check_engine_compat, sidecar_path

logger = logging.getLogger(__name__)

__all__ = ["TensorRTUnavailable", "import_tensorrt", "CudaApi", "TrtRunner", "latency_percentiles",
           "cuda_device_name"]


class TensorRTUnavailable(ModelError):
    """``import tensorrt`` failed on this machine."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` saying how to get it."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from a CUDA/TensorRT library that does not load
        raise TensorRTUnavailable(
            f"TensorRT not available ({type(exc).__name__}: {exc}). On a Jetson TensorRT comes with JetPack: use "
            "a venv created with --system-site-packages (or the system python3); on an x86 GPU host: "
            "pip install tensorrt") from None
    return trt


class CudaApi:
    """The few CUDA runtime calls the exporter needs, over cuda-python or pycuda.

    Use :meth:`create`; call :meth:`close` when done (pops pycuda's context).
    """

    def __init__(self, backend: str, module: Any, context: Any = None) -> None:
        self.backend = backend
        self._m = module
        self._ctx = context

    @classmethod
    def create(cls) -> "CudaApi":
        """cuda-python if it imports, else pycuda; :class:`ModelError` when neither is installed."""
        try:
            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
            except ImportError:
                from cuda import cudart  # older cuda-python
            api = cls("cuda-python", cudart)
            api._check(cudart.cudaFree(0))  # creates the primary context, fails early without a GPU
            return api
        except ImportError:
            pass
        try:
            import pycuda.driver as drv
        except ImportError:
            raise ModelError("running a TensorRT engine needs cuda-python (pip install cuda-python) or pycuda "
                             "(JetPack: pip install pycuda with CUDA's include and lib paths set)") from None
        drv.init()
        # The device's primary context (the one TensorRT's CUDA runtime calls use), pushed by this thread and
        # popped by close(); pycuda.autoinit would leave a context on the stack at exit.
        ctx = drv.Device(0).retain_primary_context()
        ctx.push()
        return cls("pycuda", drv, ctx)

    def _check(self, result: Any) -> Any:
        if self.backend != "cuda-python":
            return result
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self._m.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            raise ModelError(f"CUDA error {name} ({int(err)}); check the GPU driver (nvidia-smi / tegrastats)")
        return rest[0] if len(rest) == 1 else rest

    def device_name(self) -> str:
        if self.backend == "cuda-python":
            prop = self._check(self._m.cudaGetDeviceProperties(0))
            name = prop.name
            return (name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)).strip()
        return str(self._m.Device(0).name()).strip()

    def compute_capability(self) -> str:
        if self.backend == "cuda-python":
            prop = self._check(self._m.cudaGetDeviceProperties(0))
            return f"{prop.major}.{prop.minor}"
        major, minor = self._m.Device(0).compute_capability()
        return f"{major}.{minor}"

    def malloc(self, nbytes: int) -> Any:
        if self.backend == "cuda-python":
            return self._check(self._m.cudaMalloc(int(nbytes)))
        return self._m.mem_alloc(int(nbytes))

    def free(self, ptr: Any) -> None:
        if self.backend == "cuda-python":
            self._check(self._m.cudaFree(ptr))
        else:
            ptr.free()

    def memcpy_htod(self, dst: Any, host: np.ndarray, nbytes: Optional[int] = None) -> None:
        host = np.ascontiguousarray(host)
        if self.backend == "cuda-python":
            kind = self._m.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._m.cudaMemcpy(dst, host.ctypes.data, int(nbytes or host.nbytes), kind))
        else:
            self._m.memcpy_htod(dst, host)

    def memcpy_dtoh(self, host: np.ndarray, src: Any) -> None:
        if self.backend == "cuda-python":
            kind = self._m.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self._m.cudaMemcpy(host.ctypes.data, src, host.nbytes, kind))
        else:
            self._m.memcpy_dtoh(host, src)

    def stream(self) -> Any:
        if self.backend == "cuda-python":
            return self._check(self._m.cudaStreamCreate())
        return self._m.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream) if self.backend == "cuda-python" else int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        if self.backend == "cuda-python":
            self._check(self._m.cudaStreamSynchronize(stream))
        else:
            stream.synchronize()

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None

    @staticmethod
    def address(ptr: Any) -> int:
        return int(ptr)


def cuda_device_name() -> Optional[str]:
    """This machine's CUDA device name (the name engines are recorded with), or None without CUDA bindings."""
    try:
        api = CudaApi.create()
    except Exception:  # no binding, no GPU, no driver
        try:
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except ImportError:
            return None
    try:
        return api.device_name()
    finally:
        api.close()


class TrtRunner:
    """Runs a serialized TensorRT engine on float32 NCHW batches.

    Args:
        engine_path: the ``.engine`` file.
        cuda: CUDA calls (default: :meth:`CudaApi.create`); closed by :meth:`close` only if created here.
        check_sidecar: refuse an engine whose sidecar says it was built for another TensorRT / GPU.
    """

    def __init__(self, engine_path: Union[str, Path], cuda: Optional[CudaApi] = None,
                 check_sidecar: bool = True) -> None:
        trt = import_tensorrt()
        self.trt = trt
        self.path = Path(engine_path)
        self._own_cuda = cuda is None
        self.cuda = cuda or CudaApi.create()
        if check_sidecar and sidecar_path(self.path).is_file():
            check_engine_compat(ModelMeta.load(sidecar_path(self.path)), trt.__version__, self.cuda.device_name())
        self._log = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._log)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ModelError(f"TensorRT {trt.__version__} could not load {self.path} (see the TensorRT log above: "
                             "usually an engine built by another TensorRT version or for another GPU); rebuild it "
                             "on this device with hsst-export --trt")
        self.engine = engine
        self.context = engine.create_execution_context()
        self.named = hasattr(engine, "num_io_tensors")
        self.input_name, self.output_names, self.max_shape, self.dynamic = self._io()
        self.stream = self.cuda.stream()
        self._in = self.cuda.malloc(int(np.prod(self.max_shape)) * 4)
        # float32 I/O: hsst exports keep float32 inputs/outputs (AutoCast keep_io_types, Q/DQ inside the graph)
        self._out = {n: self.cuda.malloc(int(np.prod(s)) * 4) for n, s in self._output_shapes(self.max_shape).items()}

    def _io(self) -> Tuple[str, List[str], Tuple[int, ...], bool]:
        e = self.engine
        if self.named:  # TensorRT >= 8.5
            names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
            ins = [n for n in names if e.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
            outs = [n for n in names if n not in ins]
            if len(ins) != 1:
                raise ModelError(f"{self.path.name} has {len(ins)} inputs; hsst engines take one")
            shape = tuple(e.get_tensor_shape(ins[0]))
            dynamic = -1 in shape
            if dynamic:
                shape = tuple(e.get_tensor_profile_shape(ins[0], 0)[2])
            return ins[0], outs, shape, dynamic
        ins = [i for i in range(e.num_bindings) if e.binding_is_input(i)]  # TensorRT 8.2-8.4 bindings
        outs = [i for i in range(e.num_bindings) if i not in ins]
        if len(ins) != 1:
            raise ModelError(f"{self.path.name} has {len(ins)} inputs; hsst engines take one")
        shape = tuple(e.get_binding_shape(ins[0]))
        dynamic = -1 in shape
        if dynamic:
            shape = tuple(e.get_profile_shape(0, ins[0])[2])
        return e.get_binding_name(ins[0]), [e.get_binding_name(i) for i in outs], shape, dynamic

    def _set_shape(self, shape: Tuple[int, ...]) -> None:
        if not self.dynamic:
            return
        if self.named:
            self.context.set_input_shape(self.input_name, shape)
        else:
            self.context.set_binding_shape(self.engine.get_binding_index(self.input_name), shape)

    def _output_shapes(self, in_shape: Tuple[int, ...]) -> Dict[str, Tuple[int, ...]]:
        self._set_shape(in_shape)
        if self.named:
            return {n: tuple(self.context.get_tensor_shape(n)) for n in self.output_names}
        return {n: tuple(self.context.get_binding_shape(self.engine.get_binding_index(n)))
                for n in self.output_names}

    @property
    def output_name(self) -> str:
        return self.output_names[0]

    @property
    def max_batch(self) -> int:
        return int(self.max_shape[0])

    def run_all(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """All outputs of one batch (N <= max batch; a static engine needs its exact input shape)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != tuple(self.max_shape[1:]) or x.shape[0] > self.max_batch or \
                (not self.dynamic and x.shape[0] != self.max_batch):
            raise ModelError(f"engine {self.path.name} takes {'up to ' if self.dynamic else ''}"
                             f"{tuple(self.max_shape)}, got {x.shape}")
        shapes = self._output_shapes(tuple(x.shape))
        outs = {n: np.empty(s, dtype=np.float32) for n, s in shapes.items()}
        self.cuda.memcpy_htod(self._in, x)
        handle = self.cuda.stream_handle(self.stream)
        if self.named:
            self.context.set_tensor_address(self.input_name, self.cuda.address(self._in))
            for name in self.output_names:
                self.context.set_tensor_address(name, self.cuda.address(self._out[name]))
            ok = self.context.execute_async_v3(handle)
        else:
            bindings = [0] * self.engine.num_bindings
            bindings[self.engine.get_binding_index(self.input_name)] = self.cuda.address(self._in)
            for name in self.output_names:
                bindings[self.engine.get_binding_index(name)] = self.cuda.address(self._out[name])
            ok = self.context.execute_async_v2(bindings=bindings, stream_handle=handle)
        self.cuda.synchronize(self.stream)
        if not ok:
            raise ModelError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log)")
        for name, arr in outs.items():
            self.cuda.memcpy_dtoh(arr, self._out[name])
        return outs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output (the embedding) of one batch."""
        return self.run_all(x)[self.output_name]

    def close(self) -> None:
        bufs = [getattr(self, "_in", None)] + list((getattr(self, "_out", None) or {}).values())
        for buf in bufs:
            if buf is not None:
                self.cuda.free(buf)
        self._in, self._out = None, {}
        self.context = None
        self.engine = None
        if self._own_cuda:
            self.cuda.close()

    def __enter__(self) -> "TrtRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def latency_percentiles(fn: Any, x: np.ndarray, iters: int = 200, warmup: int = 20) -> Dict[str, float]:
    """Wall-clock latency of ``fn(x)`` in milliseconds: p50 / p90 / p99 / mean over ``iters`` calls."""
    for _ in range(warmup):
        fn(x)
    times: List[float] = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()), "iters": int(iters),
            "batch": int(x.shape[0]), "faces_per_s": float(x.shape[0] * 1e3 / arr.mean())}
