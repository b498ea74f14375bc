"""hsst.runtime.backends.cuda: clear errors where TensorRT / pycuda are missing (checked on this machine as it is),
and the real CUDA context on a GPU host (marker trt)."""
import importlib.util
import threading

import numpy as np
import pytest

from hsst.core.errors import ModelError
from hsst.runtime.backends import create_backend
from hsst.runtime.backends.cuda import (CudaContext, TensorRTUnavailable, cuda_device_info, cuda_device_name,
                                        import_pycuda, import_tensorrt)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


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
    ctx.close()
    ctx.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        ctx.push()
