"""Training methods: what one optimisation step computes (HSST, the plain baseline, VIS pretraining).

The :class:`~hsst.train.trainer.Trainer` owns the loop (data, optimizer, schedule, AMP, checkpoints, logs);
a :class:`TrainingMethod` owns the networks and state that are specific to a method and turns one batch into
a loss. Methods are registered by name (``hsst``, ``plain``, ``plain-triplet``, ``pretrain``,
``pretrain-distill``); :func:`method_key` maps a :class:`~hsst.train.config.TrainConfig` to one of them.

Every method keeps its trainable parameters in ``self.net`` (the module DDP wraps: the probe-net alone, or the
probe-net with a head), so gradient all-reduce covers heads too.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Type

import torch
from torch import nn
from torch.utils.data import Dataset
import torch.nn.functional as F

from hsst.core.registry import Registry
from hsst.train.config import TrainConfig
from hsst.train.data.datasets import ImageDataset
from hsst.train.distributed import DistContext
from hsst.train.siamese import PrototypeQueue, ema_update, make_gallery_net
from hsst.train.losses import CosineClassifier, batch_negative_mask, create_loss

logger = logging.getLogger(__name__)

Batch = Tuple[torch.Tensor, ...]
#: Training methods by name (``hsst``, ``plain``, ``plain-triplet``, ``distill``, ``pretrain``...).
METHODS: Registry[type] = Registry("training method")


def register_method(name: str) -> Callable[[Type["TrainingMethod"]], Type["TrainingMethod"]]:
    """Class decorator registering a training method under ``name`` (also its ``name`` attribute)."""

    def decorate(cls: Type["TrainingMethod"]) -> Type["TrainingMethod"]:
        cls.name = name
        return METHODS.register(cls, name=name)

    return decorate


def method_key(config: TrainConfig) -> str:
    """Registry key of the method a config asks for."""
    if config.method == "hsst":
        return "hsst"
    if config.method == "plain":
        return "plain-triplet" if config.loss.name == "triplet" else "plain"
    if config.method == "distill":
        return "distill"
    return "pretrain-distill" if config.teacher.name else "pretrain"


def create_method(config: TrainConfig, probe: nn.Module, ctx: "MethodContext") -> "TrainingMethod":
    return METHODS.get(method_key(config))(config, probe, ctx)


@dataclass
class MethodContext:
    """What a method needs to know about the run besides its config.

    Attributes:
        device: where tensors live.
        dist: rank / world size and collectives.
        num_classes: identities in the training index (classifier heads).
        autocast: a context-manager factory (mixed precision on CUDA, a no-op elsewhere).
    """

    device: torch.device
    dist: DistContext
    num_classes: int
    autocast: Callable[[], object]


class TrainingMethod:
    """One training method.

    Attributes:
        name: registry name.
        data_kind: ``pairs`` (PairDataset + identity batches) or ``items`` (ImageDataset + item batches).
        modalities: for ``items``: which modalities the ImageDataset pools.
        images_per_sample: images one batch entry contributes (2 for NIR-VIS pairs).
    """

    name = ""
    data_kind = "pairs"
    modalities: Tuple[str, ...] = ("nir", "vis")
    images_per_sample = 2

    def __init__(self, config: TrainConfig, probe: nn.Module, ctx: MethodContext) -> None:
        self.config = config
        self.probe = probe
        self.ctx = ctx
        self.loss_fn = create_loss(config.loss.name, **config.loss.kwargs())
        self.net: nn.Module = probe
        #: state besides the probe-net that a resume must restore (heads, gallery-net, queues).
        self.extra = nn.ModuleDict()

    # ----------------------------------------------------------------------------------------------- setup
    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def wrap(self, wrapper: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap ``self.net`` (DDP)."""
        self.net = wrapper(self.net)

    def to(self, device: torch.device) -> "TrainingMethod":
        self.extra.to(device)
        return self

    def prepare(self, next_batch: Callable[[], Batch], dataset: Optional[Dataset] = None) -> None:
        """Run once before step 1 of a fresh run (not on resume); ``dataset`` is the run's training data."""

    # ------------------------------------------------------------------------------------------------ step
    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Total loss (to backpropagate) and named detached parts for the log."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Runs after each optimizer step: probe BatchNorm statistics are averaged over ranks."""
        if self.ctx.dist.enabled:
            bufs = [b for b in _unwrap(self.probe).buffers()]
            self.ctx.dist.average_(bufs)

    def train(self) -> None:
        self.net.train()

    # ----------------------------------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.extra.state_dict().items()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.extra.load_state_dict(state, strict=True)


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(getattr(model, "module", None), nn.Module) and not hasattr(model, "arch"):
        model = model.module
    return model


class _HeadNet(nn.Module):
    """Probe-net + head in one module, so DDP all-reduces the head's gradients too."""

    def __init__(self, probe: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.probe = probe
        self.head = head

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        emb = self.probe(images)
        return emb, self.head(emb, targets)


# ================================================================================================== HSST
@register_method("hsst")
class HsstMethod(TrainingMethod):
    """Heterogeneous semi-siamese training (paper, section II-A).

    Per step, with a batch of B identities, each with a NIR image ``I_N`` and a VIS image ``I_V``:

    * probe-net (SGD) embeds ``[I_N; I_V]`` in one forward pass (one pass keeps DDP to one forward per
      backward; BatchNorm sees both modalities, as the deployed network does);
    * gallery-net (moving average, eval mode, no gradient) embeds ``[I_N; I_V]``;
    * ``L(I_N, I_V)``: anchor probe(I_N), positive gallery(I_V), negatives the VIS queue;
      ``L(I_V, I_N)``: anchor probe(I_V), positive gallery(I_N), negatives the NIR queue; queue entries of the
      anchor's own identity are masked out. The total loss is the **sum** of both (each already averaged over
      the batch), as in the paper where both are minimised together;
    * after the optimizer step: ``gallery <- ema * gallery + (1 - ema) * probe`` (parameters and BatchNorm
      running statistics, see :func:`hsst.train.siamese.ema_update`), then the batch's gallery features are
      enqueued (NIR features into the NIR queue, VIS into the VIS queue). Under DDP they are all-gathered first,
      so every rank holds identical queues. The queues used by a step's loss therefore never contain that
      step's own positives.

    Before step 1 of a fresh run, ``ceil(queue_size / global batch)`` warm-up batches (no gradient, no optimizer
    step; drawn from the sampler, so a resumed run never repeats them) first re-estimate the BatchNorm running
    statistics of probe- and gallery-net (``hsst.calibrate_bn``, see :meth:`_calibrate_bn`) and then fill both
    queues with gallery features.

    With ``hsst.teacher_weight`` w > 0, a frozen copy of the initial network (the teacher) embeds the VIS image
    and ``w * [(1 - cos(probe(I_N), t)) + (1 - cos(probe(I_V), t))]`` is added: from a strong pretrained init,
    the prototypes alone let the network drift from what it knew of VIS faces; the teacher term holds it there.
    """

    data_kind = "pairs"
    images_per_sample = 2

    def __init__(self, config: TrainConfig, probe: nn.Module, ctx: MethodContext) -> None:
        super().__init__(config, probe, ctx)
        dim = _unwrap(probe).embedding_dim
        self.ema = config.hsst.ema
        self.extra["gallery"] = make_gallery_net(probe)
        self.extra["nir_queue"] = PrototypeQueue(config.hsst.queue_size, dim)
        self.extra["vis_queue"] = PrototypeQueue(config.hsst.queue_size, dim)
        self.teacher_weight = config.hsst.teacher_weight
        if self.teacher_weight:
            self.extra["teacher"] = make_gallery_net(probe)  # frozen copy of the init, never updated
        self._pending: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    @property
    def gallery(self) -> nn.Module:
        return self.extra["gallery"]

    @property
    def nir_queue(self) -> PrototypeQueue:
        return self.extra["nir_queue"]  # type: ignore[return-value]

    @property
    def vis_queue(self) -> PrototypeQueue:
        return self.extra["vis_queue"]  # type: ignore[return-value]

    @torch.no_grad()
    def _gallery_features(self, nir: torch.Tensor, vis: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with self.ctx.autocast():
            feats = self.gallery(torch.cat([nir, vis], dim=0)).float()
        return feats[: nir.shape[0]], feats[nir.shape[0]:]

    def _enqueue(self, g_nir: torch.Tensor, g_vis: torch.Tensor, labels: torch.Tensor) -> None:
        dist = self.ctx.dist
        g_nir, g_vis, labels = dist.all_gather(g_nir), dist.all_gather(g_vis), dist.all_gather(labels)
        self.nir_queue.enqueue(g_nir, labels)
        self.vis_queue.enqueue(g_vis, labels)

    def prepare(self, next_batch: Callable[[], Batch], dataset: Optional[Dataset] = None) -> None:
        if not self.config.hsst.prefill:
            return
        global_batch = self.config.optim.batch_size * self.ctx.dist.world_size
        n = math.ceil(self.config.hsst.queue_size / global_batch)
        batches = [next_batch() for _ in range(n)]
        if self.config.hsst.calibrate_bn:
            self._calibrate_bn(batches)
        for nir, vis, labels in batches:
            g_nir, g_vis = self._gallery_features(nir, vis)
            self._enqueue(g_nir, g_vis, labels)
        logger.info("prefilled the NIR and VIS prototype queues with %d warm-up batch(es): %d / %d prototypes",
                    n, len(self.nir_queue), self.nir_queue.size)

    @torch.no_grad()
    def _calibrate_bn(self, batches: List[Batch]) -> None:
        """Re-estimate the probe's BatchNorm running statistics on the warm-up batches and give them to the
        gallery-net: the eval-mode gallery-net then sees statistics of the training data from step 1 (random
        initial statistics (0, 1) make its features degenerate when training from scratch; from a pretrained
        init this adapts the statistics to the target domain, like AdaBN)."""
        probe = _unwrap(self.probe)
        norms = [m for m in probe.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        was_training = probe.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the warm-up batches
        probe.train()
        for nir, vis, _ in batches:
            with self.ctx.autocast():
                probe(torch.cat([nir, vis], dim=0))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        probe.train(was_training)
        self.ctx.dist.average_([b for b in probe.buffers()])
        gallery_buffers = dict(self.gallery.named_buffers())
        for name, buf in probe.named_buffers():
            gallery_buffers[name].copy_(buf)

    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        nir, vis, labels = batch
        g_nir, g_vis = self._gallery_features(nir, vis)
        with self.ctx.autocast():
            emb = self.net(torch.cat([nir, vis], dim=0))
        p_nir, p_vis = emb[: nir.shape[0]], emb[nir.shape[0]:]
        loss_nv = self.loss_fn(p_nir, g_vis, self.vis_queue.features(), self.vis_queue.negative_mask(labels))
        loss_vn = self.loss_fn(p_vis, g_nir, self.nir_queue.features(), self.nir_queue.negative_mask(labels))
        self._pending = (g_nir, g_vis, labels)
        total = loss_nv + loss_vn
        parts = {"loss_nir_vis": loss_nv.detach(), "loss_vis_nir": loss_vn.detach()}
        if self.teacher_weight:
            with torch.no_grad(), self.ctx.autocast():
                target = self.extra["teacher"](vis).float()
            teacher = distillation_loss(p_nir, target) + distillation_loss(p_vis, target)
            total = total + self.teacher_weight * teacher
            parts["loss_teacher"] = teacher.detach()
        return total, parts

    def after_step(self) -> None:
        super().after_step()
        ema_update(self.gallery, self.probe, self.ema)
        if self._pending is not None:
            self._enqueue(*self._pending)
            self._pending = None


# ================================================================================================= plain
@register_method("plain")
class PlainClassifierMethod(TrainingMethod):
    """The paper's baseline: the backbone fine-tuned on pooled NIR + VIS images with a cosine classifier head
    (softmax, AM-softmax or Arc-softmax over the identities)."""

    data_kind = "items"
    modalities = ("nir", "vis")
    images_per_sample = 1

    def __init__(self, config: TrainConfig, probe: nn.Module, ctx: MethodContext) -> None:
        super().__init__(config, probe, ctx)
        head = CosineClassifier(_unwrap(probe).embedding_dim, ctx.num_classes, self.loss_fn)
        self.extra["head"] = head
        self.net = _HeadNet(probe, head)

    def prepare(self, next_batch: Callable[[], Batch], dataset: Optional[Dataset] = None) -> None:
        if self.config.loss.imprint and isinstance(dataset, ImageDataset):
            imprint_head(self.extra["head"], _unwrap(self.probe), dataset, self.ctx.device)

    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, labels = batch
        with self.ctx.autocast():
            emb, loss = self.net(images, labels)
        with torch.no_grad():
            acc = (self.extra["head"].cosine(emb.detach()).argmax(dim=1) == labels).float().mean()
        return loss, {"accuracy": acc}


@torch.no_grad()
def imprint_head(head: CosineClassifier, probe: nn.Module, dataset: ImageDataset, device: torch.device,
                 batch: int = 64) -> int:
    """Set each class weight to the normalised mean embedding of its identity's VIS images (weight imprinting,
    Qi et al. 2018), as the network computes them before fine-tuning; classes without a VIS image keep their
    random start. Every rank computes the same weights (same data, same network). Returns the classes set."""
    was_training = probe.training
    probe.eval()
    sums = torch.zeros(head.num_classes, head.embedding_dim, dtype=torch.float32, device=device)
    vis = [i for i, (_, _, modality) in enumerate(dataset.items) if modality == "vis"]
    for start in range(0, len(vis), batch):
        items = [dataset[(i, 0)] for i in vis[start:start + batch]]
        images = torch.stack([image for image, _ in items]).to(device)
        labels = torch.tensor([label for _, label in items], device=device)
        sums.index_add_(0, labels, F.normalize(probe(images).float(), dim=1))
    seen = sums.norm(dim=1) > 0
    head.weight[seen] = F.normalize(sums[seen], dim=1).to(head.weight.dtype)
    probe.train(was_training)
    logger.info("imprinted %d of %d class weights from %d VIS images", int(seen.sum()), head.num_classes, len(vis))
    return int(seen.sum())


@register_method("plain-triplet")
class PlainTripletMethod(TrainingMethod):
    """Plain baseline with the triplet loss: NIR-VIS pair batches, one network, the other identities' batch
    embeddings as negatives. Both directions, like HSST without gallery-net and queues:
    ``triplet(e_N, e_V, E_V) + triplet(e_V, e_N, E_N)`` (own identity masked)."""

    data_kind = "pairs"
    images_per_sample = 2

    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        nir, vis, labels = batch
        with self.ctx.autocast():
            emb = self.net(torch.cat([nir, vis], dim=0))
        e_nir, e_vis = emb[: nir.shape[0]], emb[nir.shape[0]:]
        mask = batch_negative_mask(labels, labels)
        loss_nv = self.loss_fn(e_nir, e_vis, e_vis, mask)
        loss_vn = self.loss_fn(e_vis, e_nir, e_nir, mask)
        return loss_nv + loss_vn, {"loss_nir_vis": loss_nv.detach(), "loss_vis_nir": loss_vn.detach()}


# ============================================================================================== pretrain
@register_method("pretrain")
class PretrainClassifierMethod(PlainClassifierMethod):
    """VIS pretraining by classification over VIS identity folders (cosine classifier, chosen loss)."""

    modalities = ("vis",)


class _Projection(nn.Module):
    """Student head for distillation: linear map to the teacher's space + the distillation loss."""

    def __init__(self, in_dim: int, out_dim: int, mse_weight: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.mse_weight = mse_weight

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return distillation_loss(self.linear(emb.float()), target, self.mse_weight)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, mse_weight: float = 0.0) -> torch.Tensor:
    """``mean(1 - cos(student, teacher)) + mse_weight * MSE(normalised student, normalised teacher)``."""
    s = F.normalize(student.float(), dim=1)
    t = F.normalize(teacher.float(), dim=1)
    loss = (1.0 - (s * t).sum(dim=1)).mean()
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(s, t)
    return loss


@register_method("pretrain-distill")
class DistillMethod(TrainingMethod):
    """VIS pretraining by embedding distillation from a teacher (dlib's 128-d ResNet descriptor).

    A projection head (Linear embedding_dim -> teacher dim) maps the student embedding to the teacher's space;
    the loss is ``1 - cos`` (plus an optional MSE term) against the teacher descriptor of the same image.
    The descriptors are computed once per image (un-augmented crop) and cached on disk; the trainer hands
    them over with :meth:`set_targets`, indexed like the ImageDataset's items.

    The distillation is cross-modal: the student sees each photo twice, as VIS and through the NIR transform
    (``--nir-transform``, e.g. ``nir-sim+mask``), and must give the teacher's VIS descriptor for both, so the
    pretrained init already maps (masked, simulated) NIR faces near their VIS photos.
    """

    data_kind = "items"
    modalities = ("nir", "vis")
    images_per_sample = 1
    needs_item_index = True

    def __init__(self, config: TrainConfig, probe: nn.Module, ctx: MethodContext, teacher_dim: int = 128) -> None:
        super().__init__(config, probe, ctx)
        self.loss_fn = None  # type: ignore[assignment]
        self.extra["projection"] = _Projection(_unwrap(probe).embedding_dim, teacher_dim, config.teacher.mse_weight)
        self.net = _HeadNet(probe, self.extra["projection"])
        self.targets: Optional[torch.Tensor] = None

    def set_targets(self, targets: torch.Tensor) -> None:
        """``(num_items, teacher_dim)`` teacher descriptors (row i: ImageDataset item i).

        The descriptors are centred on their dataset mean and renormalised: dlib's descriptors of different
        people still have cosine ~0.9 (a large shared component), so raw targets would let the student score
        a low loss by predicting the mean; centred targets keep only what tells people apart.
        """
        centred = targets.float() - targets.float().mean(dim=0, keepdim=True)
        self.targets = torch.nn.functional.normalize(centred, dim=1).to(self.ctx.device)

    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, _labels, item_index = batch
        if self.targets is None:
            raise RuntimeError("DistillMethod.set_targets was not called")
        target = self.targets[item_index]
        with self.ctx.autocast():
            emb, loss = self.net(images, target)
        return loss, {}


@register_method("distill")
class CrossModalDistillMethod(DistillMethod):
    """Label-free cross-modal distillation from a frozen pretrained network (``--method distill``).

    Every training image is seen as VIS and through the NIR transform (e.g. masked simulated NIR); the loss
    pulls the student's embedding of either view towards the frozen teacher's embedding of the clean VIS crop
    (``1 - cos``). No identity labels, no head: the student stays in the teacher's embedding space, so it keeps
    what the teacher knows of VIS faces while learning to map NIR and masked faces onto it. Targets are only
    normalised (not centred): a network trained for recognition has no dominant shared component.
    """

    def __init__(self, config: TrainConfig, probe: nn.Module, ctx: MethodContext) -> None:
        TrainingMethod.__init__(self, config, probe, ctx)
        self.loss_fn = None  # type: ignore[assignment]
        self.targets = None
        self.mse_weight = config.teacher.mse_weight

    def set_targets(self, targets: torch.Tensor) -> None:
        """``(num_items, embedding_dim)`` teacher embeddings of the clean VIS crops (row i: item i)."""
        self.targets = F.normalize(targets.float(), dim=1).to(self.ctx.device)

    def forward_loss(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, _labels, item_index = batch
        if self.targets is None:
            raise RuntimeError("CrossModalDistillMethod.set_targets was not called")
        with self.ctx.autocast():
            emb = self.net(images)
        loss = distillation_loss(emb, self.targets[item_index], self.mse_weight)
        with torch.no_grad():
            cos = 1.0 - distillation_loss(emb.detach(), self.targets[item_index])
        return loss, {"cosine": cos}


def method_names() -> List[str]:
    return METHODS.names()

