import math

import pytest
import torch

from hsst.train.losses import TripletLoss


def unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def cos(deg):
    return math.cos(math.radians(deg))


A, P = torch.tensor([unit(0)]), torch.tensor([unit(60)])
Q = torch.tensor([unit(45), unit(90), unit(30)])


def test_hard_and_all_hand_computed():
    m = 0.3
    hinges = [max(0.0, m - cos(60) + cos(d)) for d in (45, 90, 30)]   # 0.507, 0, 0.666
    assert TripletLoss(m, "hard")(A, P, Q).item() == pytest.approx(max(hinges), rel=1e-5)
    assert TripletLoss(m, "all")(A, P, Q).item() == pytest.approx(sum(hinges) / 3, rel=1e-5)


def test_mask_excludes_same_identity():
    m = 0.3
    mask = torch.tensor([[False, False, True]])    # the 30 deg prototype is the anchor's identity
    hard = max(0.0, m - cos(60) + cos(45))
    assert TripletLoss(m, "hard")(A, P, Q, mask).item() == pytest.approx(hard, rel=1e-5)
    assert TripletLoss(m, "all")(A, P, Q, mask).item() == pytest.approx(hard / 2, rel=1e-5)


def test_satisfied_triplets_give_zero_and_mean_over_anchors():
    a = torch.tensor([unit(0), unit(0)])
    p = torch.tensor([unit(5), unit(60)])
    q = torch.tensor([unit(90)])
    # anchor 0: 0.3 - cos5 + 0 < 0 -> 0; anchor 1: 0.3 - 0.5 + 0 < 0 -> 0
    assert TripletLoss(0.3)(a, p, q).item() == 0.0
    # with margin 0.6 anchor 1 is active: 0.6 - 0.5 = 0.1
    assert TripletLoss(0.6)(a, p, q).item() == pytest.approx(0.1 / 2, rel=1e-5)
