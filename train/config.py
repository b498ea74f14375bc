"""One configuration model for every training run (``hsst-train`` and :func:`hsst.train.train`).

A :class:`TrainConfig` is a tree of small dataclasses (data, model, optim, hsst, loss, teacher, run). It is
validated as a whole before any work starts: wrong combinations raise :class:`~hsst.core.errors.ConfigError`
with a message that says which options clash and what to do. The resolved config is written as
``config.json`` beside every checkpoint, and :meth:`TrainConfig.from_dict` reads it back (resume, audits).

Defaults are the paper's (section III-A): batch 64, SGD lr 5e-4 (momentum 0.9, weight decay 5e-4) divided by
10 at 6k and 8k iterations, 10k iterations, 128 prototypes, moving-average weight 0.999, 512-d embeddings,
MobileFaceNet with the softmax loss.
"""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from hsst.core.files import atomic_write_json
from hsst.core.config import from_dict, read_mapping
from hsst.core.errors import ConfigError, ModelError
from hsst.core.metadata import ModelMeta
from hsst.pretrained import PRETRAINED, is_pretrained_name
from hsst.train.losses import LOSS_NAMES
from hsst.train.models import list_backbones, read_checkpoint_meta, resolve_backbone_name

METHODS = ("hsst", "plain", "pretrain", "distill")
LOSSES = LOSS_NAMES  # read from the loss table, not repeated
#: what ``--backbone`` accepts: the model registry's names and aliases (read, so a new backbone needs no edit here)
BACKBONES = tuple(list_backbones(include_aliases=True))
TEACHERS = ("dlib",) + tuple(sorted(PRETRAINED))
COLORS = ("gray", "rgb", "bgr")
CONFIG_NAME = "config.json"
CONFIG_VERSION = 1


@dataclass
class DataConfig:
    """Where the training images come from and how the NIR side is made.

    Attributes:
        data: a generic ``<root>/<identity>/{nir,vis}/`` tree or VIS-only identity folders
            (``<root>/<identity>/<images>``, the NIR side then comes from ``nir_transform``).
        casia: CASIA NIR-VIS 2.0 root in its official layout (needs ``fold``).
        fold: CASIA protocol fold 1..10.
        nir_transform: name for :func:`hsst.train.data.resolve_nir_transform` applied to the NIR side
            (``gray`` for plain grayscale; the NIR simulation and mask synthesis register more names).
        augment: random flips/crops on training images (deterministic per sample seed).
        workers: DataLoader worker processes (0 loads in the training process).
        min_images: identities with fewer images are skipped by the index (None: the layout's default,
            2 for VIS-only folders so that a pair uses two different photos, 1 otherwise).
        max_identities: keep only the first N identities (0 = all): quick runs, benchmarks.
    """

    data: Optional[str] = None
    casia: Optional[str] = None
    fold: Optional[int] = None
    nir_transform: str = "gray"
    augment: bool = True
    workers: int = 0
    min_images: Optional[int] = None
    max_identities: int = 0

    def validate(self, method: str) -> None:
        if self.data and self.casia:
            raise ConfigError("--data and --casia are exclusive: give a generic/VIS-only root with --data "
                              "or a CASIA NIR-VIS 2.0 root with --casia --fold K, not both")
        if not self.data and not self.casia:
            raise ConfigError("no training data: pass --data DIR (identity folders) or --casia ROOT --fold K")
        if self.casia and self.fold is None:
            raise ConfigError("--casia needs --fold K (1..10): CASIA NIR-VIS 2.0 trains on one protocol fold")
        if self.fold is not None and not self.casia:
            raise ConfigError("--fold only applies to --casia (CASIA NIR-VIS 2.0 protocol folds)")
        if self.fold is not None and not 1 <= self.fold <= 10:
            raise ConfigError(f"--fold must be in 1..10 (CASIA NIR-VIS 2.0 has 10 folds), got {self.fold}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.min_images is not None and self.min_images < 1:
            raise ConfigError(f"min_images must be >= 1, got {self.min_images}")
        if self.max_identities < 0:
            raise ConfigError(f"max_identities must be >= 0 (0 = all), got {self.max_identities}")
        if not self.nir_transform:
            raise ConfigError("--nir-transform must name a transform (e.g. gray)")


@dataclass
class ModelConfig:
    """The backbone and where its initial weights come from.

    Attributes:
        backbone: registry name or alias (``mobilefacenet``, ``resnet50`` / ``iresnet50``); :meth:`validate`
            resolves an alias to the registry's name.
        input_size: aligned crop side; a multiple of 16 (the paper aligns to 144, 112 is the common size).
        embedding_dim: embedding length (paper: 512).
        color: input colour mode of the network (``gray``: 1 channel, NIR cameras; ``rgb``/``bgr``: 3).
        init: probe checkpoint or foreign state dict to start from (e.g. a ``pretrain`` run's output), or the
            name of pretrained weights from :mod:`hsst.pretrained` (``mobilefacenet-ms1m``). The backbone and
            embedding size of pretrained weights or of an hsst probe checkpoint are taken unless set otherwise.
    """

    backbone: str = "mobilefacenet"
    input_size: int = 112
    embedding_dim: int = 512
    color: str = "gray"
    init: Optional[str] = None

    @property
    def in_chans(self) -> int:
        return 1 if self.color == "gray" else 3

    def validate(self) -> None:
        self.backbone = self._resolve_backbone()
        if is_pretrained_name(self.init):
            spec = PRETRAINED[self.init]
            self._adopt(spec.arch, spec.embedding_dim)
        elif self.init is not None and Path(self.init).is_file():
            meta = _probe_checkpoint_meta(Path(self.init))
            if meta is not None:
                self._adopt(resolve_backbone_name(meta.arch), meta.embedding_dim)
        if self.input_size <= 0 or self.input_size % 16:
            raise ConfigError(f"--input-size must be a positive multiple of 16 (the network downsamples 16x; "
                              f"112 or 144), got {self.input_size}")
        if self.embedding_dim <= 0:
            raise ConfigError(f"embedding_dim must be positive, got {self.embedding_dim}")
        if self.color not in COLORS:
            raise ConfigError(f"unknown --color {self.color!r}; choose one of {', '.join(COLORS)}")

    def _resolve_backbone(self) -> str:
        """The registry's name of ``backbone``: the config, the checkpoint meta and the factory then agree."""
        try:
            return resolve_backbone_name(self.backbone)
        except ConfigError:
            choices = ", ".join(list_backbones(include_aliases=True))
            raise ConfigError(f"unknown --backbone {self.backbone!r}; choose one of {choices}") from None

    def _adopt(self, arch: str, embedding_dim: int) -> None:
        """``--init`` sets the network it loads into; a contradicting explicit choice is an error."""
        if (self.backbone, self.embedding_dim) == ("mobilefacenet", 512):  # the defaults: not chosen by the user
            self.backbone, self.embedding_dim = arch, embedding_dim
        if self.backbone != arch:
            raise ConfigError(f"--init {self.init} loads into --backbone {arch}, not {self.backbone}; drop "
                              "--backbone or pass that one")


def _probe_checkpoint_meta(path: Path) -> Optional[ModelMeta]:
    """The metadata of an hsst probe-net checkpoint; None for another file (a foreign state dict)."""
    try:
        return read_checkpoint_meta(path)
    except ModelError:
        return None


@dataclass
class OptimConfig:
    """SGD with a step schedule (lr divided by ``gamma`` ... multiplied by ``gamma`` at each milestone).

    Attributes:
        iters: total optimizer steps.
        batch_size: identities (HSST, triplet: NIR-VIS pairs) or images (classification) per step and process.
        lr: initial learning rate.
        milestones: iterations at which the lr is multiplied by ``gamma``; None: the paper's schedule scaled to
            ``iters`` (60% and 80%: 6000, 8000 for 10000), resolved by :meth:`TrainConfig.validate`.
        gamma: lr factor at each milestone (0.1: divided by 10).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
    """

    iters: int = 10000
    batch_size: int = 64
    lr: float = 5e-4
    milestones: Optional[List[int]] = None
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def validate(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"--iters must be >= 1, got {self.iters}")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be >= 2 (the loss needs other identities), got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.milestones is None:
            self.milestones = default_milestones(self.iters)
        ms = list(self.milestones)
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ConfigError(f"--milestones must be strictly increasing, got {ms}")
        if ms and (ms[0] < 1 or ms[-1] >= self.iters):
            raise ConfigError(f"--milestones must lie in 1..iters-1 (iters={self.iters}), got {ms}; "
                              "scale them with --iters (paper: 6000,8000 for 10000)")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class HsstConfig:
    """Semi-siamese settings (``--method hsst``).

    Attributes:
        queue_size: prototypes per queue (NIR and VIS each; paper: 128).
        ema: moving-average weight of the gallery-net (paper: 0.999).
        prefill: fill both queues with gallery features of warm-up batches before step 1, so the first steps
            already see ``queue_size`` negatives (the warm-up batches are drawn from the sampler, no gradient).
        calibrate_bn: re-estimate the BatchNorm running statistics on the warm-up batches before the queues
            are filled (the gallery-net runs in eval mode on these statistics; vital from random weights).
        teacher_weight: weight of a teacher term added to the HSST loss: the probe's embeddings of both images
            are pulled (``1 - cos``) to a frozen copy of the initial network's embedding of the VIS image, so a
            strong pretrained init is not forgotten (0: the paper's HSST).
    """

    queue_size: int = 128
    ema: float = 0.999
    prefill: bool = True
    calibrate_bn: bool = True
    teacher_weight: float = 0.0

    def validate(self) -> None:
        if self.queue_size < 1:
            raise ConfigError(f"--queue-size must be >= 1, got {self.queue_size}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be in [0, 1) (paper: 0.999), got {self.ema}")
        if self.teacher_weight < 0:
            raise ConfigError(f"--teacher-weight must be >= 0 (0: plain HSST), got {self.teacher_weight}")


@dataclass
class LossConfig:
    """The training loss.

    Attributes:
        name: ``softmax``, ``am-softmax``, ``arc-softmax`` or ``triplet``.
        scale: logit scale s of the softmax family (None: the loss's default).
        margin: additive (AM), angular (Arc) or cosine (triplet) margin (None: the loss's default).
        imprint: plain classifier: start each identity's class weight at the mean of the init network's
            embeddings of its VIS training images (weight imprinting), not at random. A random head's first
            gradients scramble a pretrained network before the head has learnt anything; an imprinted head starts
            where the network already separates the identities. None: on when ``--init`` is given.
    """

    name: str = "softmax"
    scale: Optional[float] = None
    margin: Optional[float] = None
    imprint: Optional[bool] = None

    def kwargs(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        if self.scale is not None:
            out["scale"] = self.scale
        if self.margin is not None:
            out["margin"] = self.margin
        return out

    def validate(self) -> None:
        if self.name not in LOSSES:
            raise ConfigError(f"unknown --loss {self.name!r}; choose one of {', '.join(LOSSES)}")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"--scale must be positive, got {self.scale}")
        if self.margin is not None and self.margin < 0:
            raise ConfigError(f"--margin must be >= 0, got {self.margin}")
        if self.name == "softmax" and self.margin:
            raise ConfigError("--margin has no effect with --loss softmax; use am-softmax or arc-softmax")


@dataclass
class TeacherConfig:
    """Embedding distillation: ``--method pretrain --teacher dlib`` or ``--method distill``.

    Attributes:
        name: teacher: ``dlib`` (dlib's 128-d ResNet descriptor, VIS pretraining) or pretrained weights such as
            ``mobilefacenet-ms1m`` (``--method distill``: the frozen network's embedding of the clean VIS crop
            is the target of both the NIR and the VIS view); None for classification pretraining.
        cache: npz file of teacher descriptors (keyed by image path, size, mtime and crop); None: the
            default ``$HSST_CACHE`` or ``~/.cache/hsst``.
        mse_weight: weight of an MSE term between the normalised projection and descriptor (0 = cosine only).
    """

    name: Optional[str] = None
    cache: Optional[str] = None
    mse_weight: float = 0.0

    def validate(self) -> None:
        if self.name is not None and self.name not in TEACHERS:
            raise ConfigError(f"unknown --teacher {self.name!r}; choose one of {', '.join(TEACHERS)}")
        if self.mse_weight < 0:
            raise ConfigError(f"teacher mse_weight must be >= 0, got {self.mse_weight}")


@dataclass
class RunConfig:
    """Where and how the run executes.

    Attributes:
        out: output folder (checkpoints, config.json, train_log.jsonl, train.log).
        resume: continue from ``<out>/last.ckpt`` exactly (model, EMA, optimizer, scheduler, queues,
            sampler, RNG states).
        overwrite: start a new run in an ``out`` folder that already holds one (otherwise an error).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).
        seed: seed of sampling, augmentation and initialisation.
        save_every: write the resume checkpoint every N iterations (0: only at the end).
        log_every: console/progress refresh period in iterations (the JSONL log has every step).
        amp: mixed precision (autocast + GradScaler) on CUDA; ignored on CPU.
        deterministic: ``torch.use_deterministic_algorithms`` (bit-exact resume checks; slower on GPU).
        progress: show a tqdm progress bar.
        threads: torch intra-op threads on CPU (0: leave torch's default).
    """

    out: str = "runs/hsst"
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    seed: int = 0
    save_every: int = 1000
    log_every: int = 10
    amp: bool = True
    deterministic: bool = False
    progress: bool = True
    threads: int = 0

    def validate(self) -> None:
        dev = self.device
        if not (dev in ("cpu", "cuda", "auto") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, got {dev!r}")
        if self.save_every < 0:
            raise ConfigError(f"--save-every must be >= 0 (0: only at the end), got {self.save_every}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the run in --out, --overwrite starts over there: pick one")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if not self.out:
            raise ConfigError("--out must name an output folder")


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "hsst": HsstConfig,
             "loss": LossConfig, "teacher": TeacherConfig, "run": RunConfig}


@dataclass
class TrainConfig:
    """A whole training run. :func:`hsst.train.trainer.train` and the CLI call :meth:`validate` before any work.

    Attributes:
        method: ``hsst`` (the paper's semi-siamese training), ``plain`` (the paper's fine-tuning baseline)
            or ``pretrain`` (VIS pretraining: classification, or distillation with ``teacher.name``).
    """

    method: str = "hsst"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    hsst: HsstConfig = field(default_factory=HsstConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    run: RunConfig = field(default_factory=RunConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _section_from_dict(cls, value, name))
        if self.optim.milestones is not None:
            self.optim.milestones = [int(m) for m in self.optim.milestones]

    def validate(self) -> "TrainConfig":
        """Check every value and every combination; raise ConfigError naming the options. Returns self."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}; choose one of {', '.join(METHODS)}")
        self.data.validate(self.method)
        self.model.validate()
        self.optim.validate()
        self.hsst.validate()
        self.loss.validate()
        self.teacher.validate()
        self.run.validate()
        if (self.model.init is not None and not self.run.resume and not is_pretrained_name(self.model.init)
                and not Path(self.model.init).is_file()):
            raise ConfigError(f"--init checkpoint not found: {self.model.init} (give a file or pretrained weights: "
                              f"{', '.join(sorted(PRETRAINED))})")
        self._validate_teacher()
        if self.loss.imprint is None:
            self.loss.imprint = self.model.init is not None
        if self.method == "pretrain" and self.data.casia:
            raise ConfigError("--method pretrain trains on VIS identity folders (--data DIR); CASIA NIR-VIS 2.0 "
                              "is for hsst/plain fine-tuning")
        if self.method == "pretrain" and self.teacher.name is None and self.loss.name == "triplet":
            raise ConfigError("classification pretraining needs a classifier loss (softmax, am-softmax, "
                              "arc-softmax), not triplet; or distil with --teacher dlib")
        if self.teacher.name is not None and (self.loss.scale is not None or self.loss.margin is not None):
            raise ConfigError("--scale / --margin set a classification or triplet loss; distillation with --teacher "
                              "uses 1 - cosine (and --teacher-mse), so they would have no effect")
        return self

    def _validate_teacher(self) -> None:
        name = self.teacher.name
        if self.method == "distill":
            if name is None and is_pretrained_name(self.model.init):
                self.teacher.name = name = self.model.init
            if name not in PRETRAINED:
                raise ConfigError("--method distill pulls the student to a frozen pretrained network: pass --init "
                                  f"or --teacher with one of {', '.join(sorted(PRETRAINED))} (got teacher {name!r})")
        elif name is not None and self.method != "pretrain":
            raise ConfigError(f"--teacher {name} is for --method pretrain (dlib) or --method distill (pretrained "
                              f"weights), not --method {self.method}")
        elif self.method == "pretrain" and name is not None and name != "dlib":
            raise ConfigError(f"--method pretrain distils from --teacher dlib; {name} is for --method distill")

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def command_line(self) -> str:
        """The ``hsst-train`` command of the options that define this run (for reports and model cards)."""
        d, o = self.data, self.optim
        args = ["hsst-train", "--method", self.method, "--data", d.data, "--nir-transform", d.nir_transform,
                "--input-size", self.model.input_size, "--batch-size", o.batch_size, "--lr", o.lr,
                "--iters", o.iters, "--loss", self.loss.name, "--seed", self.run.seed]
        if self.model.init:
            args += ["--init", self.model.init]
        if self.teacher.name:
            args += ["--teacher", self.teacher.name]
        if self.method == "hsst":
            args += ["--queue-size", self.hsst.queue_size, "--ema", self.hsst.ema]
            if self.hsst.teacher_weight:
                args += ["--teacher-weight", self.hsst.teacher_weight]
        if d.min_images is not None:
            args += ["--min-images", d.min_images]
        return shlex.join(str(a) for a in args)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        """Build from a (possibly partial) nested dict; unknown keys are an error, not silently dropped."""
        data = dict(data)
        version = int(data.pop("version", CONFIG_VERSION))
        if version > CONFIG_VERSION:
            raise ConfigError(f"config version {version} is newer than this hsst ({CONFIG_VERSION}); upgrade hsst")
        known = {"method"} | set(_SECTIONS)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config sections {sorted(unknown)}; expected {sorted(known)}")
        kwargs: Dict[str, Any] = {"method": data.get("method", "hsst")}
        for name, sec in _SECTIONS.items():
            kwargs[name] = _section_from_dict(sec, data.get(name, {}) or {}, name)
        return cls(**kwargs)

    def save(self, path: Union[str, Path]) -> Path:
        """Write as JSON, atomically (tmp file + rename)."""
        return atomic_write_json(path, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "TrainConfig":
        """Read ``config.json`` (or a YAML file with the same structure)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return cls.from_dict(read_mapping(path))  # YAML, or JSON (a subset of YAML)

    def resume_compatible(self, saved: "TrainConfig") -> None:
        """Raise ConfigError when ``saved`` (the checkpoint's config) cannot be continued by this config.

        Only the run length may change on resume (``iters``, ``save_every``, device, workers, progress):
        everything that shapes the model, the data order or the optimisation must match.
        """
        a, b = saved.to_dict(), self.to_dict()
        free = {("optim", "iters"), ("run", "save_every"), ("run", "device"), ("run", "progress"),
                ("run", "log_every"), ("run", "resume"), ("run", "overwrite"), ("run", "out"),
                ("data", "workers"),
                ("run", "threads"), ("model", "init"), ("teacher", "cache")}
        diffs = []
        for sec, values in a.items():
            if not isinstance(values, dict):
                if values != b.get(sec):
                    diffs.append(f"{sec}: {values!r} -> {b.get(sec)!r}")
                continue
            for key, val in values.items():
                if (sec, key) not in free and val != b[sec].get(key):
                    diffs.append(f"{sec}.{key}: {val!r} -> {b[sec].get(key)!r}")
        if diffs:
            raise ConfigError("cannot --resume with a different configuration (the run would not be the same "
                              "run); differences from the checkpoint: " + "; ".join(diffs))


def _section_from_dict(cls: type, values: Any, name: str) -> Any:
    """A config section: kept when already built, else read by the one config reader of hsst."""
    return values if isinstance(values, cls) else from_dict(cls, values, name)


def default_milestones(iters: int) -> List[int]:
    """The paper's schedule (lr / 10 at 6k and 8k of 10k iterations) scaled to ``iters``."""
    ms = sorted({int(round(iters * f)) for f in (0.6, 0.8)})
    return [m for m in ms if 1 <= m < iters]


def parse_milestones(text: Union[str, Tuple[int, ...], List[int], None]) -> List[int]:
    """``"6000,8000"`` -> ``[6000, 8000]`` (empty string: no milestones)."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--milestones must be a comma list of integers such as 6000,8000, got {text!r}") from exc
