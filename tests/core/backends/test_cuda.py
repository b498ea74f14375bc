"""hsst.core.backends.cuda: clear errors where TensorRT / pycuda are missing (checked on this machine as it is),
and the real CUDA context on a GPU host (marker trt)."""
import importlib.util
import threading

import numpy as np
import pytest

from hsst.core.errors import ModelError
from hsst.core.backends import create_backend
from hsst.core.backends.cuda import (TRT_DATATYPES, CudaContext, TensorRTUnavailable, cuda_device_info,
                                        cuda_device_name, import_pycuda, import_tensorrt, numpy_dtype)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


class _PybindEnumMember:
    """What a ``trt.DataType`` member shows of itself: a ``name`` (pybind11 >= 2.6) and ``DataType.X`` as str."""

    def __init__(self, name, with_name_attr=True):
        if with_name_attr:
            self.name = name
        self._text = f"DataType.{name}"

    def __str__(self):
        return self._text


NUMPY_OF = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
            "BOOL": np.bool_, "UINT8": np.uint8}


@pytest.mark.parametrize("generation", sorted(TRT_DATATYPES))
def test_every_tensorrt_datatype_maps_or_fails_clearly(generation):
    # Without trt.nptype, which breaks on TensorRT 8.2-8.5 with numpy >= 1.24 (NVIDIA/TensorRT#2701).
    for name in TRT_DATATYPES[generation]:
        for member in (_PybindEnumMember(name), _PybindEnumMember(name, with_name_attr=False), name):
            if name in NUMPY_OF:
                assert numpy_dtype(member) == np.dtype(NUMPY_OF[name])
            else:
                with pytest.raises(ModelError, match=f"{name} of tensor 'embedding' has no numpy equivalent"):
                    numpy_dtype(member, "embedding")


def test_datatype_generations_only_grow():
    order = ["8.0-8.4", "8.5", "8.6", "9.x", "10.x"]
    for older, newer in zip(order, order[1:]):
        assert set(TRT_DATATYPES[older]) <= set(TRT_DATATYPES[newer])


@pytest.mark.trt
def test_installed_tensorrt_datatypes_all_known():
    trt = import_tensorrt()
    known = set().union(*TRT_DATATYPES.values())
    names = {m for m in dir(trt.DataType) if m.isupper()}
    assert names <= known, f"TensorRT {trt.__version__} has data types hsst does not know: {names - known}"
    assert numpy_dtype(trt.DataType.FLOAT) == np.float32 and numpy_dtype(trt.DataType.HALF) == np.float16


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_says_what_to_install(mfn_onnx):
    with pytest.raises(TensorRTUnavailable, match="TensorRT not available .*JetPack.*pip install tensorrt"):
        import_tensorrt()
    # The backend asks for TensorRT before touching the file, so any existing file shows the same message.
    with pytest.raises(ModelError, match="TensorRT not available"):
        create_backend("tensorrt", mfn_onnx)


@pytest.mark.skipif(HAS_PYCUDA, reason="pycuda is installed here")
def test_missing_pycuda_says_what_to_install():
    with pytest.raises(ModelError, match="pycuda not available .*pip install pycuda"):
        import_pycuda()
    with pytest.raises(ModelError, match="pycuda not available"):
        cuda_device_info()
    with pytest.raises(ModelError, match="pycuda not available"):
        CudaContext(0)
    assert cuda_device_name() is None


@pytest.mark.trt
def test_context_works_from_another_thread_and_closes():
    info = cuda_device_info(0)
    assert info["gpu"] == cuda_device_name(0) and info["gpu"]
    assert info["compute_capability"].count(".") == 1
    ctx = CudaContext(0)
    x = np.arange(1024, dtype=np.float32)
    done = {}

    def work():
        with ctx.active():
            buf = ctx.malloc(x.nbytes)
            ctx.memcpy_htod(buf, x, x.nbytes)
            back = np.empty_like(x)
            ctx.drv.memcpy_dtoh(back, buf)
            ctx.free(buf)
        done["back"] = back

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    np.testing.assert_array_equal(done["back"], x)
    with pytest.raises(ModelError, match="CUDA device 99 does not exist"):
        CudaContext(99)
    other = CudaContext(0)
    assert other._ctx.handle == ctx._ctx.handle  # one primary context per device, not one per backend
    closer = threading.Thread(target=ctx.close)  # closing from a thread other than the creator's
    closer.start()
    closer.join()
    ctx.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        ctx.push()
    with other.active():  # the shared context outlives the closed handle
        assert ctx.drv.Context.get_current().handle == other._ctx.handle
    assert ctx.drv.Context.get_current() is None  # nothing left current after use
    other.close()
