import math

import pytest
import torch

from hsst.train.losses import AMSoftmaxLoss, SoftmaxLoss


def unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def cos(deg):
    return math.cos(math.radians(deg))


def test_hand_computed_value():
    s, m = 10.0, 0.35
    a, p = torch.tensor([unit(0)]), torch.tensor([unit(30)])
    q = torch.tensor([unit(60), unit(150)])
    pos = math.exp(s * (cos(30) - m))
    expected = -math.log(pos / (pos + math.exp(s * cos(60)) + math.exp(s * cos(150))))
    assert AMSoftmaxLoss(scale=s, margin=m)(a, p, q).item() == pytest.approx(expected, rel=1e-5)


def test_zero_margin_is_softmax_and_margin_increases_loss():
    torch.manual_seed(0)
    a, p, q = torch.randn(5, 8), torch.randn(5, 8), torch.randn(7, 8)
    assert AMSoftmaxLoss(30, 0.0)(a, p, q).item() == pytest.approx(SoftmaxLoss(30)(a, p, q).item(), rel=1e-6)
    assert AMSoftmaxLoss(30, 0.35)(a, p, q) > AMSoftmaxLoss(30, 0.0)(a, p, q)


def test_empty_prototypes_value():
    # only the positive logit remains: -log(e^x / e^x) = 0
    out = AMSoftmaxLoss()(torch.tensor([unit(0)]), torch.tensor([unit(30)]), torch.zeros(0, 2))
    assert out.item() == pytest.approx(0.0, abs=1e-6)
