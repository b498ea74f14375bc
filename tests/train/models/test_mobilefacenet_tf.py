"""MobileFaceNet_TF layout and the pretrained import: parity with the TFLite file, gray stem, checkpoints."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hsst.core.errors import ModelError
from hsst.core.metadata import Preprocess
from hsst.core.preprocess import to_input
from hsst.pretrained import reference_onnx
from hsst.train.data import FaceLoader
from hsst.train.models import create_backbone, load_probe_checkpoint
from hsst.train.models.pretrained import create_pretrained, pretrained_state_dict, save_pretrained_checkpoint

NAME = "mobilefacenet-ms1m"


@pytest.fixture(scope="module")
def lfw_crops(lfw_dir):
    """Eight 112 px face crops of real LFW photos (two people, four photos each), BGR uint8."""
    loader = FaceLoader(112)
    people = [d for d in sorted(lfw_dir.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 4][:2]
    return [loader.load(p) for person in people for p in sorted(person.glob("*.jpg"))[:4]]


def _normed(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_layout_shapes_and_tf_same_padding():
    model = create_backbone("mobilefacenet_tf", in_chans=3).eval()
    assert model.embedding_dim == 192
    assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 192)
    assert model.stem.conv[0].padding == (0, 1, 0, 1)  # TensorFlow SAME, stride 2: pad after only
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())  # folded
    assert sum(p.numel() for p in model.parameters()) < 1_040_000  # the two linear tail layers are one
    assert create_backbone("mobilefacenet_tf", input_size=144).gdc.kernel_size == (9, 9)


def test_import_matches_the_tflite_file_on_real_faces(pretrained_mobilefacenet, lfw_crops):
    model = create_pretrained(NAME, in_chans=3)
    x = to_input(lfw_crops, Preprocess.for_size(112, color="rgb"))
    session = ort.InferenceSession(str(reference_onnx(NAME)), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reference = np.concatenate([session.run(None, {name: x[i:i + 2]})[0] for i in range(0, len(x), 2)])
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    cosine = (_normed(reference) * _normed(ours)).sum(axis=1)
    assert cosine.min() >= 0.9999
    same, other = _normed(ours)[:4], _normed(ours)[4:]
    assert (same @ same.T)[np.triu_indices(4, 1)].mean() > (same @ other.T).mean() + 0.3  # it recognises people


def test_gray_stem_equals_the_rgb_network_on_repeated_gray(pretrained_mobilefacenet, lfw_crops):
    gray_model, rgb_model = create_pretrained(NAME, in_chans=1), create_pretrained(NAME, in_chans=3)
    x = to_input(lfw_crops, Preprocess.for_size(112, color="gray"))
    with torch.no_grad():
        gray = gray_model(torch.from_numpy(x)).numpy()
        rgb = rgb_model(torch.from_numpy(np.repeat(x, 3, axis=1))).numpy()
    assert (_normed(gray) * _normed(rgb)).sum(axis=1).min() >= 0.99999
    np.testing.assert_allclose(gray, rgb, atol=1e-3)


def test_other_embedding_size_keeps_only_the_last_projection_fresh(pretrained_mobilefacenet):
    model = create_backbone("mobilefacenet_tf", embedding_dim=128)
    state = pretrained_state_dict(NAME, model)
    reference = create_pretrained(NAME)
    assert torch.equal(state["stage3.2.depthwise.conv.weight"], reference.state_dict()["stage3.2.depthwise.conv.weight"])
    assert torch.equal(state["embedding.weight"], model.state_dict()["embedding.weight"])


def test_wrong_backbone_is_refused(pretrained_mobilefacenet):
    with pytest.raises(ModelError, match="load into the 'mobilefacenet_tf' backbone"):
        pretrained_state_dict(NAME, create_backbone("mobilefacenet"))


def test_saved_import_is_a_probe_net_checkpoint(pretrained_mobilefacenet, tmp_path, lfw_dir):
    path = save_pretrained_checkpoint(NAME, tmp_path / "import.pt")
    model, meta = load_probe_checkpoint(path)
    assert meta.arch == "mobilefacenet_tf" and meta.embedding_dim == 192 and meta.preprocess.color == "gray"
    assert meta.training["method"] == "import" and meta.training["pretrained"] == NAME
    crop = FaceLoader(112).load(next(lfw_dir.glob("*/*.jpg")))
    x = torch.from_numpy(to_input([crop], meta.preprocess))
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), create_pretrained(NAME)(x).numpy(), atol=1e-5)
