"""trtexec and polygraphy command lines (pure functions) and running trtexec where the Python API is absent.

JetPack ships trtexec at ``/usr/src/tensorrt/bin/trtexec`` (not on PATH). When ``import tensorrt`` fails but
trtexec exists, :class:`hsst.export.builders.TrtexecBuilder` builds the engine with :func:`trtexec_build_command`
and runs it for the accuracy gate with :func:`trtexec_outputs`; when neither exists,
:class:`hsst.export.builders.CommandPrinter` prints :func:`trtexec_build_command` for the user to run on the Jetson.
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.core.files import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["TRTEXEC_PATHS", "find_trtexec", "TrtexecFeatures", "trtexec_features", "parse_trtexec_version",
           "parse_trtexec_device", "shape_arg", "trtexec_build_command", "trtexec_bench_command", "format_command",
           "run_trtexec", "trtexec_infer_command", "parse_trtexec_output_json", "trtexec_outputs",
           "trtexec_embeddings"]

#: Where JetPack and NVIDIA's containers install trtexec.
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec")

_VERSION_RE = re.compile(r"\[TensorRT v(\d+)\]")
_DEVICE_RE = re.compile(r"Selected Device:\s*(.+)")


def find_trtexec(extra: Sequence[Union[str, Path]] = TRTEXEC_PATHS) -> Optional[Path]:
    """trtexec on PATH, else at one of JetPack's install locations; None when absent."""
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    for candidate in extra:
        path = Path(candidate)
        if path.is_file() and path.stat().st_mode & 0o111:
            return path
    return None


def parse_trtexec_version(text: str) -> Optional[str]:
    """TensorRT version from trtexec output (``[TensorRT v8502]`` -> ``8.5.2``; ``v100300`` -> ``10.3.0``)."""
    match = _VERSION_RE.search(text or "")
    if not match:
        return None
    code = int(match.group(1))
    if code >= 100000:  # TensorRT >= 10: MMmmpp (major*10000 + minor*100 + patch)
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"  # 8.x: Mmpp


def parse_trtexec_device(text: str) -> Optional[str]:
    """GPU name from trtexec's device report (``Selected Device: Orin``)."""
    match = _DEVICE_RE.search(text or "")
    return match.group(1).strip() if match else None


@dataclass(frozen=True)
class TrtexecFeatures:
    """What a trtexec binary understands (its ``--help``).

    Attributes:
        version: TensorRT version, when printed.
        mem_pool: ``--memPoolSize`` (TensorRT >= 8.4) instead of ``--workspace`` (8.2).
        timing_cache: ``--timingCacheFile``.
        strongly_typed: ``--stronglyTyped`` (TensorRT >= 9/10).
        fp16: ``--fp16`` still accepted (removed with weak typing in TensorRT 11).
    """

    version: Optional[str] = None
    mem_pool: bool = True
    timing_cache: bool = True
    strongly_typed: bool = False
    fp16: bool = True

    @classmethod
    def from_help(cls, text: str) -> "TrtexecFeatures":
        return cls(version=parse_trtexec_version(text), mem_pool="--memPoolSize" in text,
                   timing_cache="--timingCacheFile" in text, strongly_typed="--stronglyTyped" in text,
                   fp16="--fp16" in text)


def trtexec_features(trtexec: Union[str, Path]) -> TrtexecFeatures:
    """Run ``trtexec --help`` and read its capabilities."""
    proc = subprocess.run([str(trtexec), "--help"], capture_output=True, text=True, timeout=60)
    return TrtexecFeatures.from_help(proc.stdout + proc.stderr)


def shape_arg(input_name: str, batch: int, chw: Sequence[int]) -> str:
    """``input:8x1x112x112``."""
    return f"{input_name}:" + "x".join(str(int(d)) for d in (batch, *chw))


def trtexec_build_command(onnx_path: Union[str, Path], engine_path: Union[str, Path], input_name: str,
                          chw: Sequence[int], precision: str = "fp16",
                          profile: Optional[Tuple[int, int, int]] = None, workspace_gib: Optional[float] = None,
                          device: Tuple[str, Optional[int]] = ("gpu", None),
                          timing_cache: Optional[Union[str, Path]] = None,
                          calib_cache: Optional[Union[str, Path]] = None, trtexec: Union[str, Path] = "trtexec",
                          features: TrtexecFeatures = TrtexecFeatures()) -> List[str]:
    """The trtexec command line that builds the engine (argument list, no shell).

    Args:
        onnx_path: the ONNX to build (a Q/DQ ONNX for explicit INT8).
        engine_path: the engine to write.
        input_name: graph input name.
        chw: (C, H, W) of the input.
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 also enables FP16 for layers INT8 cannot run).
        profile: (min, opt, max) batch for a dynamic-batch ONNX; None for a static one.
        workspace_gib: builder workspace (``--memPoolSize=workspace:<MiB>M``, ``--workspace=<MiB>`` on 8.2).
        device: ("gpu", None) or ("dla", core): DLA with GPU fallback.
        timing_cache: ``--timingCacheFile`` (created if absent, updated after the build).
        calib_cache: INT8 calibration cache (implicit quantisation) for ``--calib``.
        trtexec: the binary.
        features: what the binary understands (:func:`trtexec_features`).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}; use fp32, fp16 or int8")
    kind, core = device
    if kind == "dla" and precision == "fp32":
        raise ConfigError("the DLA runs FP16 or INT8 only: add --half or --int8 (or use --device gpu)")
    cmd = [str(trtexec), f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if profile is not None:
        lo, opt, hi = profile
        cmd += [f"--minShapes={shape_arg(input_name, lo, chw)}", f"--optShapes={shape_arg(input_name, opt, chw)}",
                f"--maxShapes={shape_arg(input_name, hi, chw)}"]
    if features.fp16:
        if precision in ("fp16", "int8"):
            cmd.append("--fp16")
        if precision == "int8":
            cmd.append("--int8")
            if calib_cache is not None:
                cmd.append(f"--calib={calib_cache}")
    elif features.strongly_typed:
        cmd.append("--stronglyTyped")  # TensorRT 11: precision comes from the ONNX (Q/DQ, AutoCast FP16)
    if workspace_gib is not None:
        mib = max(1, int(round(workspace_gib * 1024)))
        cmd.append(f"--memPoolSize=workspace:{mib}M" if features.mem_pool else f"--workspace={mib}")
    if kind == "dla":
        cmd += [f"--useDLACore={core}", "--allowGPUFallback"]
    if timing_cache is not None and features.timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


def trtexec_bench_command(engine_path: Union[str, Path], input_name: str, chw: Sequence[int],
                          batch: Optional[int] = None, trtexec: Union[str, Path] = "trtexec",
                          duration_s: int = 10) -> List[str]:
    """trtexec latency run of a built engine (``--shapes`` only for a dynamic-batch engine)."""
    cmd = [str(trtexec), f"--loadEngine={engine_path}"]
    if batch is not None:
        cmd.append(f"--shapes={shape_arg(input_name, batch, chw)}")
    cmd += ["--warmUp=500", f"--duration={int(duration_s)}", "--useCudaGraph", "--noDataTransfers"]
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """A command list as one shell-safe line."""
    return " ".join(shlex.quote(str(c)) for c in cmd)


def run_trtexec(cmd: Sequence[str], log_path: Optional[Union[str, Path]] = None, timeout_s: int = 3600) -> str:
    """Run a trtexec command; return its output, raise :class:`ModelError` with the log tail on failure."""
    logger.info("running %s", format_command(cmd))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout_s)
    text = proc.stdout + proc.stderr
    if log_path is not None:
        atomic_write_text(log_path, text)
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise ModelError(f"trtexec failed (exit {proc.returncode}):\n{tail}\ncommand: {format_command(cmd)}")
    return text


def trtexec_infer_command(engine_path: Union[str, Path], input_name: str, input_file: Union[str, Path],
                          output_json: Union[str, Path], shape: Optional[Sequence[int]] = None,
                          trtexec: Union[str, Path] = "trtexec") -> List[str]:
    """trtexec run of an engine on given input bytes that writes the outputs as JSON (the accuracy gate)."""
    cmd = [str(trtexec), f"--loadEngine={engine_path}", f"--loadInputs={input_name}:{input_file}",
           f"--exportOutput={output_json}", "--iterations=1", "--warmUp=0", "--duration=0"]
    if shape is not None:
        cmd.append(f"--shapes={shape_arg(input_name, shape[0], shape[1:])}")
    return cmd


def parse_trtexec_output_json(text: str, output_name: str) -> np.ndarray:
    """The named output of trtexec's ``--exportOutput`` JSON as a float32 array of its dimensions."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"cannot read trtexec output JSON: {exc}") from None
    for item in data if isinstance(data, list) else [data]:
        if item.get("name") == output_name:
            dims = [int(d) for d in str(item.get("dimensions", "")).split("x") if d]
            values = np.asarray(item.get("values", []), dtype=np.float32)
            if dims and int(np.prod(dims)) == values.size:
                return values.reshape(dims)
            raise ModelError(f"trtexec output {output_name!r}: {values.size} values do not fit dimensions {dims}")
    raise ModelError(f"trtexec output JSON has no tensor {output_name!r}")


def trtexec_outputs(trtexec: Union[str, Path], engine_path: Union[str, Path], x: np.ndarray, input_name: str,
                    output_names: Sequence[str], batch: int, dynamic: bool,
                    workdir: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Every named output of ``x`` computed by trtexec, flattened per input (name -> (N, size)).

    One trtexec run per batch of ``batch`` (each loads the engine: seconds); a static engine gets zero-padded
    batches.
    """
    import tempfile

    from hsst.export.parity import batched_outputs

    with tempfile.TemporaryDirectory(dir=str(workdir), prefix=".trtexec-") as tmp:
        inp, out = Path(tmp) / "input.bin", Path(tmp) / "output.json"

        def run(chunk: np.ndarray) -> Dict[str, np.ndarray]:
            chunk = np.ascontiguousarray(chunk, dtype=np.float32)
            chunk.tofile(inp)
            run_trtexec(trtexec_infer_command(engine_path, input_name, inp, out, chunk.shape if dynamic else None,
                                              trtexec))
            text = out.read_text()
            return {name: parse_trtexec_output_json(text, name).reshape(chunk.shape[0], -1) for name in output_names}

        return batched_outputs(run, x, batch, static=not dynamic)


def trtexec_embeddings(trtexec: Union[str, Path], engine_path: Union[str, Path], x: np.ndarray, input_name: str,
                       output_name: str, batch: int, dynamic: bool, workdir: Union[str, Path]) -> np.ndarray:
    """Embeddings of ``x`` computed by trtexec (:func:`trtexec_outputs` of one output)."""
    return trtexec_outputs(trtexec, engine_path, x, input_name, [output_name], batch, dynamic, workdir)[output_name]
