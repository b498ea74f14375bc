"""``hsst-train``: train the probe-net with HSST, the plain baseline, or pretrain on VIS data.

Examples::

    hsst-train --data /data/lfw --min-images 5 --iters 2000 --milestones 1200,1600 --out runs/lfw
    hsst-train --casia /data/NIR-VIS-2.0 --fold 1 --init runs/pretrain/probe_net.pt --out runs/casia1
    hsst-train --method pretrain --teacher dlib --data /data/lfw --out runs/pretrain
    hsst-train --out runs/casia1 --resume                 # continue exactly where the run stopped
    hsst-train --out runs/casia1 --resume --pause-after 5000   # a time-boxed slice of a long run
    torchrun --nproc-per-node 4 -m hsst.train.cli --casia ... --fold 1 --out runs/ddp

Every option maps onto one field of :class:`~hsst.train.config.TrainConfig`; options that are not given keep
the value of ``--config FILE``, of the run's saved ``config.json`` (with ``--resume``), or the paper's default.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import click

from hsst.core.errors import HsstError
from hsst.train.config import (BACKBONES, COLORS, CONFIG_NAME, LOSSES, METHODS, TEACHERS, TrainConfig,
                               parse_milestones)

logger = logging.getLogger(__name__)

#: CLI option (python name) -> (config section, field)
OPTION_FIELDS: Dict[str, Tuple[str, str]] = {
    "data": ("data", "data"), "casia": ("data", "casia"), "fold": ("data", "fold"),
    "nir_transform": ("data", "nir_transform"), "augment": ("data", "augment"), "workers": ("data", "workers"),
    "min_images": ("data", "min_images"), "max_identities": ("data", "max_identities"),
    "backbone": ("model", "backbone"), "input_size": ("model", "input_size"),
    "embedding_dim": ("model", "embedding_dim"), "color": ("model", "color"), "init": ("model", "init"),
    "iters": ("optim", "iters"), "batch_size": ("optim", "batch_size"), "lr": ("optim", "lr"),
    "milestones": ("optim", "milestones"), "momentum": ("optim", "momentum"),
    "weight_decay": ("optim", "weight_decay"),
    "queue_size": ("hsst", "queue_size"), "ema": ("hsst", "ema"), "prefill": ("hsst", "prefill"),
    "calibrate_bn": ("hsst", "calibrate_bn"), "teacher_weight": ("hsst", "teacher_weight"),
    "loss": ("loss", "name"), "scale": ("loss", "scale"), "margin": ("loss", "margin"),
    "imprint": ("loss", "imprint"),
    "teacher": ("teacher", "name"), "teacher_cache": ("teacher", "cache"), "teacher_mse": ("teacher", "mse_weight"),
    "out": ("run", "out"), "resume": ("run", "resume"), "overwrite": ("run", "overwrite"),
    "device": ("run", "device"), "seed": ("run", "seed"),
    "save_every": ("run", "save_every"), "amp": ("run", "amp"), "deterministic": ("run", "deterministic"),
    "progress": ("run", "progress"), "threads": ("run", "threads"),
}


def build_config(options: Dict[str, Any], base: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Apply CLI options (None = not given) on top of ``base`` (a config dict) and validate.

    Raises:
        ConfigError: invalid values or combinations.
    """
    data: Dict[str, Any] = json.loads(json.dumps(base)) if base else TrainConfig().to_dict()
    if options.get("method") is not None:
        data["method"] = options["method"]
    in_chans = options.get("in_chans")
    if in_chans is not None:
        color = "gray" if in_chans == 1 else "rgb"
        if options.get("color") not in (None, color):
            raise click.UsageError(f"--in-chans {in_chans} contradicts --color {options['color']}; give one of them")
        options = {**options, "color": color}
    for name, (section, key) in OPTION_FIELDS.items():
        value = options.get(name)
        if value is None:
            continue
        if name == "milestones":
            value = parse_milestones(value)
        data.setdefault(section, {})[key] = value
    return TrainConfig.from_dict(data).validate()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--method", type=click.Choice(METHODS), help="hsst (paper), plain (fine-tuning baseline) or pretrain "
              "(VIS classification, or distillation with --teacher).  [default: hsst]")
@click.option("--loss", type=click.Choice(LOSSES), help="Training loss.  [default: softmax]")
@click.option("--backbone", type=click.Choice(BACKBONES), help="Network.  [default: mobilefacenet]")
@click.option("--input-size", type=int, help="Aligned crop side, a multiple of 16 (paper: 144).  [default: 112]")
@click.option("--color", type=click.Choice(COLORS), help="Network input colour mode.  [default: gray]")
@click.option("--in-chans", type=click.Choice(["1", "3"]), callback=lambda c, p, v: int(v) if v else None,
              help="Input channels (1 = --color gray, 3 = --color rgb).")
@click.option("--embedding-dim", type=int, help="Embedding length.  [default: 512]")
@click.option("--data", type=click.Path(file_okay=False), help="Identity folders: <id>/{nir,vis}/ or VIS-only <id>/.")
@click.option("--casia", type=click.Path(file_okay=False), help="CASIA NIR-VIS 2.0 root (official layout).")
@click.option("--fold", type=int, help="CASIA protocol fold 1..10 (with --casia).")
@click.option("--min-images", type=int, help="Skip identities with fewer images (VIS-only default 2).")
@click.option("--max-identities", type=int, help="Use only the first N identities (0 = all).")
@click.option("--nir-transform", help="NIR-side transform name (gray; nir-sim, nir-sim+mask when installed).  "
              "[default: gray]")
@click.option("--augment/--no-augment", default=None, help="Random horizontal flips.  [default: on]")
@click.option("--workers", type=int, help="DataLoader worker processes.  [default: 0]")
@click.option("--iters", type=int, help="Optimizer steps.  [default: 10000]")
@click.option("--batch-size", type=int, help="Identities (pairs) or images per step and process.  [default: 64]")
@click.option("--lr", type=float, help="Initial learning rate.  [default: 5e-4]")
@click.option("--milestones", help="Comma list of iterations where lr /= 10.  [default: 60%,80% of --iters "
              "(paper: 6000,8000 of 10000)]")
@click.option("--momentum", type=float, help="SGD momentum.  [default: 0.9]")
@click.option("--weight-decay", type=float, help="SGD weight decay.  [default: 5e-4]")
@click.option("--queue-size", type=int, help="Prototypes per queue (HSST).  [default: 128]")
@click.option("--ema", type=float, help="Gallery-net moving-average weight (HSST).  [default: 0.999]")
@click.option("--prefill/--no-prefill", default=None, help="Fill the queues before step 1 (HSST).  [default: on]")
@click.option("--calibrate-bn/--no-calibrate-bn", default=None, help="Re-estimate BatchNorm statistics on the "
              "warm-up batches before the gallery-net fills the queues (HSST).  [default: on]")
@click.option("--teacher-weight", type=float, help="HSST: weight of a term pulling both probe embeddings to the "
              "frozen init's embedding of the VIS image (keeps a pretrained init from forgetting).  [default: 0]")
@click.option("--scale", type=float, help="Softmax-family scale s.  [default: 30]")
@click.option("--margin", type=float, help="AM / Arc / triplet margin.  [default: per loss]")
@click.option("--imprint/--no-imprint", default=None, help="Plain classifier: start class weights at the init's "
              "mean VIS embedding per identity (weight imprinting).  [default: on with --init]")
@click.option("--init", type=click.Path(dir_okay=False), help="Probe checkpoint or foreign state dict to start from.")
@click.option("--teacher", type=click.Choice(TEACHERS), help="Distil from a teacher (--method pretrain only).")
@click.option("--teacher-cache", type=click.Path(dir_okay=False), help="Teacher descriptor cache (.npz).")
@click.option("--teacher-mse", type=float, help="Weight of an MSE term added to 1 - cos.  [default: 0]")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder.  [default: runs/hsst]")
@click.option("--resume", is_flag=True, default=None, help="Continue the run in --out exactly where it stopped.")
@click.option("--pause-after", type=int, help="Save a resume checkpoint after iteration N and exit: a time-boxed "
              "job; --resume continues the same schedule.")
@click.option("--overwrite", is_flag=True, default=None, help="Start over in an --out that already holds a run.")
@click.option("--device", help="cpu, cuda, cuda:N or auto.  [default: auto]")
@click.option("--seed", type=int, help="Run seed.  [default: 0]")
@click.option("--save-every", type=int, help="Resume checkpoint every N iterations (0: at the end).  [default: 1000]")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA.  [default: on]")
@click.option("--deterministic", is_flag=True, default=None, help="Deterministic kernels (bit-exact resume).")
@click.option("--progress/--no-progress", default=None, help="Progress bar.  [default: on]")
@click.option("--threads", type=int, help="torch CPU threads (0: torch's default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="Start from this config.json / .yaml (options given here override it).")
@click.option("--print-config", is_flag=True, help="Print the resolved config as JSON and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(config_file: Optional[str], print_config: bool, verbose: bool, pause_after: Optional[int],
         **options: Any) -> None:
    """Train a NIR-VIS face embedding network (HSST, plain baseline, VIS pretraining)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    base = None
    try:
        if config_file:
            base = TrainConfig.load(config_file).to_dict()
        if options.get("resume"):
            out = options.get("out") or (base or {}).get("run", {}).get("out")
            saved = Path(out or TrainConfig().run.out) / CONFIG_NAME
            if saved.is_file() and base is None:
                base = TrainConfig.load(saved).to_dict()
                base["run"]["overwrite"] = False  # the saved run may have been started with --overwrite
        config = build_config(options, base)
    except HsstError as exc:
        raise click.UsageError(str(exc)) from exc
    if print_config:
        click.echo(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return
    # The loop loads only when it runs; torch itself is already imported (the config reads the registries of
    # models and losses to validate its choices).
    from hsst.train.trainer import train

    try:
        result = train(config, pause_after=pause_after)
    except HsstError as exc:
        raise click.ClickException(str(exc)) from exc
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return
    click.echo(f"probe-net:  {result.probe_checkpoint}")
    click.echo(f"resume:     {result.resume_checkpoint}")
    click.echo(f"config:     {result.config_path}")
    click.echo(f"log:        {result.log_path}")
    click.echo(f"iterations: {result.iterations}  final loss {result.final_loss:.4f} "
               f"(first {result.mean_loss_first:.4f}, last {result.mean_loss_last:.4f})  "
               f"{result.images_per_s:.1f} images/s")


if __name__ == "__main__":  # torchrun -m hsst.train.cli ...
    main()
