"""The reproduction study (the paper's Tables I and II on LFW with simulated NIR and synthesized masks).

Research tooling of this repository, not part of the ``hsst`` package (it needs ``hsst[train]`` installed and
reads the repository's ``docs/study`` split files). Three commands, from the repository root::

    python tools/study.py split  --lfw DIR [--out docs/study/lfw_split.json]     # once; committed
    python tools/study.py run    --out runs/study [--iters N] [--seeds 0,1] [--only PATTERNS]
    python tools/study.py report --runs runs/study --out docs/RESULTS.md [--baselines runs/beside] [--ablations runs/val]

Paths: the repository is this file's folder's parent (``REPO``); ``--split`` and ``split --out`` default to the
repository's ``docs/study/lfw_split.json``; ``run --out`` / ``report --runs`` are relative to the current folder;
``report`` writes only the ``--out`` it is given. Training runs as ``python -m hsst.train.cli`` subprocesses in
the current folder.

Design:

* Data: LFW split by identity (``docs/study/lfw_split.json``, identity names only). ``test``: a seeded sample
  of identities with >= 5 images; gallery = the first VIS image of each (file name order), probes = the next
  ``max_probes`` images as **simulated NIR**, non-masked and with synthesized masks. ``train``: every other
  identity with >= 2 images (HSST needs two images per identity). ``pretrain``: every identity not in
  ``test`` (VIS pretraining needs no pairs). Training data are symlink trees under ``<out>/data``.
* Runs, all from one common VIS-pretrained init (``pretrain``), same iterations and data:
  Table I: softmax, plain vs HSST, trained on non-masked vs masked simulated NIR;
  Table II: each loss (softmax, AM-softmax, Arc-softmax, triplet), plain vs HSST, trained on masked data.
  Headline rows (masked training, softmax) run with every ``--seeds`` seed (``--all-seeds``: every row).
* Every model (and the init) is evaluated on the non-masked and the masked simulated-NIR test probes.
* Resuming: a run whose ``result.json`` exists is skipped; a training run resumes from its ``last.ckpt``
  (``hsst-train --resume``); finished training (``train_done.json``) is not repeated.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import click
import numpy as np

from hsst.core.errors import ConfigError, DatasetError, HsstError
from hsst.core.files import atomic_write_json, atomic_write_text, file_sha256
from hsst.core.image import IMAGE_SUFFIXES
from hsst.train.losses import LOSS_NAMES  # the study trains models: it needs hsst[train] (torch)

logger = logging.getLogger("tools.study")

#: The repository this tool belongs to (``tools/study.py`` -> the repository root).
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPLIT = REPO / "docs" / "study" / "lfw_split.json"
DEFAULT_LFW = Path(os.environ.get("HSST_SHARED", REPO.parent / "shared")) / "datasets" / "lfw"
#: How the study's commands are written (on the report page, in split files and messages).
COMMAND = "python tools/study.py"
#: The command before the driver moved out of the package (``created_with`` of the committed split files,
#: ``study.json`` command records); shown as :data:`COMMAND`, which takes the same arguments.
_LEGACY_COMMAND = "python -m hsst.eval.study"
LOSSES = LOSS_NAMES  # read from the loss table, not repeated
METHODS = ("plain", "hsst")
TRAIN_DATA = ("nonmasked", "masked")
#: Probe sets every model is evaluated on: name -> (nir_sim, mask).
TEST_SETS = {"nonmasked": (True, False), "masked": (True, True)}
INIT_NAME = "pretrain"


# =================================================================================================== split
def _identity_images(root: Path) -> Dict[str, List[str]]:
    out = {}
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                files = sorted(f.name for f in os.scandir(entry.path)
                               if f.is_file() and Path(f.name).suffix.lower() in IMAGE_SUFFIXES)
                if files:
                    out[entry.name] = files
    return dict(sorted(out.items()))


def dataset_fingerprint(root: Path, identities: Optional[Sequence[str]] = None) -> str:
    """sha256 over sorted (identity, file name, size) of the identity folders (all or ``identities``)."""
    images = _identity_images(Path(root))
    digest = hashlib.sha256()
    for ident in sorted(identities if identities is not None else images):
        for name in images.get(ident, []):
            digest.update(f"{ident}\t{name}\t{(Path(root) / ident / name).stat().st_size}\n".encode("utf-8"))
    return digest.hexdigest()


def make_split(lfw: Path, n_test: int = 180, min_test_images: int = 5, min_train_images: int = 2,
               max_probes: int = 10, seed: int = 0, exclude: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The identity split of the study (deterministic for a dataset and seed).

    ``exclude`` (``{"rule": ..., "identities": [...]}``) takes identities out of every part: a validation split
    for choices such as learning rate or moving average excludes the study's test identities, so those choices
    never see the test split.

    Raises:
        DatasetError: the dataset has fewer eligible test identities than ``n_test``.
    """
    images = _identity_images(Path(lfw))
    excluded = set(exclude["identities"]) if exclude else set()
    images = {i: files for i, files in images.items() if i not in excluded}
    eligible = [i for i, files in images.items() if len(files) >= min_test_images]
    if len(eligible) < n_test:
        raise DatasetError(f"{lfw} has {len(eligible)} identities with >= {min_test_images} images; need {n_test}")
    rng = np.random.default_rng(seed)
    test = sorted(eligible[i] for i in rng.choice(len(eligible), n_test, replace=False))
    test_set = set(test)
    train = [i for i, files in images.items() if i not in test_set and len(files) >= min_train_images]
    pretrain = [i for i in images if i not in test_set]
    n_probes = sum(min(len(images[i]) - 1, max_probes) for i in test)
    split = {
        "dataset": "lfw (deep-funneled, this project's shared copy)",
        "created_with": f"{COMMAND} split --n-test {n_test} --seed {seed} --max-probes {max_probes}",
        "seed": seed,
        "dataset_fingerprint": dataset_fingerprint(Path(lfw)),
        "test": {"rule": f"seeded sample of identities with >= {min_test_images} images",
                 "gallery": "first image of each identity (file name order), VIS",
                 "probes": f"the next <= {max_probes} images, as simulated NIR (non-masked and masked)",
                 "max_probes": max_probes, "count": len(test), "gallery_images": len(test),
                 "probe_images": n_probes, "identities": test},
        "train": {"rule": f"every identity not in test with >= {min_train_images} images", "count": len(train),
                  "images": sum(len(images[i]) for i in train), "identities": train},
        "pretrain": {"rule": "every identity not in test (all their images)", "count": len(pretrain),
                     "images": sum(len(images[i]) for i in pretrain)},
    }
    if exclude:
        split["excluded"] = {"rule": exclude["rule"], "count": len(excluded), "identities": sorted(excluded)}
    return split


def load_split(path: Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"study split not found: {path}; write it with {COMMAND} split")
    return json.loads(path.read_text(encoding="utf-8"))


def pretrain_identities(split: Dict[str, Any], lfw: Path) -> List[str]:
    held_out = set(split["test"]["identities"]) | set(split.get("excluded", {}).get("identities", []))
    return [i for i in _identity_images(lfw) if i not in held_out]


def link_tree(lfw: Path, identities: Sequence[str], dest: Path) -> Path:
    """``dest/<id>`` -> ``lfw/<id>`` symlinks (the trainer reads identity folders; no image is copied)."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(identities)
    for link in dest.iterdir():
        if link.name not in wanted:
            link.unlink()
    for ident in identities:
        link = dest / ident
        target = (Path(lfw) / ident).resolve()
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return dest


# ===================================================================================================== runs
@dataclass
class RunSpec:
    """One training run of the study."""

    name: str
    method: str
    loss: str
    train_data: str
    seed: int
    table: List[str] = field(default_factory=list)


def plan_runs(seeds: Sequence[int], all_seeds: bool = False) -> List[RunSpec]:
    """Every training run: Table I (softmax x method x train data) and Table II (loss x method, masked)."""
    specs: Dict[str, RunSpec] = {}

    def add(method: str, loss: str, data: str, seed: int, table: str) -> None:
        name = f"{method}-{loss}-{data}-s{seed}"
        spec = specs.setdefault(name, RunSpec(name, method, loss, data, seed))
        if table not in spec.table:
            spec.table.append(table)

    for data in TRAIN_DATA:
        for method in METHODS:
            headline = data == "masked"
            for seed in (seeds if (headline or all_seeds) else seeds[:1]):
                add(method, "softmax", data, seed, "I")
    for loss in LOSSES:
        for method in METHODS:
            for seed in (seeds if all_seeds or loss == "softmax" else seeds[:1]):
                add(method, loss, "masked", seed, "II")
    return list(specs.values())


@dataclass
class StudyConfig:
    """Options of ``study run``."""

    out: str = "runs/study"
    lfw: str = str(DEFAULT_LFW)
    split: str = str(DEFAULT_SPLIT)
    iters: int = 2000
    pretrain_iters: int = 4000
    seeds: List[int] = field(default_factory=lambda: [0, 1])
    all_seeds: bool = False
    only: Optional[str] = None
    init: Optional[str] = None
    common_args: str = "--input-size 112 --batch-size 32"
    pretrain_args: str = "--loss softmax --lr 0.1"
    train_args: str = "--lr 0.01"
    plain_transform: str = "nir-sim"
    masked_transform: str = "nir-sim+mask"
    device: str = "auto"
    threads: int = 0
    faces: str = "box"
    eval_batch_size: int = 64
    eval_workers: int = 0
    progress: bool = True
    dry_run: bool = False


class Study:
    """Runs the study's training and evaluation steps, skipping what is done."""

    def __init__(self, config: StudyConfig) -> None:
        self.cfg = config
        self.out = Path(config.out)
        self.lfw = Path(config.lfw)
        self.split = load_split(Path(config.split))
        self.split_path = Path(config.split)
        if not self.lfw.is_dir():
            raise DatasetError(f"LFW not found at {self.lfw}; pass --lfw DIR")

    def check_transforms(self) -> None:
        """Fail before any training when the trainer does not know the NIR transform names."""
        try:
            from hsst.train.data import resolve_nir_transform
        except ImportError as exc:
            raise ConfigError(f"the study trains models and needs hsst[train] ({exc})") from exc
        for name in {self.cfg.plain_transform, self.cfg.masked_transform}:
            resolve_nir_transform(name)  # ConfigError lists the registered names

    # ------------------------------------------------------------------------------------------------ data
    def prepare_data(self) -> Dict[str, Path]:
        data = self.out / "data"
        trees = {"train": link_tree(self.lfw, self.split["train"]["identities"], data / "train"),
                 "pretrain": link_tree(self.lfw, pretrain_identities(self.split, self.lfw), data / "pretrain")}
        return trees

    def _selected(self, name: str) -> bool:
        if not self.cfg.only:
            return True
        return any(fnmatch.fnmatch(name, pat.strip()) for pat in self.cfg.only.split(",") if pat.strip())

    # ------------------------------------------------------------------------------------------- training
    def train_command(self, run_dir: Path, method: str, data: Path, extra: str, seed: int, iters: int,
                      loss: Optional[str] = None, nir_transform: Optional[str] = None,
                      init: Optional[Path] = None) -> List[str]:
        cmd = [sys.executable, "-m", "hsst.train.cli", "--method", method, "--data", str(data), "--iters",
               str(iters), "--out", str(run_dir), "--seed", str(seed), "--device", self.cfg.device,
               "--no-progress"]
        if loss:
            cmd += ["--loss", loss]
        if nir_transform:
            cmd += ["--nir-transform", nir_transform]
        if init:
            cmd += ["--init", str(init)]
        if self.cfg.threads:
            cmd += ["--threads", str(self.cfg.threads)]
        cmd += shlex.split(self.cfg.common_args) + shlex.split(extra)
        return cmd

    def train(self, run_dir: Path, cmd: List[str], iters: int) -> Dict[str, Any]:
        """Run (or resume, or skip) one training run; returns its ``train_done.json`` record."""
        done = run_dir / "train_done.json"
        if done.is_file():
            record = json.loads(done.read_text())
            if record.get("iters") == iters:
                return record
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "last.ckpt").is_file():
            cmd = cmd + ["--resume"]
        logger.info("training %s: %s", run_dir.name, shlex.join(cmd))
        if self.cfg.dry_run:
            return {"command": shlex.join(cmd), "dry_run": True}
        started = time.time()
        with open(run_dir / "train_stdout.log", "a", encoding="utf-8") as log:
            # in the current folder, like this process: relative --out / --init / data paths mean the same to both
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise HsstError(f"training {run_dir.name} failed (exit {proc.returncode}); see {run_dir}/train_stdout.log")
        record = {"command": shlex.join(cmd), "iters": iters, "seconds": round(time.time() - started, 1),
                  "checkpoint": str(run_dir / "probe_net.pt"), "finished": _now()}
        atomic_write_json(done, record)
        return record

    def init_checkpoint(self, trees: Dict[str, Path]) -> Path:
        """The common VIS-pretrained init: ``--init`` if given, else the study's ``pretrain`` run."""
        if self.cfg.init:
            path = Path(self.cfg.init)
            if not path.is_file():
                raise ConfigError(f"--init checkpoint not found: {path}")
            return path
        run_dir = self.out / "runs" / INIT_NAME
        cmd = self.train_command(run_dir, "pretrain", trees["pretrain"], self.cfg.pretrain_args, 0,
                                 self.cfg.pretrain_iters)
        self.train(run_dir, cmd, self.cfg.pretrain_iters)
        return run_dir / "probe_net.pt"

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluate(self, checkpoint: Path, run_dir: Path, seed: int = 0) -> Dict[str, Any]:
        """Evaluate a checkpoint on both simulated-NIR test sets; reports under ``run_dir/eval``."""
        from hsst.eval.report import write_report
        from hsst.eval.runner import EvalConfig, Evaluator

        results = {}
        evaluator = None
        try:
            for name, (nir_sim, mask) in TEST_SETS.items():
                cfg = EvalConfig(model=str(checkpoint), protocol="first-image", root=str(self.lfw),
                                 identities=f"{self.split_path}:test", max_probes=self.split["test"]["max_probes"],
                                 faces=self.cfg.faces, nir_sim=nir_sim, mask=mask, seed=0,
                                 cache=str(self.out / "cache" / "eval_embeddings.sqlite"),
                                 batch_size=self.cfg.eval_batch_size, workers=self.cfg.eval_workers,
                                 device=self.cfg.device, threads=self.cfg.threads, progress=self.cfg.progress)
                if evaluator is None:
                    evaluator = Evaluator(cfg)
                else:
                    evaluator.config = cfg.validate()
                result = evaluator.run()
                paths = write_report(result, run_dir / "eval", name)
                results[name] = {"summary": result["summary"], "fold": {k: v for k, v in result["folds"][0].items()
                                                                        if k != "roc"},
                                 "roc": result["folds"][0]["roc"], "title": result["title"],
                                 "fingerprint": result["protocol"]["fingerprint"],
                                 "model_sha256": result["model"]["sha256"], "report": str(paths["json"])}
        finally:
            if evaluator is not None:
                evaluator.close()
        return results

    def result_for(self, run_dir: Path, meta: Dict[str, Any], checkpoint: Path, train: Dict[str, Any]) -> None:
        result_path = run_dir / "result.json"
        if result_path.is_file() or self.cfg.dry_run:
            return
        evals = self.evaluate(checkpoint, run_dir)
        record = {**meta, "train": train, "checkpoint": str(checkpoint), "eval": evals, "finished": _now()}
        atomic_write_json(result_path, record, sort_keys=True)
        m = evals["masked"]["summary"]
        logger.info("%s: masked Rank-1 %.2f%%, VR@0.1%% %.2f%%", run_dir.name, 100 * m["rank1"]["mean"],
                    100 * m["vr@far=0.001"]["mean"])

    # ------------------------------------------------------------------------------------------------ all
    def _record_invocation(self) -> None:
        """Append this command line to ``study.json`` (the page's command list) with the current config."""
        record_path = self.out / "study.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        invocations = record.get("invocations", [])
        if not invocations or invocations[-1] != sys.argv:
            invocations.append(list(sys.argv))
        atomic_write_json(record_path, {"config": asdict(self.cfg), "invocations": invocations,
                                        "split_sha256": file_sha256(self.split_path), "updated": _now()})

    def run(self) -> List[str]:
        """Everything not done yet; returns the names of the runs that have results."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.cfg.dry_run:  # a dry run changes nothing, not even the record of commands
            self._record_invocation()
        self.check_transforms()
        trees = self.prepare_data()
        init = self.init_checkpoint(trees)
        init_dir = self.out / "runs" / INIT_NAME
        if self._selected(INIT_NAME):
            if self.cfg.init:  # trained elsewhere
                init_train = {"checkpoint": str(init), "external": True}
                if (init.parent / "config.json").is_file():  # hsst-train writes it beside probe_net.pt
                    init_train["config"] = json.loads((init.parent / "config.json").read_text())
                from hsst.train.models import read_checkpoint_meta

                # a run may stop before its --iters: the checkpoint knows how far it went
                init_train["iterations"] = read_checkpoint_meta(init).training.get("iterations")
            elif (init_dir / "train_done.json").is_file():
                init_train = json.loads((init_dir / "train_done.json").read_text())
            else:
                init_train = None
            if init_train is not None:
                init_dir.mkdir(parents=True, exist_ok=True)
                self.result_for(init_dir, {"name": INIT_NAME, "method": "pretrain", "loss": None,
                                           "train_data": "pretrain (VIS)", "seed": 0, "table": ["I", "II"]},
                                init, init_train)
        finished = []
        for spec in plan_runs(self.cfg.seeds, self.cfg.all_seeds):
            if not self._selected(spec.name):
                continue
            run_dir = self.out / "runs" / spec.name
            if (run_dir / "result.json").is_file():
                finished.append(spec.name)
                continue
            transform = self.cfg.masked_transform if spec.train_data == "masked" else self.cfg.plain_transform
            cmd = self.train_command(run_dir, spec.method, trees["train"], self.cfg.train_args, spec.seed,
                                     self.cfg.iters, loss=spec.loss, nir_transform=transform, init=init)
            record = self.train(run_dir, cmd, self.cfg.iters)
            self.result_for(run_dir, asdict(spec), run_dir / "probe_net.pt", record)
            if (run_dir / "result.json").is_file():
                finished.append(spec.name)
        return finished


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# =================================================================================================== report
def _mean_spread(values: Sequence[float]) -> Dict[str, float]:
    arr = np.asarray([np.nan if v is None else v for v in values], np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
            "n": int(arr.size)}


def _fmt(stat: Optional[Dict[str, float]]) -> str:
    if not stat:
        return "-"
    if not np.isfinite(stat["mean"]):
        return "n/a"
    text = f"{100 * stat['mean']:.2f}"
    if stat["n"] > 1:
        text += f" ± {100 * stat['std']:.2f} (n={stat['n']})"
    return text


def collect(runs_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Result records of every finished run, by name."""
    out = {}
    for path in sorted((Path(runs_dir) / "runs").glob("*/result.json")):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def aggregate(results: Dict[str, Dict[str, Any]]) -> Dict[tuple, Dict[str, Any]]:
    """(method, loss, train_data) -> {test set -> {metric -> mean/std/n over seeds}}."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for rec in results.values():
        groups.setdefault((rec["method"], rec["loss"], rec["train_data"]), []).append(rec)
    out = {}
    for key, recs in groups.items():
        entry: Dict[str, Any] = {"seeds": sorted(r["seed"] for r in recs), "runs": sorted(r["name"] for r in recs)}
        for test in TEST_SETS:
            entry[test] = {
                "rank1": _mean_spread([r["eval"][test]["summary"]["rank1"]["mean"] for r in recs]),
                "vr1": _mean_spread([r["eval"][test]["summary"]["vr@far=0.01"]["mean"] for r in recs]),
                "vr01": _mean_spread([r["eval"][test]["summary"]["vr@far=0.001"]["mean"] for r in recs]),
            }
        out[key] = entry
    return out


def _shown(path: Any) -> str:
    """A path as the page shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


#: hsst-train options that do not change a run's result (left out of the ablation table).
_NEUTRAL_OPTIONS = ("--workers", "--save-every", "--threads")


def _result_options(*arg_strings: str) -> str:
    """The hsst-train options of ``arg_strings`` that can change a result, as one string."""
    words, kept = shlex.split(" ".join(arg_strings)), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _NEUTRAL_OPTIONS:
            skip = True
        else:
            kept.append(word)
    return shlex.join(kept)


def _study_commands(study: Dict[str, Any]) -> List[str]:
    """The ``run`` command lines recorded in a ``study.json``, in order."""
    return [f"{COMMAND} {shlex.join(argv[1:])}" for argv in study.get("invocations", [])]


def _current_command(command: str) -> str:
    """A recorded study command as it runs now (the driver moved from ``hsst.eval.study`` to this tool)."""
    return COMMAND + command[len(_LEGACY_COMMAND):] if command.startswith(_LEGACY_COMMAND + " ") else command


def _init_strength(result: Dict[str, Any]) -> Optional[str]:
    """How strong an init row's checkpoint is: its training method and iterations, e.g. ``pretrain, dlib
    teacher, 3,000 / 6,000 iterations``; None where the record does not say."""
    train = result.get("train", {})
    cfg = train.get("config") or {}
    done = train.get("iterations", train.get("iters"))  # an --init checkpoint / a run of the study itself
    total = (cfg.get("optim") or {}).get("iters", train.get("iters"))
    if done is None or total is None:
        return None
    teacher = (cfg.get("teacher") or {}).get("name")
    parts = [cfg.get("method", result.get("method", "?"))] + ([f"{teacher} teacher"] if teacher else [])
    return f"{', '.join(parts)}, {done:,} / {total:,} iterations"


def _init_label(result: Dict[str, Any]) -> str:
    strength = _init_strength(result)
    return f"(the init: {strength})" if strength else "(the init)"


def render_settings(settings_dir: Path, kind: str = "ablation", fingerprint: Optional[str] = None) -> List[str]:
    """Markdown lines of a table of settings: one study folder per setting under ``settings_dir``
    (``<setting>/study.json`` + ``<setting>/runs/*/result.json``), one row per finished run, then the commands.

    Args:
        kind: what the settings are, for the error message (``ablation``: validation split; ``baseline``: the
            study's own test split).
        fingerprint: the test images fingerprint every run must have been evaluated on (None: not checked).

    Raises:
        DatasetError: no finished run under ``settings_dir``, or a run evaluated on other test images.
    """
    rows, commands = [], []
    for setting in sorted(p for p in Path(settings_dir).iterdir() if (p / "study.json").is_file()):
        study = json.loads((setting / "study.json").read_text())
        cfg = study.get("config", {})
        options = _result_options(cfg.get("common_args", ""), cfg.get("train_args", ""))
        for name, rec in sorted(collect(setting).items()):
            seen = rec["eval"]["nonmasked"].get("fingerprint")
            if fingerprint is not None and seen != fingerprint:
                raise DatasetError(f"{kind} run {setting.name}/{name} was evaluated on other test images "
                                   f"(fingerprint {seen}, the study's {fingerprint}): run it with the study's --split")
            m, n = rec["eval"]["masked"]["summary"], rec["eval"]["nonmasked"]["summary"]
            cells = [m["rank1"], m["vr@far=0.01"], m["vr@far=0.001"], n["rank1"], n["vr@far=0.001"]]
            rows.append(f"| {setting.name} | {name} | `{options if name != INIT_NAME else _init_label(rec)}` | "
                        + " | ".join(f"{100 * c['mean']:.2f}" for c in cells) + " |")
        commands += _study_commands(study)
    if not rows:
        raise DatasetError(f"no finished {kind} runs under {settings_dir}/<setting>/runs/*/result.json")
    return (["| setting | run | hsst-train options | masked Rank-1 | masked VR@1% | masked VR@0.1% | "
             "non-masked Rank-1 | non-masked VR@0.1% |", "|---|---|---|---:|---:|---:|---:|---:|"] + rows
            + ["", "Commands:", "", "```"] + commands + ["```"])


def render_results(runs_dir: Path, out_md: Path, plots_dir: Optional[Path] = None,
                   notes: Optional[Path] = None, ablations: Optional[Path] = None,
                   baselines: Optional[Path] = None) -> str:
    """Write the results page ``out_md`` (docs/RESULTS.md) from the finished runs (tables, commands,
    fingerprints, plots); ``baselines``: a folder of studies on the same test split (settings beside the
    tables, e.g. the distillation baseline); ``ablations``: one of validation-split studies."""
    from hsst.eval.report import plot_roc

    runs_dir = Path(runs_dir)
    results = collect(runs_dir)
    if not results:
        raise DatasetError(f"no finished study runs under {runs_dir}/runs (*/result.json)")
    study = json.loads((runs_dir / "study.json").read_text()) if (runs_dir / "study.json").is_file() else {}
    cfg = study.get("config", {})
    split = load_split(Path(cfg.get("split", DEFAULT_SPLIT)))
    agg = aggregate(results)
    plots_dir = Path(plots_dir or Path(out_md).parent / "study")
    lines = ["# Reproduction study: plain vs HSST on LFW with simulated NIR and synthesized masks", "",
             "All probe images in this study are **simulated NIR** made from LFW VIS photos (hsst.synth.nir), "
             "masked probes carry **synthesized masks** (hsst.synth.mask); no NIR camera image is involved. "
             "Gallery images are the VIS photos. Numbers are percentages; `±` is the sample standard deviation "
             "over seeds (n = number of seeds; for n = 2 it is the seeds' difference / sqrt 2).", "",
             f"Regenerate this page: `{COMMAND} report --runs " + str(runs_dir) + " --out " +
             _shown(out_md) + (f" --notes {_shown(notes)}" if notes else "")
             + (f" --baselines {baselines}" if baselines else "")
             + (f" --ablations {ablations}" if ablations else "") + "`", ""]
    planned = [spec.name for spec in plan_runs(cfg.get("seeds", [0, 1]), cfg.get("all_seeds", False))]
    done = [name for name in planned if name in results]
    if len(done) < len(planned):
        lines += [f"**In progress:** {len(done)} of {len(planned)} planned fine-tuning runs have finished "
                  f"({', '.join(done) or 'none'}); `-` marks rows still to run.", ""]
    lines += ["## Data", "",
              f"- LFW fingerprint (sha256 over identity, file, size): `{split['dataset_fingerprint']}`",
              f"- split: `{_shown(cfg.get('split', DEFAULT_SPLIT))}` (sha256 `{study.get('split_sha256', '?')}`), made with "
              f"`{_current_command(split['created_with'])}`",
              f"- test: {split['test']['count']} identities ({split['test']['rule']}); gallery "
              f"{split['test']['gallery_images']} VIS images; probes {split['test']['probe_images']} images "
              f"({split['test']['probes']})",
              f"- train: {split['train']['count']} identities, {split['train']['images']} images "
              f"({split['train']['rule']})",
              f"- pretrain: {split['pretrain']['count']} identities, {split['pretrain']['images']} images "
              f"({split['pretrain']['rule']})"]
    lines.append(f"- images: `{cfg.get('lfw', DEFAULT_LFW)}`")
    init_train = results.get(INIT_NAME, {}).get("train", {})
    if init_train.get("external"):
        from hsst.train.config import TrainConfig

        lines.append(f"- VIS-pretrained init: trained outside the study (`--init {init_train['checkpoint']}`)"
                     + (f"; its command: `{TrainConfig.from_dict(init_train['config']).command_line()}`"
                        if init_train.get("config") else "")
                     + (f", stopped after {init_train['iterations']} iterations"
                        if init_train.get("iterations") else ""))
    any_rec = next(iter(results.values()))
    lines.append(f"- test images fingerprint (protocol first-image on the test identities): "
                 f"`{any_rec['eval']['nonmasked']['fingerprint']}`")
    lines.append("- probe transforms (seed 0, per-image seeds from the image path): non-masked = `nir-sim` "
                 "(simulated NIR), masked = `nir-sim+mask` (synthesized mask, then simulated NIR)")
    lines.append(f"- test crops: `{cfg.get('faces', 'box')}` framing (hsst.eval.faces)")
    lines.append("")

    def row(label: str, key: tuple) -> str:
        e = agg.get(key)
        if e is None:
            return f"| {label} | - | - | - | - | - | - |"
        n, m = e["nonmasked"], e["masked"]
        return (f"| {label} | {_fmt(n['rank1'])} | {_fmt(n['vr1'])} | {_fmt(n['vr01'])} | {_fmt(m['rank1'])} | "
                f"{_fmt(m['vr1'])} | {_fmt(m['vr01'])} |")

    header = ["| model | non-masked Rank-1 | non-masked VR@1% | non-masked VR@0.1% | masked Rank-1 | "
              "masked VR@1% | masked VR@0.1% |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += ["## Table I analogue: softmax, training on non-masked vs masked simulated NIR", ""] + header
    lines.append(row("VIS-pretrained init (no fine-tuning)", ("pretrain", None, "pretrain (VIS)")))
    for data in TRAIN_DATA:
        for method in METHODS:
            lines.append(row(f"{method.upper() if method == 'hsst' else method}, trained on {data}",
                             (method, "softmax", data)))
    lines += ["", "## Table II analogue: each loss, trained on masked simulated NIR", ""] + header
    for loss in LOSSES:
        for method in METHODS:
            lines.append(row(f"{loss}, {method.upper() if method == 'hsst' else method}", (method, loss, "masked")))
    lines += ["", "## HSST minus plain (masked training), against the goal (+3 Rank-1, +5 VR@0.1% on masked, "
              "no loss on non-masked)", "",
              "| loss | Δ masked Rank-1 | Δ masked VR@0.1% | Δ non-masked Rank-1 | goal met |", "|---|---:|---:|---:|---|"]
    for loss in LOSSES:
        p, h = agg.get(("plain", loss, "masked")), agg.get(("hsst", loss, "masked"))
        if not p or not h:
            lines.append(f"| {loss} | - | - | - | not run |")
            continue
        d_r1 = h["masked"]["rank1"]["mean"] - p["masked"]["rank1"]["mean"]
        d_vr = h["masked"]["vr01"]["mean"] - p["masked"]["vr01"]["mean"]
        d_nm = h["nonmasked"]["rank1"]["mean"] - p["nonmasked"]["rank1"]["mean"]
        met = d_r1 >= 0.03 and d_vr >= 0.05 and d_nm >= 0
        fmt = lambda d: f"{100 * d:+.2f}" if np.isfinite(d) else "n/a"  # noqa: E731
        lines.append(f"| {loss} | {fmt(d_r1)} | {fmt(d_vr)} | {fmt(d_nm)} | {'yes' if met else 'no'} |")
    if baselines:
        lines += ["", "## Beside the tables: other settings on the same test split", "",
                  "Each setting is a study of its own (its `pretrain` row: the checkpoint it starts from or, for a "
                  "baseline trained outside the study, the baseline itself), evaluated with this page's protocol "
                  "on the same test images (checked by fingerprint).", ""]
        lines += render_settings(Path(baselines), "baseline", any_rec["eval"]["nonmasked"]["fingerprint"])
    # plots: ROC of the masked and non-masked test for every softmax row
    lines += ["", "## ROC (softmax rows, seed 0)", ""]
    for test in TEST_SETS:
        curves = {}
        for name, rec in sorted(results.items()):
            if rec.get("loss") in ("softmax", None) and rec.get("seed", 0) == 0:
                curves[name.replace("-s0", "")] = (rec["eval"][test]["roc"]["far"], rec["eval"][test]["roc"]["tar"])
        if curves:
            png = plot_roc(curves, plots_dir / f"roc_{test}.png",
                           title=f"LFW study, {test} simulated NIR probes, softmax rows")
            lines.append(f"![ROC {test}]({os.path.relpath(png, Path(out_md).parent)})")
    if notes:
        lines += ["", "## Notes", "", Path(notes).read_text(encoding="utf-8").strip()]
    if ablations:
        lines += ["", "## Validation-split ablations", "",
                  "Settings tried to find out why HSST does or does not beat plain training, evaluated on the "
                  "validation split's test identities (never on the study's test split); one seed each. The "
                  "`pretrain` row is the common init before fine-tuning.", ""] + render_settings(Path(ablations))
    lines += ["", "## Commands", "", "```"] + _study_commands(study)
    lines += ["```",
              "", "Training runs (each resumed with `--resume` when interrupted):", "",
              "| run | table | seconds | command |", "|---|---|---:|---|"]
    for name, rec in sorted(results.items()):
        tr = rec.get("train", {})
        strength = _init_strength(rec)
        command = f"`{tr['command']}`" if "command" in tr else \
            f"trained outside the study: `--init {tr.get('checkpoint', '?')}`" + \
            (f", the init: {strength}" if strength else "")
        lines.append(f"| {name} | {','.join(rec.get('table', []))} | {tr.get('seconds', '-')} | {command} |")
    lines += ["", "Per-run evaluation reports (JSON with every number, model sha256, dataset fingerprint, markdown, "
              "ROC PNG) are in `" + str(runs_dir) + "/runs/<run>/eval/`.", ""]
    text = "\n".join(lines)
    atomic_write_text(out_md, text)
    return text


# ====================================================================================================== CLI
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """The reproduction study: split, run, report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


@main.command("split")
@click.option("--lfw", type=click.Path(file_okay=False, exists=True), default=str(DEFAULT_LFW), show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_SPLIT), show_default=True,
              help="The split file to write (default: the repository's committed split).")
@click.option("--n-test", type=int, default=180, show_default=True, help="Test identities (>= 5 images each).")
@click.option("--max-probes", type=int, default=10, show_default=True, help="Probes per test identity.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--exclude-test-of", type=click.Path(dir_okay=False, exists=True),
              help="A validation split: leave out the test identities of this split (its test never informs "
                   "the choices made on the validation split).")
def split_cmd(lfw: str, out: str, n_test: int, max_probes: int, seed: int, exclude_test_of: Optional[str]) -> None:
    """Write the identity split (identity names only)."""
    exclude = None
    if exclude_test_of:
        exclude = {"rule": f"the test identities of {exclude_test_of}",
                   "identities": load_split(Path(exclude_test_of))["test"]["identities"]}
    split = make_split(Path(lfw), n_test=n_test, max_probes=max_probes, seed=seed, exclude=exclude)
    if exclude:
        split["created_with"] += f" --exclude-test-of {exclude_test_of}"
    atomic_write_json(out, split, indent=1)
    click.echo(f"test {split['test']['count']} identities ({split['test']['probe_images']} probes), train "
               f"{split['train']['count']} identities ({split['train']['images']} images), pretrain "
               f"{split['pretrain']['count']} identities ({split['pretrain']['images']} images) -> {out}")


@main.command("run")
@click.option("--out", default="runs/study", show_default=True, help="Study folder (runs, data links, cache).")
@click.option("--lfw", type=click.Path(file_okay=False), default=str(DEFAULT_LFW), show_default=True)
@click.option("--split", type=click.Path(dir_okay=False), default=str(DEFAULT_SPLIT), show_default=True)
@click.option("--iters", type=int, default=StudyConfig.iters, show_default=True, help="Fine-tuning iterations.")
@click.option("--pretrain-iters", type=int, default=StudyConfig.pretrain_iters, show_default=True)
@click.option("--seeds", default="0,1", show_default=True, help="Seeds of the headline rows (first: all rows).")
@click.option("--all-seeds", is_flag=True, help="Every row with every seed.")
@click.option("--only", help="Comma list of run-name patterns (e.g. 'pretrain,*-softmax-masked-*').")
@click.option("--init", type=click.Path(dir_okay=False), help="Use this VIS-pretrained checkpoint as the init.")
@click.option("--common-args", default=StudyConfig.common_args, show_default=True,
              help="hsst-train options of every run.")
@click.option("--pretrain-args", default=StudyConfig.pretrain_args, show_default=True,
              help="Extra hsst-train options of the pretraining run.")
@click.option("--train-args", default=StudyConfig.train_args, show_default=True,
              help="Extra hsst-train options of the plain / HSST runs.")
@click.option("--plain-transform", default=StudyConfig.plain_transform, show_default=True,
              help="--nir-transform of non-masked training.")
@click.option("--masked-transform", default=StudyConfig.masked_transform, show_default=True,
              help="--nir-transform of masked training.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=0, show_default=True, help="torch / onnxruntime threads (0: default).")
@click.option("--faces", type=click.Choice(["box", "detect", "aligned"]), default="box", show_default=True,
              help="Test crops: the training loader's box framing (raw LFW), detect + align, or 'aligned' when "
                   "--lfw holds aligned crops already (hsst-mask --no-mask --align 112).")
@click.option("--eval-batch-size", type=int, default=64, show_default=True)
@click.option("--eval-workers", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Evaluation progress bars.")
@click.option("--dry-run", is_flag=True, help="Log the training commands, run nothing.")
def run_cmd(seeds: str, **options) -> None:
    """Train and evaluate every run that is not done yet."""
    try:
        config = StudyConfig(seeds=[int(s) for s in seeds.split(",") if s.strip()], **options)
        finished = Study(config).run()
    except HsstError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(finished)} runs with results under {config.out}/runs")


@main.command("report")
@click.option("--runs", "runs_dir", default="runs/study", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The page to write, e.g. docs/RESULTS.md (written only when named here).")
@click.option("--plots", type=click.Path(file_okay=False), help="Folder of the plots.  [default: <out dir>/study]")
@click.option("--notes", type=click.Path(dir_okay=False, exists=True),
              help="Markdown file included as the page's 'Notes' section (choices made, what is left).")
@click.option("--ablations", type=click.Path(file_okay=False, exists=True),
              help="Folder of validation-split studies, one per setting (run with --split of a validation split).")
@click.option("--baselines", type=click.Path(file_okay=False, exists=True),
              help="Folder of studies on the same test split, one per setting (e.g. the distillation baseline "
                   "run as an --init with --only pretrain).")
def report_cmd(runs_dir: str, out: str, plots: Optional[str], notes: Optional[str], ablations: Optional[str],
               baselines: Optional[str]) -> None:
    """Write the results page (docs/RESULTS.md when --out names it) from the finished runs."""
    try:
        render_results(Path(runs_dir), Path(out), Path(plots) if plots else None,
                       notes=Path(notes) if notes else None, ablations=Path(ablations) if ablations else None,
                       baselines=Path(baselines) if baselines else None)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
