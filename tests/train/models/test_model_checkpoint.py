import logging

import cv2
import numpy as np
import pytest
import torch

from hsst.core.errors import ConfigError, ModelError
from hsst.core.image import read_image
from hsst.core.metadata import ModelMeta, Preprocess
from hsst.core.preprocess import to_input
from hsst.train.models import (create_backbone, load_foreign_state_dict, load_probe_checkpoint, meta_for,
                               read_checkpoint_meta, save_probe_checkpoint)


@pytest.fixture(scope="module")
def orl_batch(orl_dir):
    crops = [cv2.resize(read_image(orl_dir / "s2" / f"{i}.pgm"), (112, 112)) for i in (1, 5)]
    return torch.from_numpy(to_input(crops, Preprocess.for_size(112, color="gray")))


def _trained_like(seed=0, **kw):
    """A backbone with non-default weights and BN statistics (as after training)."""
    torch.manual_seed(seed)
    m = create_backbone("mobilefacenet", **kw)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, m.in_chans, m.input_size, m.input_size))
    return m.eval()


def test_meta_for():
    meta = meta_for(create_backbone("mobilefacenet", input_size=144, in_chans=3), name="x")
    assert (meta.name, meta.arch, meta.embedding_dim) == ("x", "mobilefacenet", 512)
    assert meta.preprocess == Preprocess.for_size(144, color="rgb")
    assert meta_for(create_backbone("resnet50")).preprocess.color == "gray"
    with pytest.raises(ConfigError):
        meta_for(create_backbone("mobilefacenet"), bogus=1)


def test_roundtrip_gives_identical_embeddings(tmp_path, orl_batch):
    m = _trained_like()
    meta = meta_for(m, training={"method": "hsst"})
    path = save_probe_checkpoint(tmp_path / "sub" / "probe.pt", m, meta, extra={"iteration": 7})
    assert [p.name for p in path.parent.iterdir()] == ["probe.pt"]       # no temporary file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "hsst-probe-net" and raw["format_version"] == 1 and raw["arch"] == "mobilefacenet"
    assert raw["arch_kwargs"] == {"input_size": 112, "embedding_dim": 512, "in_chans": 1}
    assert raw["extra"] == {"iteration": 7}
    loaded, meta2 = load_probe_checkpoint(path)
    assert meta2 == meta and not loaded.training
    assert read_checkpoint_meta(path) == meta                              # metadata alone, no model built
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an hsst probe-net checkpoint"):
        read_checkpoint_meta(tmp_path / "other.pt")
    with torch.no_grad():
        assert torch.equal(loaded(orl_batch), m(orl_batch))


def test_save_rejects_inconsistent_meta(tmp_path):
    m = create_backbone("mobilefacenet")
    with pytest.raises(ModelError, match="crop_size"):
        save_probe_checkpoint(tmp_path / "p.pt", m, ModelMeta(preprocess=Preprocess.for_size(144)))
    with pytest.raises(ModelError, match="in_chans"):
        save_probe_checkpoint(tmp_path / "p.pt", m, ModelMeta(preprocess=Preprocess(color="rgb")))


def test_save_rejects_non_plain_extra(tmp_path):
    m = create_backbone("mobilefacenet")
    with pytest.raises(ConfigError, match=r"extra\['data'\] is a \w*Path"):
        save_probe_checkpoint(tmp_path / "p.pt", m, meta_for(m), extra={"data": tmp_path})
    with pytest.raises(ConfigError, match="float64"):     # numpy scalars would not load with weights_only
        save_probe_checkpoint(tmp_path / "p.pt", m, meta_for(m), extra={"loss": np.float64(0.5)})
    assert not list(tmp_path.iterdir())


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_probe_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelError, match="not an hsst probe-net"):
        load_probe_checkpoint(other)
    good = save_probe_checkpoint(tmp_path / "good.pt", create_backbone("mobilefacenet"),
                                 meta_for(create_backbone("mobilefacenet")))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_probe_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_probe_checkpoint(garbage)


def test_foreign_facex_zoo_style_file(tmp_path, orl_batch, caplog):
    src = _trained_like(seed=1)
    # FaceX-Zoo saves {"state_dict": model.state_dict()} of a DataParallel(FaceModel(backbone, head))
    sd = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    sd["module.head.weight"] = torch.randn(10, 512)
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "facex.pt")
    dst = create_backbone("mobilefacenet")
    with caplog.at_level(logging.INFO, logger="hsst.train.models.probe_checkpoint"):
        report = load_foreign_state_dict(dst, tmp_path / "facex.pt", strict=True)
    assert report.ok and not report.missing and report.unexpected == ["head.weight"]
    assert len(report.loaded) == len(src.state_dict())
    assert "loaded" in caplog.text and "head.weight" in str(report)
    dst.eval()
    with torch.no_grad():
        assert torch.equal(dst(orl_batch), src(orl_batch))


def test_foreign_rgb_stem_adapted_exactly_for_gray(orl_batch):
    rgb = _trained_like(seed=2, in_chans=3)
    gray = create_backbone("mobilefacenet", in_chans=1)
    report = load_foreign_state_dict(gray, {"model": rgb.state_dict()})
    assert report.adapted == ["conv1.conv.weight"] and report.ok
    gray.eval()
    with torch.no_grad():   # a gray image fed as R=G=B to the RGB net == the gray image to the adapted net
        assert torch.allclose(gray(orl_batch), rgb(orl_batch.repeat(1, 3, 1, 1)), atol=1e-4)


def test_foreign_mismatch_reported_and_strict(tmp_path):
    src = create_backbone("mobilefacenet", input_size=112).state_dict()
    del src["linear.weight"]
    dst = create_backbone("mobilefacenet", input_size=144)
    before = dst.conv1.conv.weight.clone()
    with pytest.raises(ModelError, match="strict"):
        load_foreign_state_dict(dst, src, strict=True)
    assert torch.equal(dst.conv1.conv.weight, before)           # strict failure loads nothing
    report = load_foreign_state_dict(dst, src)
    assert report.missing == ["linear.weight"]
    assert report.shape_mismatch == [("conv_6_dw.conv.weight", (512, 1, 7, 7), (512, 1, 9, 9))]
    assert torch.equal(dst.conv1.conv.weight, src["conv1.conv.weight"])
    assert "shape mismatch 1" in str(report) and "missing 1" in str(report)
    with pytest.raises(ModelError, match="no state dict"):
        load_foreign_state_dict(dst, {"epoch": 1})


def test_wrapped_models_are_unwrapped(tmp_path):
    m = _trained_like(seed=3)
    wrapped = torch.nn.DataParallel(m)          # same .module layout as DistributedDataParallel
    path = save_probe_checkpoint(tmp_path / "p.pt", wrapped, meta_for(wrapped))
    assert next(iter(torch.load(path, weights_only=True)["state_dict"])).startswith("conv1.")
    dst = create_backbone("mobilefacenet")
    compiled_names = {f"_orig_mod.{k}": v for k, v in m.state_dict().items()}
    report = load_foreign_state_dict(torch.nn.DataParallel(dst), compiled_names)
    assert report.ok and torch.equal(dst.linear.weight, m.linear.weight)
