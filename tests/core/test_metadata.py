import numpy as np
import pytest

from hsst.core.errors import InputError, ModelError
from hsst.core.metadata import ModelMeta, Preprocess, sidecar_path
from hsst.core.preprocess import to_input


def test_roundtrip(tmp_path):
    meta = ModelMeta(thresholds={"0.001": 0.42}, preprocess=Preprocess.for_size(144, color="rgb"))
    path = meta.save(tmp_path / "m.json")
    assert ModelMeta.load(path) == meta
    assert meta.threshold_for_far(1e-3) == pytest.approx(0.42)
    assert sidecar_path(tmp_path / "m.onnx").name == "m.onnx.json"


def test_template_is_the_models_own_else_the_standard_one_scaled():
    from hsst.core.alignment import reference_points

    np.testing.assert_allclose(Preprocess(crop_size=144).template, reference_points(144))  # absent: standard
    np.testing.assert_allclose(ModelMeta.from_dict({"preprocess": {"crop_size": 144}}).preprocess.template,
                               reference_points(144))                         # a sidecar without one
    stale = {"crop_size": 144, "template": reference_points(112).tolist()}    # the old default, never scaled
    np.testing.assert_allclose(Preprocess(**stale).template, reference_points(144))
    own = (reference_points(112) + [0.0, 3.0]).tolist()
    assert ModelMeta.from_dict({"preprocess": {"template": own}}).preprocess.template == own
    with pytest.raises(ModelError, match="5 finite"):
        Preprocess(template=[[1.0, 2.0]] * 4)


def test_unknown_fields_and_missing_file(tmp_path):
    with pytest.raises(ModelError, match="unknown"):
        ModelMeta.from_dict({"bogus": 1})
    with pytest.raises(ModelError, match="not found"):
        ModelMeta.load(tmp_path / "missing.json")


def test_to_input_gray_and_rgb():
    bgr = np.zeros((112, 112, 3), np.uint8)
    bgr[..., 2] = 255  # red
    gray = to_input([bgr], Preprocess(color="gray"))
    assert gray.shape == (1, 1, 112, 112) and gray.dtype == np.float32
    rgb = to_input([bgr], Preprocess(color="rgb"))
    assert rgb[0, 0, 0, 0] == pytest.approx((255 - 127.5) / 128)
    assert rgb[0, 2, 0, 0] == pytest.approx(-127.5 / 128)


def test_to_input_rejects_wrong_size():
    with pytest.raises(InputError, match="expects 112x112"):
        to_input([np.zeros((100, 100), np.uint8)], Preprocess())


@pytest.mark.parametrize("make", [
    lambda shipped, photo: photo.read_bytes(),                          # binary: not even text
    lambda shipped, photo: shipped.read_bytes()[: len(shipped.read_bytes()) // 2],  # truncated JSON
])
def test_unreadable_sidecar_is_a_model_error(tmp_path, lfw_dir, make):
    from hsst.runtime.model_files import ASSETS_MODELS, DEFAULT_EMBEDDING_ONNX

    shipped = sidecar_path(ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX)
    path = tmp_path / "model.onnx.json"
    path.write_bytes(make(shipped, lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg"))
    with pytest.raises(ModelError, match="cannot read model metadata .*; re-export the model with hsst-export"):
        ModelMeta.load(path)
