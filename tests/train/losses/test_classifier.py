import pytest
import torch
import torch.nn.functional as F

from hsst.core.errors import ConfigError, InputError
from hsst.train.losses import CosineClassifier, create_loss


@pytest.mark.parametrize("name, margin", [("softmax", 0.0), ("am-softmax", 0.35)])
def test_equals_cross_entropy_on_cosine_logits(name, margin):
    torch.manual_seed(0)
    head = CosineClassifier(16, 5, loss=name, scale=30.0)
    feats, labels = torch.randn(6, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    cosine = F.normalize(feats) @ F.normalize(head.weight).t()
    logits = 30.0 * (cosine - margin * F.one_hot(labels, 5))
    assert head(feats, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert torch.allclose(head.cosine(feats), cosine, atol=1e-6)


def test_arc_classifier_uses_arc_logit():
    torch.manual_seed(1)
    head = CosineClassifier(8, 4, loss=create_loss("arc-softmax", scale=16.0))
    feats, labels = torch.randn(3, 8), torch.tensor([3, 0, 1])
    cosine = head.cosine(feats)
    target = head.loss.positive_logit(cosine[torch.arange(3), labels])
    logits = (16.0 * cosine).scatter(1, labels[:, None], target[:, None])
    assert head(feats, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


def test_training_steps_reduce_loss():
    torch.manual_seed(0)
    head = CosineClassifier(8, 3, loss="am-softmax")
    feats = torch.randn(12, 8, requires_grad=True)
    labels = torch.arange(12) % 3
    opt = torch.optim.SGD([feats, *head.parameters()], lr=0.5)
    first = head(feats, labels)
    for _ in range(20):
        opt.zero_grad()
        loss = head(feats, labels)
        loss.backward()
        opt.step()
    assert loss.item() < first.item()


def test_errors():
    with pytest.raises(ConfigError, match="batch_negative_mask"):
        CosineClassifier(8, 3, loss="triplet")
    head = CosineClassifier(8, 3)
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        head(torch.randn(2, 8), torch.tensor([0, 3]))
    with pytest.raises(InputError):
        head(torch.randn(2, 8), torch.tensor([0.0, 1.0]))
