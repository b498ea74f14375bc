"""``hsst-export``: probe-net (and face detectors) to ONNX, onnxruntime INT8 and TensorRT engines.

Examples::

    hsst-export --weights runs/hsst/probe.pt --data faces/ --onnx --simplify
    hsst-export --weights probe.pt --data faces/ --format onnx-int8            # x86 gates
    hsst-export --weights exports/hsst-mobilefacenet-112.onnx --trt --half --dynamic --batch 8 --data faces/
    hsst-export --weights probe.pt --data faces/ --trt --int8 --device dla:0 --detector

Exit status: 0 every file written and passed its gate; 1 bad input or options; 2 an accuracy gate failed
(the file is kept as ``<file>.failed``); 3 TensorRT is not usable here (ONNX written, commands printed).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import click

from hsst.core.errors import HsstError
from hsst.export.exporter import (EXIT_ERROR, EXIT_GATE, EXIT_NO_TRT, EngineNotBuilt, ExportResult, Exporter,
                                  GateFailed, write_report)
from hsst.export.options import DEFAULT_OPSET, FORMATS, ExportOptions

logger = logging.getLogger("hsst.export")


def _jetson_config(engine: Path) -> str:
    """The firmware configuration of the Jetson generation whose TensorRT built ``engine`` (by its file name)."""
    from hsst.runtime.model_files import parse_engine_name

    tag = (parse_engine_name(engine) or {}).get("trt", "")
    if len(tag) >= 6:       # TensorRT >= 10 (100300): JetPack 6, Orin
        return "firmware_configs/jetson-orin-nano.yaml"
    if tag >= "8500":       # TensorRT 8.5-9: JetPack 5, Xavier / Orin
        return "firmware_configs/jetson-xavier-nx.yaml"
    return "firmware_configs/jetson-nano.yaml"


def _next_command(result: ExportResult, opts: ExportOptions) -> str:
    """What to run with the files just written (configurations of the repository's firmware_configs/)."""
    kinds = {a.kind: a for a in result.artifacts}
    if "engine" in kinds:
        path = kinds["engine"].path
        return f"hsst-gate --config {_jetson_config(path)} --model {path} --enroll enrol/   (on this device)"
    if "onnx-int8" in kinds:
        return (f"hsst-gate --config firmware_configs/laptop-cpu.yaml --model {kinds['onnx-int8'].path} "
                "--enroll enrol/   (x86 gate, onnxruntime)")
    if "onnx" in kinds:
        path = kinds["onnx"].path
        return (f"hsst-gate --config firmware_configs/laptop-cpu.yaml --model {path} --enroll enrol/   (onnxruntime); "
                f"for a Jetson copy {path} and {path.name}.json there, then: hsst-export --weights {path.name} --trt "
                "--half --data faces/")
    return "hsst-export --help"


def _summary(result: ExportResult) -> str:
    parts = []
    for art in result.artifacts:
        gate = f", cos {art.parity.statistic} {getattr(art.parity, 'cosine_' + art.parity.statistic):.5f}" \
            if art.parity else ""
        parts.append(f"{art.path.name} {art.size_mb:.1f} MB{gate}")
    return "; ".join(parts)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--weights", "-w", type=click.Path(path_type=Path), default=None,
              help="Probe-net checkpoint (hsst-train) or an exported ONNX with its .json sidecar. "
                   "Default: the shipped model.")
@click.option("--onnx", "want_onnx", is_flag=True, help="Write the float32 ONNX (always written; the default format).")
@click.option("--trt", "--engine", "want_trt", is_flag=True,
              help="Build a TensorRT engine (on the device that runs it).")
@click.option("--format", "-f", "formats", multiple=True, type=click.Choice(FORMATS + ("trt",), case_sensitive=False),
              help="Formats to write (repeatable): onnx, onnx-int8 (onnxruntime INT8), engine (alias trt).")
@click.option("--detector", is_flag=True, help="Also export the face detector models (BlazeFace, face mesh).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Faces for the accuracy gates and INT8 calibration: aligned crops, or photos (the largest face of "
                   "each is detected and aligned). Default: the bundled sample photo (gates only).")
@click.option("--half", is_flag=True, help="TensorRT FP16 engine.")
@click.option("--int8", is_flag=True, help="TensorRT INT8 engine (calibrated on --data).")
@click.option("--dynamic", is_flag=True, help="Symbolic batch; engine profile 1 / batch//2 / batch.")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch, or the maximum with --dynamic.")
@click.option("--imgsz", type=int, default=None, help="Input side (must match the model's crop size).")
@click.option("--workspace", type=float, default=None, help="TensorRT builder workspace in GiB.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset (13 for TensorRT 8.2 / JetPack 4.6).")
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--normalize", is_flag=True, help="L2-normalise the embedding inside the graph.")
@click.option("--optimize", is_flag=True, help="Rewrite the ONNX for onnxruntime on CPU (exact, ~2x faster on x86).")
@click.option("--device", default="gpu", show_default=True, help="TensorRT device: gpu or dla:N (GPU fallback).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("exports"), show_default=True,
              help="Output folder.")
@click.option("--name", default=None, help="File stem (default: the model name from its metadata).")
@click.option("--calib-images", type=int, default=512, show_default=True, help="At most this many calibration faces.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def main(weights: Optional[Path], want_onnx: bool, want_trt: bool, formats: Tuple[str, ...], detector: bool,
         data: Optional[Path], half: bool, int8: bool, dynamic: bool, batch: int, imgsz: Optional[int],
         workspace: Optional[float], opset: int, simplify: bool, normalize: bool, optimize: bool, device: str,
         output: Path,
         name: Optional[str], calib_images: int, verbose: bool) -> None:
    """Export the probe-net (and the face detectors) to ONNX / onnxruntime INT8 / TensorRT, with accuracy gates."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()
    wanted = list(formats) + (["onnx"] if want_onnx else []) + (["engine"] if want_trt else [])
    try:
        opts = ExportOptions(formats=tuple(wanted) or ("onnx",), weights=weights, output=output, name=name, half=half,
                             int8=int8, data=data, dynamic=dynamic, batch=batch, imgsz=imgsz, workspace=workspace,
                             opset=opset, simplify=simplify, normalize=normalize, optimize=optimize, device=device,
                             calib_images=calib_images, detector=detector)
        exporter = Exporter(opts)
        result = exporter.run()
    except GateFailed as exc:
        _finish(locals().get("exporter"), output, t0)
        click.echo(f"hsst-export: FAILED after {time.perf_counter() - t0:.1f} s: {exc}", err=True)
        sys.exit(EXIT_GATE)
    except EngineNotBuilt as exc:
        _finish(locals().get("exporter"), output, t0)
        click.echo(f"hsst-export: INCOMPLETE after {time.perf_counter() - t0:.1f} s: {exc}", err=True)
        sys.exit(EXIT_NO_TRT)
    except HsstError as exc:
        click.echo(f"hsst-export: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    write_report(result, output / "export-report.json")
    click.echo(f"hsst-export: OK in {result.seconds:.1f} s: {_summary(result)}")
    click.echo(f"next: {_next_command(result, opts)}")


def _finish(exporter: Optional[Exporter], output: Path, t0: float) -> None:
    """Write the report of a run that stopped early (what was written, the commands to run)."""
    if exporter is None:
        return
    exporter.result.seconds = time.perf_counter() - t0
    try:
        write_report(exporter.result, output / "export-report.json")
    except OSError:
        pass
    if exporter.result.artifacts:
        click.echo(f"hsst-export: written: {_summary(exporter.result)}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
