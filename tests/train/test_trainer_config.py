"""TrainConfig: paper defaults, validation messages, round trips."""
from __future__ import annotations

import json

import pytest

from hsst.core.errors import ConfigError
from hsst.runtime.model_files import default_embedding_model
from hsst.train.config import TrainConfig, default_milestones, parse_milestones


def cfg(**sections) -> TrainConfig:
    d = {"data": {"data": "/some/where"}}
    for name, values in sections.items():
        if name == "method":
            d["method"] = values
        else:
            d.setdefault(name, {}).update(values)
    return TrainConfig.from_dict(d)


def test_paper_defaults():
    c = cfg().validate()
    assert c.method == "hsst" and c.loss.name == "softmax" and c.model.backbone == "mobilefacenet"
    assert (c.optim.batch_size, c.optim.lr, c.optim.iters, c.optim.milestones) == (64, 5e-4, 10000, [6000, 8000])
    assert (c.optim.momentum, c.optim.weight_decay) == (0.9, 5e-4)
    assert (c.hsst.queue_size, c.hsst.ema, c.model.embedding_dim) == (128, 0.999, 512)


def test_milestones_scale_with_iters():
    assert cfg(optim={"iters": 1000}).validate().optim.milestones == [600, 800]
    assert default_milestones(1) == [] and default_milestones(3) == [2]
    assert parse_milestones("6000, 8000") == [6000, 8000] and parse_milestones("") == []
    with pytest.raises(ConfigError, match="comma list"):
        parse_milestones("6k,8k")


@pytest.mark.parametrize("sections,message", [
    ({"method": "pretrain", "teacher": {"name": None}, "loss": {"name": "triplet"}}, "classifier loss"),
    ({"method": "hsst", "teacher": {"name": "dlib"}}, "is for --method pretrain"),
    ({"data": {"casia": "/c"}}, "exclusive"),
    ({"data": {"data": None, "casia": "/c"}}, "needs --fold"),
    ({"data": {"fold": 2}}, "only applies to --casia"),
    ({"data": {"data": None, "casia": "/c", "fold": 11}}, "1..10"),
    ({"data": {"data": None}}, "no training data"),
    ({"hsst": {"queue_size": 0}}, "queue-size"),
    ({"hsst": {"ema": 1.0}}, "--ema"),
    ({"optim": {"milestones": [8000, 6000]}}, "strictly increasing"),
    ({"optim": {"iters": 100, "milestones": [60, 100]}}, "1..iters-1"),
    ({"optim": {"batch_size": 1}}, "batch-size"),
    ({"optim": {"lr": 0}}, "--lr"),
    ({"model": {"input_size": 120}}, "multiple of 16"),
    ({"model": {"backbone": "vgg"}}, "--backbone"),
    ({"model": {"color": "yuv"}}, "--color"),
    ({"model": {"init": "/nope/ckpt.pt"}}, "not found"),
    ({"loss": {"name": "cosface"}}, "--loss"),
    ({"loss": {"name": "softmax", "margin": 0.3}}, "no effect"),
    ({"run": {"device": "gpu"}}, "--device"),
    ({"run": {"save_every": -1}}, "--save-every"),
    ({"data": {"workers": -2}}, "--workers"),
    ({"method": "pretrain", "data": {"data": None, "casia": "/c", "fold": 1}}, "VIS identity folders"),
    ({"method": "sst"}, "--method"),
    ({"method": "pretrain", "teacher": {"name": "dlib"}, "loss": {"margin": 0.2}}, "no effect"),
])
def test_invalid_combinations_say_why(sections, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**sections).validate()


def test_round_trip_and_unknown_keys(tmp_path):
    c = cfg(method="plain", loss={"name": "am-softmax", "margin": 0.4}, model={"input_size": 144}).validate()
    path = c.save(tmp_path / "config.json")
    back = TrainConfig.load(path)
    assert back.to_dict() == c.to_dict() and back.model.in_chans == 1
    (tmp_path / "c.yaml").write_text("method: pretrain\ndata: {data: /x}\nloss: {name: arc-softmax}\n")
    assert TrainConfig.load(tmp_path / "c.yaml").validate().loss.name == "arc-softmax"
    with pytest.raises(ConfigError, match=r"optim: unknown key\(s\)"):
        TrainConfig.from_dict({"optim": {"learning_rate": 1}})
    with pytest.raises(ConfigError, match="unknown config sections"):
        TrainConfig.from_dict({"trainer": {}})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot parse"):
        TrainConfig.load(tmp_path / "bad.json")
    assert json.loads(path.read_text())["model"]["input_size"] == 144


def test_resume_compatibility_lists_differences():
    a = cfg().validate()
    b = cfg(optim={"iters": 20000, "milestones": [6000, 8000]}, run={"device": "cpu"}).validate()
    b.resume_compatible(a)  # longer run / other device: fine
    c = cfg(hsst={"queue_size": 64}, loss={"name": "triplet"}).validate()
    with pytest.raises(ConfigError, match="hsst.queue_size: 128 -> 64.*|loss.name"):
        c.resume_compatible(a)


def test_command_line_names_the_options_that_define_the_run():
    cfg = TrainConfig.from_dict({"method": "hsst", "data": {"data": "data/lfw 112", "nir_transform": "nir-sim+mask"},
                                 "optim": {"iters": 300, "batch_size": 32, "lr": 0.001},
                                 "hsst": {"ema": 0.97}, "model": {"init": "runs/pre/probe_net.pt"}})
    line = cfg.command_line()
    assert line.startswith("hsst-train --method hsst --data 'data/lfw 112' --nir-transform nir-sim+mask")
    assert "--iters 300" in line and "--init runs/pre/probe_net.pt" in line and "--ema 0.97" in line
    assert "--teacher" not in TrainConfig.from_dict({"method": "plain"}).command_line()


def test_yaml_numbers_written_as_yaml_11_strings_are_read_as_numbers(tmp_path):
    """YAML 1.1 (PyYAML) loads ``lr: 5e-4`` as the string '5e-4': the config reads it as the number it is."""
    path = tmp_path / "train.yaml"
    path.write_text(f"method: hsst\ndata: {{data: {tmp_path}}}\noptim: {{lr: 5e-4, iters: 2e3, batch_size: 32}}\n")
    config = TrainConfig.load(path).validate()
    assert config.optim.lr == 5e-4 and config.optim.iters == 2000 and isinstance(config.optim.iters, int)


@pytest.mark.parametrize("section,value,match", [
    ({"optim": {"lr": "fast"}}, None, r"optim\.lr must be a number, got 'fast'"),
    ({"optim": {"iters": 2.5}}, None, r"optim\.iters must be an integer"),
    ({"data": {"augment": "yes"}}, None, r"data\.augment must be true or false"),
    ({"optim": {"lr": None}}, None, r"optim\.lr must not be empty"),
])
def test_wrong_value_types_are_named(tmp_path, section, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({"method": "hsst", **section})


def test_backbone_choices_are_the_model_registrys_names_and_aliases(tmp_path):
    """``iresnet50`` is the registry's own alias of ``resnet50``: the config accepts it and stores the name."""
    from hsst.train.config import BACKBONES
    from hsst.train.models import list_backbones

    assert BACKBONES == tuple(list_backbones(include_aliases=True)) and "iresnet50" in BACKBONES
    path = tmp_path / "train.yaml"
    path.write_text(f"method: plain\ndata: {{data: {tmp_path}}}\nmodel: {{backbone: iresnet50}}\n")
    assert TrainConfig.load(path).validate().model.backbone == "resnet50"
    with pytest.raises(ConfigError, match="unknown --backbone 'vgg'; choose one of .*iresnet50"):
        cfg(model={"backbone": "vgg"}).validate()


def test_init_checkpoint_sets_its_network():
    """``--init CHECKPOINT`` fine-tunes the checkpoint's network (the shipped model: mobilefacenet_tf, 192-d)."""
    default_checkpoint = default_embedding_model().with_suffix(".pt")
    c = cfg(model={"init": str(default_checkpoint)}).validate()
    assert (c.model.backbone, c.model.embedding_dim) == ("mobilefacenet_tf", 192)
    with pytest.raises(ConfigError, match="loads into --backbone mobilefacenet_tf, not resnet50"):
        cfg(model={"init": str(default_checkpoint), "backbone": "resnet50"}).validate()
