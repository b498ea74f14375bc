import math

import pytest
import torch

from hsst.train.losses import ArcSoftmaxLoss


def unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def cos(deg):
    return math.cos(math.radians(deg))


def test_hand_computed_value():
    s, m = 8.0, 0.5
    a, p = torch.tensor([unit(0)]), torch.tensor([unit(40)])
    q = torch.tensor([unit(70), unit(-20)])
    pos = math.exp(s * math.cos(math.radians(40) + m))
    expected = -math.log(pos / (pos + math.exp(s * cos(70)) + math.exp(s * cos(-20))))
    assert ArcSoftmaxLoss(scale=s, margin=m)(a, p, q).item() == pytest.approx(expected, rel=1e-5)


def test_fallback_branch_when_theta_plus_margin_exceeds_pi():
    s, m = 8.0, 0.5
    theta = 170.0                                   # 2.967 rad + 0.5 > pi
    assert math.radians(theta) + m > math.pi
    loss = ArcSoftmaxLoss(scale=s, margin=m)
    logit = loss.positive_logit(torch.tensor([cos(theta)]))
    assert logit.item() == pytest.approx(s * (cos(theta) - math.sin(math.pi - m) * m), rel=1e-5)
    # below the threshold the exact cos(theta + m) is used
    logit = loss.positive_logit(torch.tensor([cos(100)]))
    assert logit.item() == pytest.approx(s * math.cos(math.radians(100) + m), rel=1e-5)
    # and the full loss with a prototype in the fallback branch
    a, p, q = torch.tensor([unit(0)]), torch.tensor([unit(theta)]), torch.tensor([unit(90)])
    pos = math.exp(s * (cos(theta) - math.sin(math.pi - m) * m))
    assert loss(a, p, q).item() == pytest.approx(-math.log(pos / (pos + math.exp(s * cos(90)))), rel=1e-5)


def test_gradient_finite_at_identical_and_opposite_positive():
    a = torch.tensor([unit(0), unit(10)], requires_grad=True)
    p = torch.tensor([unit(0), unit(190)])          # cos = 1 and cos = -1: sqrt(1 - cos^2) = 0
    q = torch.tensor([unit(50)])
    ArcSoftmaxLoss()(a, p, q).backward()
    assert torch.isfinite(a.grad).all()
