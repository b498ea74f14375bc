"""One-command TensorRT self-test for a Jetson (or any TensorRT GPU host)::

    python -m hsst.export.selftest --onnx exports/hsst-mobilefacenet-112.onnx --data faces/
    python -m hsst.export.selftest --weights probe.pt --data faces/          # where torch is installed

Prints JetPack / L4T, TensorRT, CUDA and GPU versions; builds an FP16 engine and, where the GPU has fast INT8
(not the Jetson Nano), an INT8 engine; checks each against onnxruntime FP32 on real aligned faces (mean cosine
>= 0.999 FP16, >= 0.99 INT8) and reports latency percentiles (p50 / p90 / p99) at batch 1 and the max batch.
Exit status 0 when everything passed, 1 on a failed check, 3 when TensorRT is not available.
"""
from __future__ import annotations

import argparse
import logging
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import click

from hsst.core.errors import HsstError

logger = logging.getLogger(__name__)

__all__ = ["jetson_release", "system_report", "no_tensorrt_advice", "main"]

L4T_TO_JETPACK = {"32.7": "4.6.x", "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2", "35.5": "5.1.3",
                  "35.6": "5.1.4", "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1 / 6.2"}


def jetson_release(text: Optional[str] = None) -> Optional[Dict[str, str]]:
    """L4T release and the matching JetPack from ``/etc/nv_tegra_release`` (None off a Jetson).

    >>> jetson_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref")["l4t"]
    '35.4.1'
    """
    if text is None:
        path = Path("/etc/nv_tegra_release")
        if not path.is_file():
            return None
        text = path.read_text(errors="replace")
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    major, revision = match.group(1), match.group(2)
    l4t = f"{major}.{revision}"
    minor = revision.split(".")[0]
    return {"l4t": l4t, "jetpack": L4T_TO_JETPACK.get(f"{major}.{minor}", "unknown")}


def _cuda_version() -> Optional[str]:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"release ([\d.]+)", out)
        if match:
            return match.group(1)
    version_file = Path("/usr/local/cuda/version.json")
    if version_file.is_file():
        import json

        return json.loads(version_file.read_text()).get("cuda", {}).get("version")
    return None


def system_report() -> Dict[str, Optional[str]]:
    """Versions that matter for TensorRT engines on this machine."""
    report: Dict[str, Optional[str]] = {"python": platform.python_version(), "machine": platform.machine()}
    release = jetson_release()
    report["l4t"] = release["l4t"] if release else None
    report["jetpack"] = release["jetpack"] if release else None
    model = Path("/proc/device-tree/model")
    report["board"] = model.read_text(errors="replace").strip("\x00\n ") if model.is_file() else None
    report["cuda"] = _cuda_version()
    try:
        import tensorrt

        report["tensorrt"] = str(tensorrt.__version__)
    except Exception as exc:  # ImportError or a library load error
        report["tensorrt"] = None
        report["tensorrt_error"] = f"{type(exc).__name__}: {exc}"
    from hsst.core.backends.cuda import cuda_device_info

    try:
        report.update(cuda_device_info(0))  # gpu, compute_capability, pycuda
    except Exception as exc:  # a report: say what failed, never stop
        report["gpu"] = None
        report["pycuda_error"] = str(exc)
    try:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        report["onnxruntime"] = None
    return report


def no_tensorrt_advice(report: Dict[str, Optional[str]]) -> str:
    """What to do when ``import tensorrt`` fails, for the machine the report describes.

    >>> "trtexec" in no_tensorrt_advice({"jetpack": "4.6.x", "python": "3.8.0"})
    True
    """
    jetpack = report.get("jetpack") or ""
    if jetpack.startswith("4."):
        # JetPack 4.x (Jetson Nano, TX2, Xavier on 4.6): python3-libnvinfer is built for Python 3.6 only.
        return (f"JetPack {jetpack} ships TensorRT's Python bindings for Python 3.6 only, and hsst needs Python "
                f">= 3.8 (this is {report.get('python')}). Build engines with trtexec instead: hsst-export --trt "
                "--half --data DIR uses /usr/src/tensorrt/bin/trtexec and checks the engine against onnxruntime. "
                "Run the gate with backend onnxruntime (firmware_configs/jetson-nano.yaml), or build TensorRT "
                "8.2's Python bindings for this Python (NVIDIA's TensorRT repository, release/8.2, python/build.sh) "
                "to run the engine in the gate. docs/EXPORT.md, 'Jetson Nano', has the steps.")
    return ("On a Jetson, TensorRT comes with JetPack: run this with the system python3 or a venv made with "
            "--system-site-packages.")


def _precisions(trt_version: str) -> List[str]:
    from hsst.export.tensorrt_build import api_generation

    trt = __import__("tensorrt")
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    fast_int8 = bool(getattr(builder, "platform_has_fast_int8", True))
    api = api_generation(trt_version)
    out = ["fp16"]
    if fast_int8:
        out.append("int8")
    else:
        logger.warning("this GPU has no fast INT8 (Jetson Nano): INT8 skipped")
    if api == "11":
        logger.info("TensorRT 11: FP16 via ModelOpt AutoCast (if installed), INT8 via Q/DQ ONNX")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsst.export.selftest", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="an ONNX exported by hsst-export (with its .json sidecar)")
    src.add_argument("--weights", type=Path, help="a probe-net checkpoint (needs torch)")
    parser.add_argument("--data", type=Path, help="folder of face crops or photos (accuracy gate, INT8 calibration)")
    parser.add_argument("--batch", type=int, default=8, help="max batch of the dynamic engines")
    parser.add_argument("--device", default="gpu", help="gpu or dla:N")
    parser.add_argument("--output", type=Path, default=None, help="keep the engines here (default: a temp folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s")

    report = system_report()
    click.echo("hsst TensorRT self-test")
    for key, value in report.items():
        click.echo(f"  {key:20s} {value}")
    if report.get("tensorrt") is None:
        click.echo(f"TensorRT not available: {report.get('tensorrt_error')}. {no_tensorrt_advice(report)}", err=True)
        return 3
    if args.data is None:
        click.echo("the self-test needs real aligned faces: pass --data DIR", err=True)
        return 1
    from hsst.export.exporter import EngineNotBuilt, Exporter, GateFailed
    from hsst.export.options import ExportOptions

    weights = args.onnx or args.weights
    out_ctx = tempfile.TemporaryDirectory(prefix="hsst-selftest-") if args.output is None else None
    out = Path(out_ctx.name) if out_ctx else args.output
    failures = 0
    onnx_path: Optional[Path] = None
    try:
        for precision in _precisions(report["tensorrt"] or ""):
            source = onnx_path or weights
            dynamic, batch = not args.device.startswith("dla"), args.batch  # the DLA runs static shapes only
            if source is not None and Path(source).suffix.lower() == ".onnx":
                from hsst.core.metadata import ModelMeta, sidecar_path

                first = ModelMeta.load(sidecar_path(Path(source))).extra["input"]["shape"][0]
                batch = args.batch if isinstance(first, str) else int(first)
                dynamic = dynamic and isinstance(first, str)  # a symbolic batch on the DLA: profile pinned
            opts = ExportOptions(formats=("engine",), weights=source, output=out, data=args.data, dynamic=dynamic,
                                 batch=batch, half=precision == "fp16", int8=precision == "int8",
                                 device=args.device, calib_images=256)
            try:
                result = Exporter(opts).run()
            except GateFailed as exc:
                click.echo(f"[FAIL] {precision}: {exc}")
                failures += 1
                continue
            except (EngineNotBuilt, HsstError) as exc:
                click.echo(f"[FAIL] {precision}: {exc}")
                failures += 1
                continue
            for art in result.artifacts:
                if art.kind == "onnx":
                    onnx_path = art.path  # export from the checkpoint once, then reuse the ONNX
                if art.kind == "engine":
                    lat = art.latency or {}
                    click.echo(f"[PASS] {precision}: {art.path.name} built in "
                          f"{result.seconds:.1f} s; {art.parity}; latency at batch {lat.get('batch')}: "
                          f"p50 {lat.get('p50_ms', float('nan')):.2f} ms, "
                          f"p90 {lat.get('p90_ms', float('nan')):.2f} ms, "
                          f"p99 {lat.get('p99_ms', float('nan')):.2f} ms ({lat.get('faces_per_s', 0):.0f} faces/s)")
                    _batch1_latency(art.path)
    finally:
        if out_ctx is not None:
            out_ctx.cleanup()
    click.echo("self-test: " + ("PASSED" if failures == 0 else f"{failures} check(s) FAILED"))
    return 0 if failures == 0 else 1


def _batch1_latency(engine: Path) -> None:
    """Latency of a single face (the gate's usual case) on a built engine."""
    import numpy as np

    from hsst.core.backends import create_backend, latency_percentiles

    with create_backend("tensorrt", engine, check_sidecar=True) as backend:
        if backend.static_batch and backend.batch_limit != 1:
            return
        spec = backend.inputs[0]
        x = np.zeros((1,) + tuple(spec.shape[1:]), spec.dtype)
        lat = latency_percentiles(backend.infer, x, iters=300)
    click.echo(f"       batch 1: p50 {lat['p50_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
