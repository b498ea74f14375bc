"""How an engine is made: TensorRT's Python API, NVIDIA's trtexec, or (no TensorRT here) the commands to run.

A target (:mod:`hsst.export.embedder_target`, :mod:`hsst.export.detector_target`) says what to build in an :class:`EngineSpec`;
a builder makes the file and its ``tensorrt`` record (:class:`BuiltEngine`) and runs it on the gate's inputs; the
exporter hands the result to the one accuracy gate (:mod:`hsst.export.gate`). :func:`select_builder` picks one
builder per run:

* :class:`TensorRTApiBuilder` where ``tensorrt`` imports (runs engines through the gate runtime's backend);
* :class:`TrtexecBuilder` where only trtexec is installed (JetPack 4.6 in a Python >= 3.8 venv);
* :class:`CommandPrinter` elsewhere: builds nothing and ends the target with :class:`EngineNotBuilt`
  (hsst-export exit status 3) carrying the exact commands for the Jetson.
"""
from __future__ import annotations

import abc
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hsst.core.errors import HsstError, ModelError
from hsst.core.files import atomic_write_text
from hsst.export.calibration import FaceImageFolder, calibration_cache_path
from hsst.export.parity import Outputs, batched_outputs, polygraphy_hint
from hsst.export.tensorrt_build import (EngineBuild, EngineBuildConfig, api_generation, autocast_fp16, build_engine,
                                        device_tag, engine_filename, timing_cache_path)
from hsst.export.trtexec import (find_trtexec, format_command, parse_trtexec_device, parse_trtexec_version,
                                 run_trtexec, trtexec_bench_command, trtexec_build_command, trtexec_features,
                                 trtexec_outputs)

logger = logging.getLogger(__name__)

__all__ = ["EngineNotBuilt", "EngineSpec", "BuiltEngine", "EngineBuilder", "TensorRTApiBuilder", "TrtexecBuilder",
           "CommandPrinter", "select_builder", "JETSON_TRTEXEC"]

#: Where JetPack installs trtexec: the path the printed commands use.
JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
#: The shell line that reads the Jetson's TensorRT version code (trtexec prints ``[TensorRT v8502]``).
TRTVER_COMMAND = (f"TRTVER=$({JETSON_TRTEXEC} --help 2>&1 | "
                  "sed -n 's/.*\\[TensorRT v\\([0-9]*\\)\\].*/\\1/p' | head -n 1)")


class EngineNotBuilt(HsstError):
    """TensorRT is not usable here; the message carries the commands to run on the Jetson (also ``commands``)."""

    def __init__(self, message: str, commands: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.commands = list(commands)


@dataclass
class EngineSpec:
    """One engine to build from one ONNX, whichever builder builds it.

    Attributes:
        name: model name of the file (``<name>.<maxbatch>.<trtver>.<device>.<precision>.engine``).
        onnx: the FP32 ONNX: built from, and run by onnxruntime as the gate's reference.
        out_dir: where the engine, its timing cache and build intermediates go.
        input_name: the ONNX input.
        chw: (C, H, W) of the input.
        batch: maximum batch (the file name's).
        profile: (min, opt, max) batch of a dynamic-batch ONNX; None for a static one.
        precision: ``fp32``, ``fp16`` or ``int8``.
        device: ("gpu", None) or ("dla", core).
        workspace: builder workspace in GiB (None: TensorRT's default).
        inputs: the gate's real inputs, (N, C, H, W) float32.
        calib: faces for implicit INT8 calibration (TensorRT 8.x-10.x Python API).
        model_sha: SHA-256 of the ONNX: names the calibration cache.
        qdq_onnx: writes the Q/DQ ONNX that explicit INT8 builds read (TensorRT 11, trtexec); None: no INT8.
        jetson_command: the hsst-export line to run on the Jetson where no TensorRT is here (None: none applies).
    """

    name: str
    onnx: Path
    out_dir: Path
    input_name: str
    chw: Tuple[int, int, int]
    batch: int
    profile: Optional[Tuple[int, int, int]]
    precision: str
    device: Tuple[str, Optional[int]]
    workspace: Optional[float]
    inputs: np.ndarray
    calib: Optional[FaceImageFolder] = None
    model_sha: str = ""
    qdq_onnx: Optional[Callable[[], Path]] = None
    jetson_command: Optional[str] = None

    @property
    def static(self) -> bool:
        """Whether the ONNX has a fixed batch (the reference pads its last batch)."""
        return self.profile is None

    def engine_path(self, trt_version: str) -> Path:
        return self.out_dir / engine_filename(self.name, self.batch, trt_version, self.device, self.precision)

    def config(self, **more: Any) -> EngineBuildConfig:
        """The :class:`EngineBuildConfig` of this spec (``more``: timing cache, calibration)."""
        return EngineBuildConfig(precision=self.precision, input_name=self.input_name, chw=self.chw,
                                 profile=self.profile, workspace_gib=self.workspace, device=self.device, **more)

    def explicit_onnx(self) -> Path:
        """The ONNX an explicitly typed build reads: the Q/DQ copy for INT8 (written now), else the FP32 one."""
        if self.precision == "int8" and self.qdq_onnx is not None:
            return self.qdq_onnx()
        return self.onnx


@dataclass
class BuiltEngine:
    """An engine file a builder wrote.

    Attributes:
        path: the engine.
        tensorrt: the sidecar's ``tensorrt`` record (what :func:`hsst.core.metadata.check_engine_compat` reads).
        source: the ONNX TensorRT built (FP32, Q/DQ or AutoCast FP16): polygraphy compares that one.
        calib_cache: the INT8 calibration cache, when one was used.
    """

    path: Path
    tensorrt: Dict[str, Any]
    source: Path
    calib_cache: Optional[Path] = None

    def hint(self, spec: EngineSpec) -> str:
        """The polygraphy command that finds the layer where a failed engine departs from onnxruntime."""
        return polygraphy_hint(self.source, spec.precision, spec.input_name, (spec.batch, *spec.chw),
                               self.calib_cache)


class EngineBuilder(abc.ABC):
    """Makes engines from :class:`EngineSpec` and runs them for the gate.

    Attributes:
        gate_limit: at most this many gate inputs (None: all of them).
    """

    gate_limit: Optional[int] = None

    @abc.abstractmethod
    def build(self, spec: EngineSpec) -> Optional[BuiltEngine]:
        """Build the engine of ``spec``; None when it cannot be built here (the commands are kept instead)."""

    @abc.abstractmethod
    def run(self, built: BuiltEngine, spec: EngineSpec,
            x: np.ndarray) -> Tuple[Outputs, Optional[Dict[str, float]]]:
        """Every output of the engine on ``x``, and its latency percentiles where this builder measures them."""

    def raise_pending(self, label: str) -> None:
        """Raise :class:`EngineNotBuilt` for the engines of one target that were not built (``label`` names them)."""


class TensorRTApiBuilder(EngineBuilder):
    """Builds with TensorRT's Python API (:func:`build_engine`) and runs the engine through the gate runtime's
    TensorRT backend, so the gate checks the code path the gate runs."""

    def __init__(self, trt: Any) -> None:
        self.version = str(trt.__version__)
        self.api = api_generation(self.version)

    def build(self, spec: EngineSpec) -> BuiltEngine:
        from hsst.core.backends.cuda import cuda_device_name, import_pycuda

        import_pycuda()  # the gate runs the engine: fail before a long build if pycuda or the GPU is missing
        source = self._source(spec)
        calib = spec.calib if spec.precision == "int8" else None
        cfg = spec.config(
            timing_cache=timing_cache_path(spec.out_dir, self.version, cuda_device_name() or "gpu"), calib_data=calib,
            calib_cache=(calibration_cache_path(spec.out_dir, spec.name, spec.model_sha, calib, self.version)
                         if calib is not None else None),
            calib_batch=spec.profile[1] if spec.profile else spec.batch)
        build = build_engine(source, spec.engine_path(self.version), cfg)
        return BuiltEngine(build.path, build.record(cfg), source, cfg.calib_cache)

    def _source(self, spec: EngineSpec) -> Path:
        """TensorRT 11 is strongly typed: INT8 from the Q/DQ ONNX, FP16 from an AutoCast ONNX (where ModelOpt
        imports; else :func:`build_engine` says what to run)."""
        if self.api != "11":
            return spec.onnx
        if spec.precision == "fp16":
            return autocast_fp16(spec.onnx, spec.out_dir / f"{spec.name}.fp16.onnx") or spec.onnx
        return spec.explicit_onnx()

    def run(self, built: BuiltEngine, spec: EngineSpec,
            x: np.ndarray) -> Tuple[Outputs, Optional[Dict[str, float]]]:
        from hsst.core.backends import create_backend, latency_percentiles

        with create_backend("tensorrt", built.path, check_sidecar=False) as engine:  # its sidecar comes after the gate
            limit, static = engine.batch_limit, engine.static_batch
            outputs = batched_outputs(lambda b: engine.run({spec.input_name: b}), x, limit, static)
            latency = latency_percentiles(engine.infer, _bench_batch(x, limit, static))
        return outputs, latency


def _bench_batch(x: np.ndarray, limit: int, static: bool) -> np.ndarray:
    """A full batch for latency (a static engine takes exactly ``limit``: inputs repeat to fill it)."""
    bench = x[:limit]
    if bench.shape[0] < limit and static:
        bench = np.resize(x, (limit,) + x.shape[1:]).astype(np.float32)
    return bench


class TrtexecBuilder(EngineBuilder):
    """Builds with NVIDIA's trtexec where TensorRT's Python API is absent, and gates the engine by running trtexec
    on the gate's inputs (``--loadInputs`` / ``--exportOutput``). INT8 comes from the Q/DQ ONNX."""

    gate_limit = 16  # one trtexec process (engine load included) per batch

    def __init__(self, trtexec: Path) -> None:
        self.trtexec = trtexec
        self.features = trtexec_features(trtexec)

    def build(self, spec: EngineSpec) -> BuiltEngine:
        feats = self.features
        source = spec.explicit_onnx()
        # trtexec may only print its TensorRT version while building: build under a temporary name first.
        tmp = spec.out_dir / f".{spec.name}.{os.getpid()}.engine"
        cmd = trtexec_build_command(source, tmp, spec.input_name, spec.chw, spec.precision, spec.profile,
                                    spec.workspace, spec.device,
                                    timing_cache_path(spec.out_dir, feats.version or "0", "trtexec"),
                                    trtexec=self.trtexec, features=feats)
        t0 = time.perf_counter()
        log = run_trtexec(cmd)
        build_s = time.perf_counter() - t0
        version = feats.version or parse_trtexec_version(log)  # every trtexec run prints [TensorRT vNNNN]
        if version is None:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"cannot tell which TensorRT {self.trtexec} belongs to (no [TensorRT vNNNN] in its "
                             "output); the engine could not be named and recorded")
        path = spec.engine_path(version)
        tmp.replace(path)
        atomic_write_text(path.with_name(path.name + ".build.log"), log)
        build = EngineBuild(path=path, version=version, api="trtexec", device=device_tag(spec.device),
                            device_name=parse_trtexec_device(log) or "", precision=spec.precision, builder="trtexec",
                            build_s=build_s, quantization="explicit-qdq" if source != spec.onnx else None,
                            command=" ".join(str(c) for c in cmd))
        return BuiltEngine(path, build.record(spec.config()), source)

    def run(self, built: BuiltEngine, spec: EngineSpec,
            x: np.ndarray) -> Tuple[Outputs, Optional[Dict[str, float]]]:
        from hsst.export.onnx_export import onnx_io

        names = [name for name, _ in onnx_io(spec.onnx)[1]]
        return trtexec_outputs(self.trtexec, built.path, x, spec.input_name, names, spec.batch,
                               dynamic=not spec.static, workdir=spec.out_dir), None


@dataclass
class _JetsonLines:
    """The commands that build and check one engine on the Jetson, run inside the copied ``folder``."""

    folder: Path
    onnx_name: str
    rerun: Optional[str]  # the hsst-export line, where one applies
    build: str
    bench: str
    polygraphy: str


class CommandPrinter(EngineBuilder):
    """No TensorRT here: builds nothing, keeps the commands that build and check each engine on the Jetson, and
    raises them per target (:meth:`raise_pending`).

    Args:
        why: why TensorRT is not usable here (the first part of :class:`TensorRTUnavailable`'s message).
    """

    def __init__(self, why: str) -> None:
        self.why = why
        self._pending: List[_JetsonLines] = []

    def build(self, spec: EngineSpec) -> None:
        self._pending.append(_jetson_lines(spec, spec.explicit_onnx().name))
        return None

    def run(self, built: BuiltEngine, spec: EngineSpec,
            x: np.ndarray) -> Tuple[Outputs, Optional[Dict[str, float]]]:
        raise ModelError("no TensorRT here: no engine was built to run")

    def raise_pending(self, label: str) -> None:
        pending, self._pending = self._pending, []
        if pending:
            raise _not_built(label, self.why, pending)


def _not_built(label: str, why: str, lines: List[_JetsonLines]) -> EngineNotBuilt:
    """What to run on the Jetson for the engines of one target: hsst-export (where it applies), or trtexec."""
    reruns = [line.rerun for line in lines if line.rerun]
    builds = [TRTVER_COMMAND] + [line.build for line in lines]
    benches, polys = [line.bench for line in lines], [line.polygraphy for line in lines]
    names = ", ".join(line.onnx_name for line in lines)
    text = (f"{label} NOT built: {why}, and no trtexec on PATH or in /usr/src/tensorrt/bin. Wrote {names} and "
            f"{'its sidecar' if len(lines) == 1 else 'their sidecars'} in {lines[0].folder}. Engines must be "
            "built on the device that runs them: copy the folder to the Jetson and run there (inside it):")
    if reruns:
        text += _indent(reruns) + "\nor, without hsst's Python API:"
    text += (_indent(builds) + "\nthen check speed:" + _indent(benches) + "\nand accuracy layer by layer:"
             + _indent(polys))
    if reruns:  # the self-test checks the probe-net
        text += "\n(python -m hsst.export.selftest runs the whole check on the Jetson)"
    return EngineNotBuilt(text, reruns + builds + benches + polys)


def _indent(lines: Sequence[str]) -> str:
    return "".join(f"\n  {line}" for line in lines)


def _jetson_lines(spec: EngineSpec, onnx_name: str) -> _JetsonLines:
    """trtexec build and benchmark lines and the polygraphy check of ``spec``, run inside the copied folder."""
    # The TensorRT version tag comes from trtexec itself on the Jetson (TRTVER_COMMAND).
    engine = spec.engine_path("0").name.replace(".0.", ".${TRTVER}.", 1)
    build = trtexec_build_command(onnx_name, engine, spec.input_name, spec.chw, spec.precision, spec.profile,
                                  spec.workspace, spec.device, f"timing.{spec.precision}.cache",
                                  trtexec=JETSON_TRTEXEC)
    bench = trtexec_bench_command(engine, spec.input_name, spec.chw, batch=spec.profile[1] if spec.profile else None,
                                  trtexec=JETSON_TRTEXEC)
    return _JetsonLines(spec.out_dir, onnx_name, spec.jetson_command, _expand_var(format_command(build)),
                        _expand_var(format_command(bench)),
                        polygraphy_hint(onnx_name, spec.precision, spec.input_name, (spec.batch, *spec.chw)))


def _expand_var(line: str) -> str:
    """Let the shell expand ``${TRTVER}`` inside a shlex-quoted argument ('...' -> "...")."""
    return re.sub(r"'([^']*\$\{TRTVER\}[^']*)'", r'"\1"', line)


def select_builder() -> EngineBuilder:
    """TensorRT's Python API where it imports, else trtexec where installed, else the command printer."""
    from hsst.core.backends.cuda import TensorRTUnavailable, import_tensorrt

    try:
        return TensorRTApiBuilder(import_tensorrt())
    except TensorRTUnavailable as exc:
        trtexec = find_trtexec()
        if trtexec is not None:
            return TrtexecBuilder(trtexec)
        return CommandPrinter(str(exc).split(". On a Jetson")[0])
