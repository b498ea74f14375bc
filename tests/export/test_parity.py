import numpy as np
import pytest

from hsst.core.errors import InputError
from hsst.export.parity import GATES, compare_embeddings, polygraphy_hint, run_in_batches


def test_identical_and_perturbed_embeddings():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 512)).astype(np.float32)
    rep = compare_embeddings(a, a.copy(), "onnx")
    assert rep.passed and rep.cosine_min == pytest.approx(1.0) and rep.max_abs_diff == 0.0
    noisy = a + 0.2 * rng.standard_normal(a.shape).astype(np.float32)
    rep = compare_embeddings(a, noisy, "fp16")
    assert not rep.passed and 0.9 < rep.cosine_mean < 0.999 and "FAIL" in str(rep)
    assert rep.to_dict()["threshold"] == GATES["fp16"][1]


def test_nan_output_fails_and_bad_shapes_raise():
    a = np.ones((2, 4), np.float32)
    b = a.copy()
    b[0, 0] = np.nan
    rep = compare_embeddings(a, b, "int8")
    assert not rep.passed and rep.cosine_min == -1.0
    with pytest.raises(InputError):
        compare_embeddings(a, a[:1], "onnx")
    with pytest.raises(InputError, match="unknown gate"):
        compare_embeddings(a, a, "bf16")


def test_run_in_batches_pads_static_models():
    seen = []

    def fn(x):
        seen.append(x.shape[0])
        return x.reshape(x.shape[0], -1) * 2

    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    out = run_in_batches(fn, x, 2, static=True)
    assert seen == [2, 2, 2] and out.shape == (5, 3)
    np.testing.assert_array_equal(out, x * 2)
    seen.clear()
    run_in_batches(fn, x, 2, static=False)
    assert seen == [2, 2, 1]


def test_polygraphy_hint_marks_all_layers():
    hint = polygraphy_hint("m.onnx", "int8", "input", (8, 1, 112, 112), "m.calib")
    assert hint.startswith("polygraphy run m.onnx --onnxrt --trt --int8 --calibration-cache m.calib")
    assert "--onnx-outputs mark all --trt-outputs mark all" in hint and "input:[8,1,112,112]" in hint
