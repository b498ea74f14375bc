import math

import pytest
import torch

from hsst.train.losses import SoftmaxLoss


def unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def cos(deg):
    return math.cos(math.radians(deg))


def test_hand_computed_value():
    s = 2.0
    # anchor at 0 deg, positive at 30, prototypes at 60, 90, 180
    a, p = torch.tensor([unit(0)]), torch.tensor([unit(30)])
    q = torch.tensor([unit(60), unit(90), unit(180)])
    num = math.exp(s * cos(30))
    expected = -math.log(num / (num + math.exp(s * cos(60)) + math.exp(s * cos(90)) + math.exp(s * cos(180))))
    assert SoftmaxLoss(scale=s)(a, p, q).item() == pytest.approx(expected, rel=1e-5)


def test_mask_drops_the_prototype_and_batch_mean():
    s = 4.0
    a = torch.tensor([unit(0), unit(90)])
    p = torch.tensor([unit(10), unit(120)])
    q = torch.tensor([unit(45), unit(5)])
    mask = torch.tensor([[False, True], [False, False]])   # prototype 1 is anchor 0's own identity
    row0 = -math.log(math.exp(s * cos(10)) / (math.exp(s * cos(10)) + math.exp(s * cos(45))))
    den1 = math.exp(s * cos(30)) + math.exp(s * cos(45)) + math.exp(s * cos(85))
    row1 = -math.log(math.exp(s * cos(30)) / den1)
    assert SoftmaxLoss(scale=s)(a, p, q, mask).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_large_scale_is_stable():
    a, p = torch.tensor([unit(0)]), torch.tensor([unit(179)])
    q = torch.tensor([unit(0.5)])
    out = SoftmaxLoss(scale=1000.0)(a, p, q)       # e^{1000} overflows without log-sum-exp
    assert out.item() == pytest.approx(1000.0 * (cos(0.5) - cos(179)), rel=1e-4)
