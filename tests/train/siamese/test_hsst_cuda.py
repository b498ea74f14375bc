"""The HSST step pieces on a CUDA device under autocast (skipped without a GPU)."""
import pytest
import torch

from hsst.train.siamese import PrototypeQueue, ema_update, make_gallery_net
from hsst.train.losses import create_loss
from hsst.train.models import create_backbone

pytestmark = pytest.mark.gpu


def test_one_hsst_step_on_cuda():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    probe = create_backbone("mobilefacenet", embedding_dim=64).to(dev)
    gallery = make_gallery_net(probe)
    queue = PrototypeQueue(16, 64).to(dev)
    queue.enqueue(torch.randn(8, 64, device=dev), torch.arange(8, device=dev))
    x, labels = torch.randn(4, 1, 112, 112, device=dev), torch.tensor([0, 1, 20, 21], device=dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        anchor = probe(x)
        with torch.no_grad():
            positive = gallery(x)
    loss = create_loss("arc-softmax")(anchor, positive, queue.features(), queue.negative_mask(labels))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in probe.parameters() if p.grad is not None)
    ema_update(gallery, probe, 0.999)
    queue.enqueue(positive, labels)
    assert len(queue) == 12 and queue.features().device.type == "cuda"
