import cv2
import numpy as np
import pytest
import torch

from hsst.core.errors import InputError
from hsst.core.image import read_image
from hsst.core.preprocess import to_input
from hsst.train.models import count_parameters, create_backbone, meta_for, model_summary

# The FaceX-Zoo / TreB1eN MobileFaceNet with RGB input at 112x112 (7x7 GDC), 512-d embedding, PReLU slopes
# counted: the widely quoted 1,200,512 parameters.
RGB_112 = 1_200_512


def test_parameter_count_reference_configuration():
    assert count_parameters(create_backbone("mobilefacenet", input_size=112, in_chans=3)) == RGB_112


@pytest.mark.parametrize("in_chans, size", [(1, 112), (3, 144), (1, 144)])
def test_parameter_count_other_configurations(in_chans, size):
    # only the stem conv (64 x in_chans x 3 x 3) and the GDC kernel (512 x k x k, k = size / 16) change
    expected = RGB_112 - 64 * 9 * (3 - in_chans) + 512 * ((size // 16) ** 2 - 7 ** 2)
    assert count_parameters(create_backbone("mobilefacenet", input_size=size, in_chans=in_chans)) == expected


def test_layout_matches_paper_and_facex_zoo_names():
    m = create_backbone("mobilefacenet", input_size=144)
    sd = m.state_dict()
    assert sd["conv1.conv.weight"].shape == (64, 1, 3, 3)
    assert sd["conv_6_dw.conv.weight"].shape == (512, 1, 9, 9)            # GDC 9x9 at 144
    assert sd["linear.weight"].shape == (512, 512)
    assert "bn.running_mean" in sd
    # bottleneck repeats (paper table: 64x5, 128x1, 128x6, 128x1, 128x2)
    assert 1 + len(m.conv_3.model) == 5 and len(m.conv_4.model) == 6 and len(m.conv_5.model) == 2
    # expansion widths t=2 / 4: hidden channels of each stage
    blocks = [m.conv_23, m.conv_34, m.conv_4.model[0], m.conv_45, m.conv_5.model[0]]
    assert [b.conv.conv.out_channels for b in blocks] == [128, 256, 256, 512, 256]


@pytest.mark.parametrize("in_chans, size", [(1, 112), (3, 144)])
def test_forward_shape(in_chans, size):
    torch.manual_seed(0)
    m = create_backbone("mobilefacenet", input_size=size, in_chans=in_chans, embedding_dim=256)
    out = m(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 256) and torch.isfinite(out).all()


def test_wrong_input_is_clear():
    m = create_backbone("mobilefacenet").eval()
    with pytest.raises(InputError, match=r"\(N, 1, 112, 112\).*to_input"):
        m(torch.zeros(1, 1, 144, 144))
    with pytest.raises(InputError):
        m(torch.zeros(1, 3, 112, 112))


def test_summary_has_count():
    text = model_summary(create_backbone("mobilefacenet", in_chans=3))
    assert "1,200,512" in text and "mobilefacenet" in text and "conv_6_dw" in text


def test_real_face_through_preprocessing(orl_dir):
    """A real ORL face (gray 92x112, resized to the input) through the metadata's preprocessing."""
    m = create_backbone("mobilefacenet").eval()
    meta = meta_for(m)
    crops = [cv2.resize(read_image(orl_dir / "s1" / f"{i}.pgm"), (112, 112)) for i in (1, 2)]
    x = torch.from_numpy(to_input(crops, meta.preprocess))
    with torch.no_grad():
        emb = m(x)
    assert emb.shape == (2, 512) and torch.isfinite(emb).all()
    assert not np.allclose(emb.norm(dim=1).numpy(), 1.0)   # raw, not normalised
