import pytest
from torch import nn

from hsst.core.errors import ConfigError
from hsst.train.models import create_backbone, list_backbones, register_backbone
from hsst.train.models.registry import resolve_backbone_name


def test_registered_names_and_alias():
    assert {"mobilefacenet", "resnet50"} <= set(list_backbones())
    assert "iresnet50" in list_backbones(include_aliases=True)
    assert resolve_backbone_name("IResNet50") == "resnet50"


def test_factory_sets_attributes():
    m = create_backbone("mobilefacenet", input_size=144, embedding_dim=128, in_chans=3)
    assert (m.arch, m.input_size, m.embedding_dim, m.in_chans) == ("mobilefacenet", 144, 128, 3)
    assert m.arch_kwargs == {"input_size": 144, "embedding_dim": 128, "in_chans": 3}


def test_unknown_name_lists_known():
    with pytest.raises(ConfigError, match="mobilefacenet.*resnet50"):
        create_backbone("vit_huge")


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 100}, "multiple of 16"),
    ({"in_chans": 2}, "in_chans"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"dropout": 0.1}, "does not take"),         # mobilefacenet has no dropout option
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_backbone("mobilefacenet", **kwargs)


def test_duplicate_registration_rejected():
    with pytest.raises(ConfigError, match="already registered"):
        @register_backbone
        def mobilefacenet(input_size=112, embedding_dim=512, in_chans=1) -> nn.Module:  # noqa: F811
            return nn.Identity()
