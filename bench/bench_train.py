"""Training throughput: HSST vs the plain baseline on the same real data, measured in one run.

    python bench/bench_train.py [--iters 20 --batch-size 16 --input-size 112 --device auto --data DIR]

An HSST step with B identities pushes 2B images (B NIR + B VIS) through the probe-net (forward + backward)
and the same 2B through the gallery-net (forward only, no gradient). The fair baseline is therefore a plain
step with 2B images (the same probe-net work); the ratio of the two step times is the HSST overhead, and the
goal is <= 1.6x. The plain step with B images (the same --batch-size) is printed as well.

Data: AT&T/ORL (40 identities, VIS-only folders; NIR side = grayscale) from the shared folder
(``$HSST_SHARED`` or ``../shared``), or ``--data``. Step times are medians over the iterations after
``--warmup``, read from each run's ``train_log.jsonl``.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

from hsst.samples import shared_dir

ROOT = Path(__file__).resolve().parents[1]


def _default_data() -> Path:
    return shared_dir() / "datasets" / "att_orl"


def run(method: str, loss: str, batch: int, args: argparse.Namespace, out: Path) -> dict:
    from hsst.train.config import TrainConfig
    from hsst.train.logging_utils import read_jsonl
    from hsst.train.trainer import train

    cfg = TrainConfig.from_dict({
        "method": method,
        "data": {"data": str(args.data), "workers": args.workers},
        "model": {"input_size": args.input_size, "backbone": args.backbone},
        "optim": {"iters": args.iters, "batch_size": batch, "milestones": []},
        "hsst": {"queue_size": args.queue_size},
        "loss": {"name": loss},
        "run": {"out": str(out), "device": args.device, "save_every": 0, "progress": False,
                "threads": args.threads, "amp": not args.no_amp},
    })
    result = train(cfg)
    log = read_jsonl(result.log_path)[args.warmup:]
    step = statistics.median(r["step_time"] for r in log)
    images = (2 if method == "hsst" else 1) * batch
    return {"step": step, "images": images, "images_per_s": images / step}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16, help="HSST identities per step (B)")
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--backbone", default="mobilefacenet")
    ap.add_argument("--queue-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-amp", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hsst").setLevel(logging.WARNING)
    if not args.data.is_dir():
        print(f"data not found: {args.data} (set HSST_SHARED or pass --data)", file=sys.stderr)
        return 2
    if args.iters <= args.warmup:
        print("--iters must exceed --warmup", file=sys.stderr)
        return 2
    b = args.batch_size
    with tempfile.TemporaryDirectory(prefix="hsst-bench-") as tmp:
        tmp = Path(tmp)
        hsst = run("hsst", "softmax", b, args, tmp / "hsst")
        plain2 = run("plain", "softmax", 2 * b, args, tmp / "plain2b")
        plain1 = run("plain", "softmax", b, args, tmp / "plain1b")
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"bench_train: {args.backbone} {args.input_size}px, {args.data.name}, device {device}, "
          f"torch threads {torch.get_num_threads()}, {args.iters} iters (median after {args.warmup})")
    rows = [("hsst", f"B={b} pairs", hsst), ("plain", f"{2 * b} images", plain2), ("plain", f"{b} images", plain1)]
    for name, what, r in rows:
        print(f"  {name:6s} {what:14s} step {r['step'] * 1000:9.1f} ms   {r['images_per_s']:8.1f} images/s "
              f"(probe-net images)")
    ratio = hsst["step"] / plain2["step"]
    print(f"HSST/plain step-time ratio at equal probe-net images ({2 * b}/step): {ratio:.2f}x  "
          f"(goal <= 1.6x: {'met' if ratio <= 1.6 else 'NOT met'})")
    print(f"HSST/plain step-time ratio at equal --batch-size {b} (plain sees half the images): "
          f"{hsst['step'] / plain1['step']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
