"""ONNX export of the real MobileFaceNet at several opsets and batch modes, checked with onnxruntime on real faces."""
import numpy as np
import onnx
import pytest

from hsst.core.errors import ConfigError
from hsst.export.onnx_export import BATCH_DIM, decompose_prelu, export_onnx, fold_gemm_batchnorm, onnx_io
from hsst.export.parity import compare_embeddings, onnx_embeddings, onnx_session, torch_embeddings


@pytest.mark.parametrize("opset, dynamic, batch, simplify", [
    (13, False, 1, False), (17, True, 4, True), (18, False, 4, True),
])
def test_export_parity_on_real_faces(tmp_path, probe_net, gray_meta, lfw_faces, opset, dynamic, batch, simplify):
    path = tmp_path / "m.onnx"
    exp = export_onnx(probe_net, gray_meta, path, opset=opset, batch=batch, dynamic=dynamic, simplify=simplify)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == opset
    assert exp.folded == 1 and "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    (in_name, in_shape), = onnx_io(path)[0]
    (out_name, out_shape), = onnx_io(path)[1]
    assert (in_name, out_name) == ("input", "embedding")
    assert in_shape == [BATCH_DIM if dynamic else batch, 1, 112, 112] == exp.input_shape
    assert out_shape == [BATCH_DIM if dynamic else batch, 512]
    faces = lfw_faces[:8]
    report = compare_embeddings(torch_embeddings(probe_net, faces), onnx_embeddings(path, faces, batch, not dynamic),
                                "onnx")
    assert report.passed and report.cosine_min >= 0.99999 and report.max_abs_diff < 1e-3


def test_dynamic_batch_1_to_n(tmp_path, probe_net, gray_meta, lfw_faces):
    path = tmp_path / "d.onnx"
    export_onnx(probe_net, gray_meta, path, batch=2, dynamic=True)
    sess = onnx_session(path)
    ref = torch_embeddings(probe_net, lfw_faces[:8])
    for n in (1, 3, 8):
        out = sess.run(None, {"input": lfw_faces[:n]})[0]
        assert out.shape == (n, 512)
        np.testing.assert_allclose(out, ref[:n], rtol=1e-3, atol=1e-4)


def test_static_batch_rejects_other_sizes(tmp_path, probe_net, gray_meta, lfw_faces):
    path = tmp_path / "s.onnx"
    export_onnx(probe_net, gray_meta, path, batch=2)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        onnx_session(path).run(None, {"input": lfw_faces[:3]})


def test_normalized_output(tmp_path, probe_net, gray_meta, lfw_faces):
    path = tmp_path / "n.onnx"
    export_onnx(probe_net, gray_meta, path, dynamic=True, normalize=True)
    out = onnx_session(path).run(None, {"input": lfw_faces[:4]})[0]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    ref = torch_embeddings(probe_net, lfw_faces[:4], normalize=True)
    assert compare_embeddings(ref, out, "onnx").passed


def test_imgsz_must_match_the_model(tmp_path, probe_net, gray_meta):
    with pytest.raises(ConfigError, match="--imgsz 128 does not match"):
        export_onnx(probe_net, gray_meta, tmp_path / "x.onnx", imgsz=128)
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(probe_net, gray_meta, tmp_path / "x.onnx", opset=8)
    assert not (tmp_path / "x.onnx").exists()


def test_fold_gemm_batchnorm_is_exact():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    mean, var = rng.standard_normal(6).astype(np.float32), rng.uniform(0.1, 3, 6).astype(np.float32)
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1),
         h.make_node("BatchNormalization", ["y", "g", "be", "m", "v"], ["z"], epsilon=1e-5)],
        "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 4])],
        [h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [3, 6])],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (gamma, "g"), (beta, "be"), (mean, "m"),
                                                        (var, "v"))])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    x = rng.standard_normal((3, 4)).astype(np.float32)
    import onnxruntime as ort

    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert fold_gemm_batchnorm(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Gemm"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_optimize_rewrites_prelu_exactly(tmp_path, probe_net, gray_meta, lfw_faces):
    plain, fast = tmp_path / "p.onnx", tmp_path / "f.onnx"
    export_onnx(probe_net, gray_meta, plain, dynamic=True)
    exp = export_onnx(probe_net, gray_meta, fast, dynamic=True, optimize=True)
    ops = [n.op_type for n in onnx.load(str(fast)).graph.node]
    assert "PRelu" not in ops and exp.prelu_decomposed == ops.count("Relu") == 33
    x = lfw_faces[:4]
    a = onnx_session(plain).run(None, {"input": x})[0]
    b = onnx_session(fast).run(None, {"input": x})[0]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert decompose_prelu(onnx.load(str(fast))) == 0  # idempotent


def test_prelu_with_slopes_beyond_one_is_not_decomposed():
    """Branches (1 - a) relu(x) and a x that cancel cannot survive INT8: such PRelus stay as they are."""
    from onnx import TensorProto, helper, numpy_helper

    def graph_with(slope: np.ndarray) -> onnx.ModelProto:
        node = helper.make_node("PRelu", ["x", "a"], ["y"], name="p")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])],
                                  [numpy_helper.from_array(slope.reshape(3, 1, 1), "a")])
        return helper.make_model(graph)

    assert decompose_prelu(graph_with(np.array([0.25, -0.5, 1.0], np.float32)), max_slope=1.0) == 1
    steep = graph_with(np.array([0.25, -4.0, 9.0], np.float32))
    assert decompose_prelu(steep, max_slope=1.0) == 0 and [n.op_type for n in steep.graph.node] == ["PRelu"]
    assert decompose_prelu(steep) == 1  # float32 (--optimize): exact enough, and faster
