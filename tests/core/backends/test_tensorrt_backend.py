"""TensorRT backend against onnxruntime on the same MobileFaceNet: needs TensorRT + pycuda + a GPU (marker trt)."""
import threading

import numpy as np
import pytest

from hsst.core.errors import ModelError

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def engine(mfn_onnx, tmp_path_factory):
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if trt.__version__.startswith("8.") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(mfn_onnx.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 1, 112, 112), (4, 1, 112, 112), (8, 1, 112, 112))
    config.add_optimization_profile(profile)
    data = builder.build_serialized_network(network, config)
    path = tmp_path_factory.mktemp("trt") / f"mfn.8.{trt.__version__}.test.fp32.engine"
    path.write_bytes(bytes(data))
    return path


def test_matches_onnxruntime_and_works_from_threads(engine, mfn_onnx):
    from hsst.core.backends import create_backend

    trt_backend = create_backend("tensorrt", engine)
    ort_backend = create_backend("onnxruntime", mfn_onnx, threads=1)
    try:
        assert trt_backend.batch_limit == 8 and not trt_backend.static_batch
        x = np.random.default_rng(0).standard_normal((5, 1, 112, 112)).astype(np.float32)
        np.testing.assert_allclose(trt_backend.infer(x), ort_backend.infer(x), atol=2e-3, rtol=2e-3)
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("y", trt_backend.infer(x[:2])))
        worker.start()
        worker.join()
        np.testing.assert_allclose(out["y"], ort_backend.infer(x[:2]), atol=2e-3, rtol=2e-3)
    finally:
        trt_backend.close()
        trt_backend.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        trt_backend.infer(x)


def test_corrupt_engine(tmp_path):
    from hsst.core.backends import create_backend

    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(ModelError, match="cannot deserialize"):
        create_backend("tensorrt", bad)
