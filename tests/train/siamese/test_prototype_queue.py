import pytest
import torch
import torch.nn.functional as F

from hsst.core.errors import ConfigError, InputError
from hsst.train.siamese import PrototypeQueue
from hsst.train.losses import create_loss


def feats(values, dim=3):
    """Rows (v, 1, 0...) so each row is recognisable after normalisation by its first component."""
    x = torch.zeros(len(values), dim)
    x[:, 0] = torch.tensor(values, dtype=torch.float32)
    x[:, 1] = 1.0
    return x


def firsts(q):
    return [round(v, 4) for v in (q.features()[:, 0] / q.features()[:, 1]).tolist()]


def test_fifo_order_and_normalisation():
    q = PrototypeQueue(4, 3)
    assert len(q) == 0 and q.features().shape == (0, 3) and q.labels().shape == (0,)
    q.enqueue(feats([1, 2, 3]), torch.tensor([10, 20, 30]))
    assert len(q) == 3 and firsts(q) == [1, 2, 3] and q.labels().tolist() == [10, 20, 30]
    q.enqueue(feats([4, 5]), torch.tensor([40, 50]))        # drops the oldest (1)
    assert len(q) == 4 and q.is_full
    assert firsts(q) == [2, 3, 4, 5] and q.labels().tolist() == [20, 30, 40, 50]
    assert torch.allclose(q.features().norm(dim=1), torch.ones(4))


def test_batch_larger_than_queue_keeps_newest():
    q = PrototypeQueue(3, 3)
    q.enqueue(feats([1]), torch.tensor([1]))
    q.enqueue(feats([2, 3, 4, 5, 6]), torch.tensor([2, 3, 4, 5, 6]))
    assert firsts(q) == [4, 5, 6] and q.labels().tolist() == [4, 5, 6]
    q.enqueue(feats([7]), torch.tensor([7]))
    assert firsts(q) == [5, 6, 7]


def test_detached_and_independent_copy():
    q = PrototypeQueue(4, 3)
    x = torch.randn(2, 3, requires_grad=True)
    q.enqueue(x, torch.tensor([0, 1]))
    assert not q.features().requires_grad
    a = torch.randn(2, 3, requires_grad=True)
    protos = q.features()
    loss = create_loss("softmax")(a, torch.randn(2, 3), protos, q.negative_mask(torch.tensor([0, 5])))
    q.enqueue(torch.randn(4, 3), torch.tensor([2, 3, 4, 5]))     # enqueue between forward and backward
    loss.backward()                                             # must not hit an in-place modification error
    assert torch.isfinite(a.grad).all()


def test_negative_mask():
    q = PrototypeQueue(5, 3)
    q.enqueue(torch.randn(3, 3), torch.tensor([7, 8, 7]))
    mask = q.negative_mask(torch.tensor([7, 9]))
    assert mask.dtype == torch.bool and mask.tolist() == [[True, False, True], [False, False, False]]


def test_state_dict_roundtrip_is_exact():
    torch.manual_seed(0)
    q = PrototypeQueue(5, 4)
    for i in range(3):
        q.enqueue(torch.randn(2, 4), torch.tensor([i, i + 10]))
    sd = q.state_dict()
    assert set(sd) == {"queue_features", "queue_labels", "ptr", "count"}
    r = PrototypeQueue(5, 4)
    r.load_state_dict(sd)
    assert torch.equal(r.features(), q.features()) and torch.equal(r.labels(), q.labels()) and len(r) == 5
    new = torch.randn(3, 4)
    q.enqueue(new, torch.tensor([1, 2, 3]))
    r.enqueue(new, torch.tensor([1, 2, 3]))
    assert torch.equal(r.features(), q.features()) and torch.equal(r.labels(), q.labels())


def test_fewer_identities_than_queue_plus_batch():
    """3 identities, queue of 8, batch of 4: the queue is full of same-identity entries; they are masked."""
    torch.manual_seed(0)
    q = PrototypeQueue(8, 16)
    losses = {name: create_loss(name) for name in ("softmax", "am-softmax", "arc-softmax", "triplet")}
    for step in range(6):
        labels = torch.tensor([0, 1, 2, step % 3])
        anchor = torch.randn(4, 16, requires_grad=True)
        positive = torch.randn(4, 16)
        mask = q.negative_mask(labels)
        for loss in losses.values():
            value = loss(anchor, positive, q.features(), mask)
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(anchor.grad).all()
        q.enqueue(positive, labels)
    assert len(q) == 8 and set(q.labels().tolist()) <= {0, 1, 2}


def test_errors():
    with pytest.raises(ConfigError):
        PrototypeQueue(0, 3)
    q = PrototypeQueue(4, 3)
    with pytest.raises(InputError, match=r"\(B, 3\)"):
        q.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="integer"):
        q.enqueue(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError):
        q.enqueue(torch.randn(2, 3), torch.tensor([0]))
    with pytest.raises(InputError):
        q.negative_mask(torch.tensor([[1]]))


def test_moves_with_module_to():
    q = PrototypeQueue(4, 3).to(torch.float64)
    q.enqueue(F.normalize(torch.randn(2, 3)), torch.tensor([0, 1]))
    assert q.features().dtype == torch.float64
