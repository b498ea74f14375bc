import math

import pytest
import torch

from hsst.core.errors import ConfigError, InputError
from hsst.train.losses import (LOSS_DEFAULTS, LOSS_NAMES, AMSoftmaxLoss, ArcSoftmaxLoss, SoftmaxLoss,
                               batch_negative_mask, create_loss)


def unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_factory_names_and_defaults():
    assert LOSS_NAMES == ("softmax", "am-softmax", "arc-softmax", "triplet")
    assert LOSS_DEFAULTS["softmax"] == {"scale": 30.0}
    assert LOSS_DEFAULTS["am-softmax"] == {"scale": 30.0, "margin": 0.35}
    assert LOSS_DEFAULTS["arc-softmax"] == {"scale": 30.0, "margin": 0.5}
    assert LOSS_DEFAULTS["triplet"] == {"margin": 0.3, "mining": "hard"}
    assert isinstance(create_loss("softmax"), SoftmaxLoss)
    assert isinstance(create_loss("AM_softmax", scale=16, margin=None), AMSoftmaxLoss)
    assert create_loss("am-softmax", scale=16, margin=None).margin == 0.35     # None -> default
    assert isinstance(create_loss("arc-softmax"), ArcSoftmaxLoss)
    assert create_loss("triplet", mining="all").mining == "all"


@pytest.mark.parametrize("name, kwargs, match", [
    ("focal", {}, "unknown loss"),
    ("triplet", {"scale": 30}, "does not take"),
    ("softmax", {"scale": 0}, "scale"),
    ("triplet", {"mining": "semi"}, "mining"),
    ("arc-softmax", {"margin": 2.0}, "margin"),
])
def test_factory_errors(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_loss(name, **kwargs)


def test_batch_negative_mask():
    mask = batch_negative_mask(torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1, 5]))
    assert mask.tolist() == [[False, True, False, False], [True, False, True, False], [False] * 4]
    with pytest.raises(InputError):
        batch_negative_mask(torch.tensor([0.0]), torch.tensor([1]))


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(4, 3), None), "same shape"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 2), None), r"prototypes must be .*\(K, 3\)"),
    ((torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.zeros(4, 3), None), "anchor"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 4)), "bool"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 3, dtype=torch.bool)), r"\(2, 4\)"),
    ((torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(4, 3), None), "empty batch"),
])
def test_input_errors(args, match):
    with pytest.raises(InputError, match=match):
        SoftmaxLoss()(*args)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_scale_invariance_and_none_prototypes(name):
    loss = create_loss(name)
    a = torch.tensor([unit(0), unit(100)])
    p = torch.tensor([unit(20), unit(130)])
    q = torch.tensor([unit(40), unit(90), unit(200)])
    ref = loss(a, p, q)
    assert torch.allclose(loss(3 * a, 0.5 * p, 7 * q), ref, atol=1e-6)   # inputs are L2-normalised
    assert loss(a, p, None).item() == pytest.approx(loss(a, p, q[:0]).item())


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_masked_equals_removed_and_gradients_finite(name):
    torch.manual_seed(0)
    loss = create_loss(name)
    a = torch.randn(4, 8, requires_grad=True)
    p, q = torch.randn(4, 8), torch.randn(6, 8)
    a_labels, q_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 9, 1, 0, 8, 7])
    masked = loss(a, p, q, batch_negative_mask(a_labels, q_labels))
    # removing the same-identity prototypes row by row gives the same value
    per_row = [loss(a[i:i + 1], p[i:i + 1], q[q_labels != a_labels[i]]) for i in range(4)]
    assert masked.item() == pytest.approx(torch.stack(per_row).mean().item(), abs=1e-5)
    masked.backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_masked_rows_and_empty_queue_are_finite(name):
    loss = create_loss(name)
    a = torch.randn(3, 4, requires_grad=True)
    p, q = torch.randn(3, 4), torch.randn(5, 4)
    all_masked = loss(a, p, q, torch.ones(3, 5, dtype=torch.bool))
    empty = loss(a, p, torch.zeros(0, 4), torch.zeros(3, 0, dtype=torch.bool))
    (all_masked + empty).backward()
    assert torch.isfinite(a.grad).all()
    if name in ("softmax", "triplet"):      # no negative: no loss (margin losses keep the positive term)
        assert all_masked.item() == 0.0 and empty.item() == 0.0
    assert torch.isfinite(all_masked) and torch.isfinite(empty)
    assert all_masked.item() == pytest.approx(empty.item(), abs=1e-6)


def test_half_precision_inputs_computed_in_float32():
    a, p, q = (torch.randn(2, 4).half() for _ in range(3))
    out = SoftmaxLoss()(a, p, q)
    assert out.dtype == torch.float32 and torch.isfinite(out)
