import pytest
import torch
from torch import nn

from hsst.core.errors import ConfigError, ModelError
from hsst.train.siamese import ema_update, make_gallery_net
from hsst.train.models import create_backbone


def tiny(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.PReLU(4), nn.Dropout(0.5), nn.Linear(4, 2))
    with torch.no_grad():           # every parameter random (BN scale/shift and PReLU slopes included)
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    net.train()
    net(torch.randn(8, 3))          # non-trivial running statistics, num_batches_tracked = 1
    return net


def test_make_gallery_net():
    probe = tiny(0)
    gallery = make_gallery_net(probe)
    assert gallery is not probe and not gallery.training
    assert all(not p.requires_grad for p in gallery.parameters())
    assert all(p.requires_grad for p in probe.parameters()) and probe.training
    for (n, g), (_, p) in zip(gallery.state_dict().items(), probe.state_dict().items()):
        assert torch.equal(g, p), n
        assert g.data_ptr() != p.data_ptr()


def test_gallery_stays_in_eval_mode():
    probe = tiny(0)
    holder = nn.ModuleDict({"probe": probe, "gallery": make_gallery_net(probe)})
    holder.train()
    assert probe.training
    assert not any(m.training for m in holder["gallery"].modules())
    holder["gallery"].train(True)
    assert not holder["gallery"].training
    # eval mode: a sample's gallery feature does not depend on its batch (BN running stats, no dropout)
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.allclose(holder["gallery"](x)[:1], holder["gallery"](x[:1]), atol=1e-6)


def test_ema_matches_hand_formula():
    probe = tiny(0)
    gallery = make_gallery_net(probe)
    other = tiny(1)
    probe.load_state_dict(other.state_dict())   # probe moved on (incl. BN stats); gallery still the old one
    probe[1].num_batches_tracked.fill_(5)
    g0 = {k: v.clone() for k, v in gallery.state_dict().items()}
    decay = 0.9
    ema_update(gallery, probe, decay)
    for name, value in gallery.state_dict().items():
        p = probe.state_dict()[name]
        if value.is_floating_point():   # parameters and running_mean / running_var
            expected = (decay * g0[name].double() + (1 - decay) * p.double()).float()
            assert torch.allclose(value, expected, rtol=1e-6, atol=1e-7), name
            assert not torch.equal(value, p), name
        else:                           # num_batches_tracked: copied
            assert torch.equal(value, p), name
    assert gallery[1].num_batches_tracked.item() == 5


def test_decay_limits_and_repeated_updates():
    probe = tiny(0)
    gallery = make_gallery_net(tiny(1))
    ema_update(gallery, probe, decay=1.0)
    assert torch.equal(gallery[0].weight, tiny(1)[0].weight)
    # n updates with a fixed probe: g_n - p = decay^n (g_0 - p)
    g0 = gallery[0].weight.clone()
    for _ in range(10):
        ema_update(gallery, probe, decay=0.5)
    assert torch.allclose(gallery[0].weight - probe[0].weight, 0.5 ** 10 * (g0 - probe[0].weight), atol=1e-7)
    ema_update(gallery, probe, decay=0.0)
    assert torch.equal(gallery[0].weight, probe[0].weight)


def test_no_grad_and_probe_untouched():
    probe = tiny(0)
    gallery = make_gallery_net(tiny(1))
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    ema_update(gallery, probe)
    assert all(torch.equal(v, before[k]) for k, v in probe.state_dict().items())
    assert all(p.grad_fn is None for p in gallery.parameters())


def test_errors():
    with pytest.raises(ConfigError, match="decay"):
        ema_update(tiny(0), tiny(0), decay=1.5)
    with pytest.raises(ModelError, match="differ"):
        ema_update(tiny(0), nn.Sequential(nn.Linear(3, 4)), decay=0.9)


def test_mobilefacenet_gallery():
    probe = create_backbone("mobilefacenet", embedding_dim=64)
    gallery = make_gallery_net(probe)
    assert gallery.arch == "mobilefacenet" and gallery.embedding_dim == 64
    with torch.no_grad():
        probe.conv1.conv.weight.add_(1.0)
    w0 = gallery.conv1.conv.weight.clone()
    ema_update(gallery, probe, decay=0.999)
    assert torch.allclose(gallery.conv1.conv.weight, 0.999 * w0 + 0.001 * probe.conv1.conv.weight, atol=1e-6)
    with torch.no_grad():
        assert gallery(torch.randn(1, 1, 112, 112)).shape == (1, 64)   # batch of 1 works: eval BN
