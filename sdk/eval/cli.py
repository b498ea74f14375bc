"""``hsst-eval``: evaluate a checkpoint, ONNX file or TensorRT engine on a face recognition protocol.

Examples::

    hsst-eval --model model.onnx --casia /data/NIR-VIS-2.0 --fold all
    hsst-eval --model model.onnx --data /data/oulu --protocol all-vis --template identity
    hsst-eval --model probe_net.pt --gallery enrol/ --probes probes/ --nir-sim --mask
    hsst-eval --model model.onnx --pairs pairs.txt --images lfw/ --write-thresholds
    hsst-eval --model model.onnx --data lfw/ --protocol first-image --config firmware_configs/jetson-nano.yaml

``--faces detect`` finds faces as the gate does: with the detector settings of a gate config (``--config``,
default: the runtime's defaults); ``--det-thresh``, ``--min-face`` ... override single settings.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import click

from hsst.core.errors import HsstError
from hsst.eval.faces import FACE_MODES
from hsst.eval.metrics import format_far
from hsst.eval.report import faces_text, pct, write_report
from hsst.eval.runner import TEMPLATES, EvalConfig, Evaluator
from hsst.runtime.config import DETECTOR_MODELS, DETECTOR_VARIANTS, NORMALIZE_MODES

logger = logging.getLogger(__name__)


def _folds(value: Optional[str]):
    if value is None or value == "all":
        return list(range(1, 11))
    try:
        folds = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"--fold takes K, K1,K2,... or all; got {value!r}") from None
    if any(not 1 <= k <= 10 for k in folds):
        raise click.BadParameter(f"CASIA NIR-VIS 2.0 folds are 1..10; got {value!r}")
    return folds


def build_config(model: str, casia: Optional[str], fold: Optional[str], data: Optional[str],
                 protocol: Optional[str], gallery: Optional[str], probes: Optional[str], pairs: Optional[str],
                 images: Optional[str], aligned: bool, faces: Optional[str], **options) -> EvalConfig:
    """Map CLI options onto an :class:`EvalConfig` (protocol inferred from which inputs are given)."""
    sources = [name for name, v in (("--casia", casia), ("--data", data), ("--gallery/--probes", gallery or probes),
                                    ("--pairs/--images", pairs or images)) if v]
    if len(sources) != 1:
        raise click.UsageError("give exactly one dataset: --casia ROOT, --data ROOT, --gallery DIR --probes DIR, or "
                               f"--pairs FILE --images DIR (got {', '.join(sources) or 'none'})")
    if casia:
        protocol, root = protocol or "casia", casia
        if protocol != "casia":
            raise click.UsageError(f"--casia evaluates the casia protocol, not {protocol}")
    elif data:
        protocol, root = protocol or "all-vis", data
        if protocol not in ("all-vis", "first-image"):
            raise click.UsageError("--data takes --protocol all-vis or first-image")
    elif gallery or probes:
        protocol, root = "folders", None
    else:
        protocol, root = "pairs", None
    if fold is not None and protocol != "casia":
        raise click.UsageError("--fold only applies to --casia")
    if aligned and faces not in (None, "aligned"):
        raise click.UsageError(f"--aligned contradicts --faces {faces}")
    return EvalConfig(model=model, protocol=protocol, root=root, folds=_folds(fold), gallery=gallery, probes=probes,
                      pairs=pairs, images=images, faces="aligned" if aligned else (faces or "detect"),
                      **options).validate()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--model", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Probe-net checkpoint (.pt), ONNX file or TensorRT engine (with its .json sidecar).")
@click.option("--casia", type=click.Path(file_okay=False, exists=True), help="CASIA NIR-VIS 2.0 root (view 2).")
@click.option("--fold", help="CASIA fold K, a comma list, or all.  [default: all]")
@click.option("--data", type=click.Path(file_okay=False, exists=True),
              help="Dataset root: generic <id>/{nir,vis} (all-vis) or identity folders (first-image).")
@click.option("--protocol", type=click.Choice(["all-vis", "first-image"]),
              help="Protocol for --data: all-vis (Oulu/BUAA style) or first-image.  [default: all-vis]")
@click.option("--identities", help="first-image: only these identities (.txt list, or split.json:test).")
@click.option("--max-probes", type=int, help="first-image: at most N probes per identity.")
@click.option("--gallery", type=click.Path(file_okay=False, exists=True), help="Gallery identity folders <id>/<img>.")
@click.option("--probes", type=click.Path(file_okay=False, exists=True), help="Probe identity folders <id>/<img>.")
@click.option("--pairs", type=click.Path(dir_okay=False, exists=True), help="LFW-style pairs file.")
@click.option("--images", type=click.Path(file_okay=False, exists=True), help="Images of --pairs (<name>/<name>_NNNN.jpg).")
@click.option("--template", type=click.Choice(TEMPLATES), default="image", show_default=True,
              help="Gallery templates per image or per identity (mean of normalised embeddings).")
@click.option("--faces", type=click.Choice(FACE_MODES),
              help="detect + align (default), aligned crops, or the training loader's fixed box framing.")
@click.option("--aligned", is_flag=True, help="Images are aligned crops of the model's size (= --faces aligned).")
@click.option("--config", "gate_config", type=click.Path(dir_okay=False, exists=True),
              help="Gate config (firmware_configs/*.yaml) whose detector settings --faces detect uses, so the "
              "evaluation finds the faces the gate finds.  [default: the runtime's default settings]")
@click.option("--detector", type=click.Choice(DETECTOR_MODELS), help="Override detector.model.")
@click.option("--variant", type=click.Choice(DETECTOR_VARIANTS), help="Override detector.variant (BlazeFace models).")
@click.option("--det-thresh", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Override detector.det_thresh (minimum face score).")
@click.option("--min-face", type=click.IntRange(min=1), help="Override detector.min_face (pixels).")
@click.option("--normalize", type=click.Choice(NORMALIZE_MODES), help="Override detector.normalize (hard light).")
@click.option("--nir-sim", is_flag=True, help="Probes become simulated NIR (seeded).")
@click.option("--mask", is_flag=True, help="Probes get synthesized face masks (seeded).")
@click.option("--mask-types", help="Comma list of mask types (surgical,kn95,n95,cloth).  [default: all]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the probe transforms.")
@click.option("--threshold", type=float, help="Fixed threshold for pair accuracy (default: the model's table).")
@click.option("--threshold-far", type=float, default=1e-3, show_default=True,
              help="FAR whose threshold from the model's table is the fixed pair threshold.")
@click.option("--write-thresholds", is_flag=True,
              help="Write the measured FAR -> threshold table into the model's metadata (sidecar / checkpoint).")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder.  [default: runs/eval]")
@click.option("--name", "stem", default="eval", show_default=True, help="Report file stem.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Crops per model call.")
@click.option("--workers", type=int, default=0, show_default=True, help="Threads preparing crops.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--threads", type=int, default=0, show_default=True, help="onnxruntime intra-op threads (0: default).")
@click.option("--cache", type=click.Path(dir_okay=False), help="Embedding cache file.  [default: ~/.cache/hsst]")
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
@click.option("--progress/--no-progress", default=True, help="Progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(write_thresholds: bool, out: Optional[str], stem: str, no_cache: bool, verbose: bool, **options) -> None:
    """Evaluate a face embedding model: Rank-1, CMC, VR@FAR, ROC, FAR -> threshold table."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = build_config(use_cache=not no_cache, **options)
    except HsstError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        evaluator = Evaluator(config)
        try:
            result = evaluator.run()
        finally:
            evaluator.close()
        paths = write_report(result, Path(out or "runs/eval"), stem)
        if write_thresholds:
            from hsst.eval.embedders import write_thresholds as write_table

            table = _thresholds(result)
            written = write_table(config.model, table, {"protocol": result["protocol"]["name"],
                                                        "fingerprint": result["protocol"]["fingerprint"],
                                                        "probe_transform": result["probe_transform"]["name"],
                                                        "faces": faces_text(result["faces"])})
            click.echo(f"thresholds: {len(table)} FARs written to {written}")
    except HsstError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_summary(result)
    for kind, path in paths.items():
        click.echo(f"{kind:9s} {path}")


def _thresholds(result) -> dict:
    if result["protocol"]["kind"] == "identification":
        return dict(result["summary"]["thresholds"])
    return {k: v["threshold"] for k, v in result["pairs"]["threshold_table"].items()}


def _percent(value, std=None) -> str:
    """``97.31%`` (``± std`` when given), or ``n/a`` without a percent sign when there is no value."""
    text = pct(value, std)
    return text if text == "n/a" else f"{text}%"


def _echo_summary(result) -> None:
    s = result["summary"]
    click.echo(result["title"])
    click.echo(f"faces: {faces_text(result['faces'])}")
    if result["protocol"]["kind"] == "identification":
        std = (lambda d: d["std"]) if s["folds"] > 1 else (lambda d: None)  # noqa: E731
        v1, v2 = s[f"vr@far={format_far(1e-2)}"], s[f"vr@far={format_far(1e-3)}"]
        click.echo(f"Rank-1 {_percent(s['rank1']['mean'], std(s['rank1']))}  "
                   f"VR@FAR=1% {_percent(v1['mean'], std(v1))}  "
                   f"VR@FAR=0.1% {_percent(v2['mean'], std(v2))}  ({s['folds']} trial(s))")
    else:
        p = result["pairs"]
        click.echo(f"accuracy {_percent(p['accuracy']['mean'], p['accuracy']['std'])} (10-fold)  fixed-threshold "
                   f"{_percent(p['fixed_threshold']['accuracy'])}  VR@FAR=1% {_percent(p['vr'].get(format_far(1e-2)))}")


if __name__ == "__main__":
    main()
