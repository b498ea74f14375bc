import pytest
import torch

from hsst.train.models import IResNet, count_parameters, create_backbone


def test_layout_and_alias():
    m = create_backbone("iresnet50")
    assert isinstance(m, IResNet) and m.arch == "resnet50"
    assert [len(m.layer1), len(m.layer2), len(m.layer3), len(m.layer4)] == [3, 4, 14, 3]
    unit = m.layer1[0]
    assert [n for n, _ in unit.named_children()] == ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3", "downsample"]
    assert m.fc.in_features == 512 * 7 * 7
    assert not m.features.weight.requires_grad       # insightface keeps the embedding BN scale at 1


def test_parameter_count_scales_with_input_and_channels():
    base = count_parameters(create_backbone("resnet50"))
    assert count_parameters(create_backbone("resnet50", input_size=144)) - base == 512 * 512 * (9 * 9 - 7 * 7)
    assert count_parameters(create_backbone("resnet50", in_chans=3)) - base == 64 * 9 * 2


@pytest.mark.parametrize("size", [112, 144])
def test_forward(size):
    torch.manual_seed(0)
    m = create_backbone("resnet50", input_size=size, embedding_dim=128).eval()
    assert m.fc.in_features == 512 * (size // 16) ** 2
    with torch.no_grad():
        out = m(torch.randn(1, 1, size, size))
    assert out.shape == (1, 128) and torch.isfinite(out).all()
