"""The training loop behind ``hsst-train`` and :func:`train`: data, model, optimisation, checkpoints, DDP, logs.

::

    from hsst.train.config import TrainConfig
    from hsst.train.trainer import train
    cfg = TrainConfig.from_dict({"data": {"data": "/data/lfw", "min_images": 5},
                                 "optim": {"iters": 1000, "milestones": [600, 800]},
                                 "run": {"out": "runs/lfw-hsst"}})
    result = train(cfg)          # result.probe_checkpoint is the deployable model

One :class:`Trainer` runs every method (:mod:`hsst.train.methods`): the method turns a batch into a loss,
the trainer does everything around it. Resume is exact: the resume checkpoint holds the probe-net, the
method's state (gallery-net and queues, or the classifier / projection head), optimizer, scheduler, AMP
scaler, the sampler position and the Python / numpy / torch RNG states of every rank, so an interrupted run
that resumes reproduces an uninterrupted one bit for bit on CPU (deterministic kernels, ``workers=0`` or not).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hsst.core.errors import ConfigError, DatasetError, ModelError
from hsst.core.metadata import Preprocess
from hsst.pretrained import is_pretrained_name
from hsst.train.checkpointing import (PROBE_NAME, RESUME_NAME, capture_rng_state, load_train_state,
                                      restore_rng_state, save_train_state)
from hsst.train.config import CONFIG_NAME, TrainConfig
from hsst.train.data import (FaceLoader, IdentityBatchSampler, ImageDataset, ItemBatchSampler, NirVisIndex,
                             PairDataset, RandomHorizontalFlip, collate_items, collate_pairs, detect_layout,
                             index_dataset, resolve_nir_transform)
from hsst.train.distributed import DistContext
from hsst.train.logging_utils import (LOG_NAME, JsonlLogger, Progress, setup_run_logging,
                                      teardown_run_logging)
from hsst.train.methods import DistillMethod, MethodContext, TrainingMethod, create_method, method_key
from hsst.train.models import create_backbone, load_foreign_state_dict, meta_for, model_summary, \
    save_probe_checkpoint

logger = logging.getLogger(__name__)

Batch = Tuple[torch.Tensor, ...]


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        out_dir: the run folder.
        probe_checkpoint: the deployable probe-net (``probe_net.pt``: weights + ModelMeta).
        resume_checkpoint: the full training state (``last.ckpt``).
        config_path: the resolved config (``config.json``).
        log_path: the per-step JSONL log.
        method: the method that ran (``hsst``, ``plain``, ``plain-triplet``, ``pretrain``, ``pretrain-distill``).
        iterations: the last iteration (``optim.iters``).
        start_iteration: where this process started (0, or the resumed iteration).
        final_loss: loss of the last step.
        mean_loss_first: mean loss of the first (up to) 10% of this process's steps.
        mean_loss_last: mean loss of the last (up to) 10% of this process's steps.
        images_per_s: mean training throughput of this process (all ranks together).
        elapsed_s: wall time of the loop.
    """

    out_dir: Path
    probe_checkpoint: Path
    resume_checkpoint: Path
    config_path: Path
    log_path: Path
    method: str
    iterations: int
    start_iteration: int
    final_loss: float
    mean_loss_first: float
    mean_loss_last: float
    images_per_s: float
    elapsed_s: float
    losses: List[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("losses")
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available in this torch build / machine "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        index = int(spec[5:]) if spec.startswith("cuda:") else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    return torch.device("cpu")


class _WithIndex(Dataset):
    """Adds the item index to every sample (distillation looks up the teacher descriptor by it)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):
        image, label = self.dataset[key]
        return image, label, int(key[0] if isinstance(key, (tuple, list)) else key)


def _collate_indexed(batch):
    images, labels = collate_items([(b[0], b[1]) for b in batch])
    return images, labels, torch.as_tensor([b[2] for b in batch], dtype=torch.int64)


def build_index(config: TrainConfig) -> NirVisIndex:
    """Index the training data the config names (CASIA fold, generic tree or VIS-only folders)."""
    d = config.data
    kw: Dict[str, Any] = {}
    if d.min_images is not None:
        kw["min_images"] = d.min_images
    if d.casia:
        index = index_dataset(casia=d.casia, fold=d.fold, **kw)
    else:
        layout, _ = detect_layout(d.data)
        if layout == "vis-folders" and d.max_identities:
            kw["max_identities"] = d.max_identities
        index = index_dataset(d.data, layout=layout, **kw)
    if d.max_identities and len(index.identities) > d.max_identities:
        index = index.subset(index.identities[: d.max_identities])
    index.report.log(logger)
    return index


class Trainer:
    """Runs one training configuration end to end.

    Args:
        config: the run; validated here, before any data is read.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config.validate()
        resolve_nir_transform(config.data.nir_transform)  # an unknown name fails here, before any data is read
        self.out_dir = Path(config.run.out)
        self.key = method_key(config)
        self._handlers: List[logging.Handler] = []
        self._restore_det: Optional[bool] = None

    # ============================================================================================ set-up
    def setup(self) -> None:
        """Everything before step 1: process group, logging, data, model, optimizer, resume or prefill.

        On failure the trainer closes itself (process group, log handlers, global torch flags) and re-raises.
        """
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.run.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = DistContext.from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda" and cfg.run.device in ("auto", "cuda"):
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.is_main = self.dist.is_main
        self._handlers = setup_run_logging(self.out_dir, self.is_main)
        self._configure_torch()

        state = None
        if cfg.run.resume:
            state = load_train_state(self.out_dir / RESUME_NAME)
            saved = TrainConfig.from_dict(state["config"])
            cfg.resume_compatible(saved)
            if int(state["iteration"]) > cfg.optim.iters:
                raise ConfigError(f"the checkpoint in {self.out_dir} is at iteration {state['iteration']}, beyond "
                                  f"--iters {cfg.optim.iters}; resume with --iters >= {state['iteration']}")
            if int(state.get("world_size", 1)) != self.dist.world_size:
                raise ConfigError(f"the checkpoint was written by {state.get('world_size')} process(es), this run "
                                  f"has {self.dist.world_size}; resume with the same number of processes")
        elif (self.out_dir / RESUME_NAME).exists() and not cfg.run.overwrite:
            raise ConfigError(f"{self.out_dir} already holds a training run ({RESUME_NAME}); pass --resume to "
                              "continue it, --overwrite to start over there, or choose another --out")
        self._seed_everything(cfg.run.seed)

        self.index = build_index(cfg)
        self.fingerprint = self.index.fingerprint()
        if state is not None and state.get("dataset_fingerprint") not in (None, self.fingerprint):
            raise DatasetError(f"the training data changed since the checkpoint in {self.out_dir} (fingerprint "
                               "differs): resume needs the same images; start a new run with another --out")
        self.preprocess = Preprocess.for_size(cfg.model.input_size, color=cfg.model.color)

        self.probe = create_backbone(cfg.model.backbone, input_size=cfg.model.input_size,
                                     embedding_dim=cfg.model.embedding_dim, in_chans=cfg.model.in_chans)
        if cfg.model.init and state is None:
            self._load_init(cfg.model.init)
        self.probe.to(self.device)
        self.amp = bool(cfg.run.amp and self.device.type == "cuda")
        ctx = MethodContext(device=self.device, dist=self.dist, num_classes=len(self.index.identities),
                            autocast=self._autocast)
        self.method: TrainingMethod = create_method(cfg, self.probe, ctx).to(self.device)
        self._build_data()
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers are averaged over ranks after every step (TrainingMethod.after_step), not broadcast
            self.method.wrap(lambda m: DDP(m, device_ids=ids, broadcast_buffers=False))
        self.optimizer = torch.optim.SGD(self.method.trainable_parameters(), lr=cfg.optim.lr,
                                         momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=cfg.optim.milestones,
                                                              gamma=cfg.optim.gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.is_main:
            logger.info("%s", model_summary(self.probe))
            logger.info("method %s, loss %s, %d identities, batch %d x %d process(es), %d iterations on %s%s",
                        self.key, cfg.loss.name, len(self.index.identities), cfg.optim.batch_size,
                        self.dist.world_size, cfg.optim.iters, self.device, " (AMP)" if self.amp else "")
            cfg.save(self.out_dir / CONFIG_NAME)

        self.start_iter = 0
        self.batches_consumed = 0
        if state is not None:
            self._restore(state)
        else:
            self.method.prepare(self._next_batch, self.dataset)
        self.iteration = self.start_iter

    def _configure_torch(self) -> None:
        cfg = self.config.run
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            self._restore_det = torch.are_deterministic_algorithms_enabled()
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _load_init(self, path: str) -> None:
        if is_pretrained_name(path):
            from hsst.train.models.pretrained import pretrained_state_dict

            self.probe.load_state_dict(pretrained_state_dict(path, self.probe), strict=True)
            logger.info("--init %s: pretrained weights loaded into %s", path, self.config.model.backbone)
            return
        report = load_foreign_state_dict(self.probe, path)
        if not report.loaded:
            raise ModelError(f"--init {path}: no tensor matched {self.config.model.backbone} "
                             f"(input {self.config.model.input_size}, {self.config.model.in_chans} channel(s)): "
                             f"{report}")
        if not report.ok:
            logger.warning("--init %s loaded partially: %s", path, report)
        else:
            logger.info("--init %s: %s", path, report)

    def _sampler(self, cls: Callable, count: int):
        """This process's batch sampler over ``count`` identities or images."""
        cfg = self.config
        try:
            return cls(count, cfg.optim.batch_size, cfg.run.seed, self.dist.rank, self.dist.world_size)
        except ConfigError as exc:  # "too few" may be because of what the scan left out: say what that was
            raise ConfigError(f"{exc} ({self.index.report.summary()})") from None

    def _build_data(self) -> None:
        cfg = self.config
        loader = FaceLoader(self.preprocess.crop_size)
        augment = RandomHorizontalFlip() if cfg.data.augment else None
        nir_t = resolve_nir_transform(cfg.data.nir_transform)
        method = self.method
        if method.data_kind == "pairs":
            dataset: Dataset = PairDataset(self.index, loader, self.preprocess, nir_transform=nir_t,
                                           augment=augment, seed=cfg.run.seed)
            self.sampler = self._sampler(IdentityBatchSampler, len(self.index.identities))
            collate: Callable = collate_pairs
        else:
            images = ImageDataset(self.index, loader, self.preprocess, nir_transform=nir_t, augment=augment,
                                  modalities=method.modalities, seed=cfg.run.seed)
            self.sampler = self._sampler(ItemBatchSampler, len(images))
            dataset, collate = images, collate_items
            if isinstance(method, DistillMethod):
                self._prepare_teacher(images, loader)
                dataset, collate = _WithIndex(images), _collate_indexed
        self.dataset = dataset
        workers = cfg.data.workers
        # one iterator serves the whole run (the sampler is infinite), so workers need not persist; dropping the
        # iterator in close() shuts them down
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
                                 pin_memory=self.device.type == "cuda", prefetch_factor=2 if workers > 0 else None)
        self._iter = None

    def _prepare_teacher(self, images: ImageDataset, loader: FaceLoader) -> None:
        from hsst.train.teacher import compute_targets, create_teacher, default_cache_dir

        cfg = self.config
        teacher = create_teacher(cfg.teacher.name)
        cache = Path(cfg.teacher.cache) if cfg.teacher.cache else default_cache_dir() / f"teacher_{teacher.name}.npz"
        paths = [path for path, _, _ in images.items]
        context = repr(loader)
        if self.is_main:  # rank 0 fills the cache, the others read it
            targets = compute_targets(teacher, paths, loader.load, context, cache, progress=self.config.run.progress)
        self.dist.barrier()
        if not self.is_main:
            targets = compute_targets(teacher, paths, loader.load, context, cache, progress=False)
        self.method.set_targets(torch.from_numpy(targets))  # type: ignore[attr-defined]

    def _next_batch(self) -> Batch:
        if self._iter is None:
            self._iter = iter(self.loader)
        batch = next(self._iter)
        self.batches_consumed += 1
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    # ========================================================================================= checkpoints
    def _restore(self, state: Dict[str, Any]) -> None:
        self.probe.load_state_dict(state["probe"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.amp and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.batches_consumed = int(state["batches_consumed"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"][self.dist.rank])
        self.start_iter = int(state["iteration"])
        logger.info("resumed %s at iteration %d / %d", self.out_dir / RESUME_NAME, self.start_iter,
                    self.config.optim.iters)

    def _meta(self, iteration: int):
        cfg = self.config
        training = {"method": self.key, "loss": cfg.loss.name, "iterations": iteration,
                    "data": cfg.data.casia or cfg.data.data, "fold": cfg.data.fold,
                    "nir_transform": cfg.data.nir_transform, "identities": len(self.index.identities),
                    "dataset_fingerprint": self.fingerprint}
        return meta_for(self.probe, preprocess=self.preprocess, training=training)

    def save_checkpoint(self, iteration: int) -> None:
        """Write ``last.ckpt`` (resume state) and ``probe_net.pt`` (deployable); collective under DDP."""
        rng = self.dist.all_gather_object(capture_rng_state())
        if not self.is_main:
            return
        state = {
            "iteration": iteration,
            "batches_consumed": self.batches_consumed,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "dataset_fingerprint": self.fingerprint,
            "probe": {k: v.detach().cpu().clone() for k, v in self.probe.state_dict().items()},
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else None,
            "sampler": self.sampler.state_for_step(self.batches_consumed),
            "rng": rng,
        }
        save_train_state(self.out_dir / RESUME_NAME, state)
        save_probe_checkpoint(self.out_dir / PROBE_NAME, self.probe, self._meta(iteration),
                              extra={"iteration": iteration, "method": self.key})
        logger.debug("checkpoint at iteration %d", iteration)

    # =============================================================================================== loop
    def step(self) -> Dict[str, float]:
        """One optimisation step; returns the (rank-averaged) loss parts."""
        batch = self._next_batch()
        self.method.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.method.forward_loss(batch)
        if not torch.isfinite(loss) and not self.amp:  # under AMP the scaler skips the step and lowers its scale
            raise ModelError(f"the loss became {loss.item()} at iteration {self.iteration + 1}; lower --lr or check "
                             "the data (a batch of identical images?)")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.method.after_step()
        values = {"loss": float(loss.detach())}
        values.update({k: float(v) for k, v in parts.items()})
        if self.dist.enabled:
            values = {k: self.dist.mean_scalar(v, self.device) for k, v in values.items()}
        return values

    def fit(self, stop_after: Optional[int] = None, pause_after: Optional[int] = None) -> TrainResult:
        """Set up (unless done) and train until ``optim.iters``; returns where the results are.

        Args:
            stop_after: end the loop after this iteration without a final checkpoint, exactly like a killed
                process (for resume tests); the last periodic checkpoint stays valid.
            pause_after: end the loop after this iteration with a resume checkpoint there (a time-boxed job;
                ``--resume`` continues the same schedule). Must lie after the start and before ``optim.iters``.

        Raises:
            ConfigError: ``pause_after`` outside (start iteration, ``optim.iters``).
        """
        if not hasattr(self, "optimizer"):
            self.setup()
        cfg = self.config
        if pause_after is not None and not self.iteration < pause_after < cfg.optim.iters:
            raise ConfigError(f"--pause-after {pause_after} must lie after the run's current iteration "
                              f"({self.iteration}) and before --iters ({cfg.optim.iters})")
        images_per_step = self.method.images_per_sample * cfg.optim.batch_size * self.dist.world_size
        first = self.iteration
        log = JsonlLogger(self.out_dir / LOG_NAME, resume_from=first if (cfg.run.resume or first) else None) \
            if self.is_main else None
        bar = Progress(cfg.optim.iters, first, enabled=cfg.run.progress and self.is_main,
                       desc=f"hsst-train {self.key}")
        losses: List[float] = []
        t_start = time.perf_counter()
        try:
            while self.iteration < cfg.optim.iters:
                lr = self.optimizer.param_groups[0]["lr"]
                t0 = time.perf_counter()
                values = self.step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                self.iteration += 1
                losses.append(values["loss"])
                record = {"iter": self.iteration, **values, "lr": lr, "images_per_s": images_per_step / dt,
                          "step_time": dt, "time": time.perf_counter() - t_start}
                if log is not None:
                    log.write(record)
                bar.update(1, record)
                if self.is_main and self.iteration % cfg.run.log_every == 0:
                    log.flush()  # type: ignore[union-attr]
                    logger.debug("iter %d loss %.4f lr %.2e %.1f img/s", self.iteration, values["loss"], lr,
                                 record["images_per_s"])
                periodic = bool(cfg.run.save_every) and self.iteration % cfg.run.save_every == 0
                if periodic and self.iteration < cfg.optim.iters:
                    if log is not None:
                        log.flush()
                    self.save_checkpoint(self.iteration)
                if stop_after is not None and self.iteration >= stop_after:
                    break
                if pause_after is not None and self.iteration >= pause_after:
                    if not periodic:  # pause_after < iters: a periodic checkpoint here was just written
                        self.save_checkpoint(self.iteration)
                    logger.info("paused after iteration %d / %d; continue with --resume", self.iteration,
                                cfg.optim.iters)
                    break
            else:
                self.save_checkpoint(self.iteration)
        finally:
            bar.close()
            if log is not None:
                log.close()
        elapsed = time.perf_counter() - t_start
        steps = max(1, len(losses))
        k = max(1, steps // 10)
        result = TrainResult(
            out_dir=self.out_dir, probe_checkpoint=self.out_dir / PROBE_NAME,
            resume_checkpoint=self.out_dir / RESUME_NAME, config_path=self.out_dir / CONFIG_NAME,
            log_path=self.out_dir / LOG_NAME, method=self.key, iterations=self.iteration,
            start_iteration=first, final_loss=losses[-1] if losses else math.nan,
            mean_loss_first=float(np.mean(losses[:k])) if losses else math.nan,
            mean_loss_last=float(np.mean(losses[-k:])) if losses else math.nan,
            images_per_s=images_per_step * len(losses) / elapsed if losses and elapsed > 0 else 0.0,
            elapsed_s=elapsed, losses=losses)
        if self.is_main:
            logger.info("done: %d iterations, loss %.4f (first %.4f), %.1f images/s; probe-net %s",
                        self.iteration, result.final_loss, result.mean_loss_first, result.images_per_s,
                        result.probe_checkpoint)
        return result

    def close(self) -> None:
        """Release workers, the process group and the log handlers; restore global torch flags."""
        self._iter = None
        if self._restore_det is not None:
            torch.use_deterministic_algorithms(self._restore_det)
            self._restore_det = None
        if hasattr(self, "dist"):
            self.dist.close()
        teardown_run_logging(self._handlers)
        self._handlers = []


def train(config: TrainConfig, pause_after: Optional[int] = None) -> TrainResult:
    """Run a training configuration (the Python twin of ``hsst-train``).

    Args:
        config: the run.
        pause_after: stop after this iteration with a resume checkpoint (``--pause-after``).

    Raises:
        ConfigError: invalid options or combinations (before any data is read).
        DatasetError: missing / empty / changed training data.
        ModelError: unreadable ``--init`` / resume checkpoints, a diverging loss.
    """
    trainer = Trainer(config)
    try:
        return trainer.fit(pause_after=pause_after)
    finally:
        trainer.close()
