"""The export pipeline behind ``hsst-export``: each target through each requested format, every file through one gate.

* Targets say what is exported and what each file's gate compares it with: the probe-net
  (:class:`~hsst.export.embedder_target.EmbedderTarget`: ONNX, onnxruntime INT8, engine) and the face detectors
  (:class:`~hsst.export.detector_target.DetectorTarget`: ONNX, engine).
* Builders say how an engine is made (:mod:`hsst.export.builders`): TensorRT's Python API, else trtexec, else
  the commands to run on the Jetson (:class:`EngineNotBuilt`, exit status 3).
* The gate (:mod:`hsst.export.gate`) judges every file the same way: a file that fails is kept as
  ``<file>.failed`` (with ``<file>.failed.json`` holding the report) so no runtime can load it by its normal
  name, and the run ends with :class:`GateFailed` (exit status 2).

One method per format, as in ultralytics' exporter: :meth:`Exporter.export_onnx`,
:meth:`Exporter.export_onnx_int8`, :meth:`Exporter.export_engine`.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple

from hsst.core.errors import ConfigError, ModelError
from hsst.core.files import atomic_write_json
from hsst.export.builders import BuiltEngine, EngineBuilder, EngineNotBuilt, EngineSpec, select_builder
from hsst.export.calibration import default_faces
from hsst.export.detector_target import DetectorTarget
from hsst.export.embedder_target import EmbedderTarget, to_parity_set
from hsst.export.gate import Artifact, Candidate, Gate, GateFailed
from hsst.export.options import ExportOptions
from hsst.export.parity import onnx_outputs
from hsst.export.sidecar import Sidecar

logger = logging.getLogger(__name__)

__all__ = ["Artifact", "ExportResult", "GateFailed", "EngineNotBuilt", "Exporter", "export", "default_weights",
           "default_faces", "check_output_dir", "to_parity_set", "write_report"]

#: Exit statuses of hsst-export.
EXIT_OK, EXIT_ERROR, EXIT_GATE, EXIT_NO_TRT = 0, 1, 2, 3


@dataclass
class ExportResult:
    """Everything one run wrote, in order, and how long it took."""

    artifacts: List[Artifact] = field(default_factory=list)
    seconds: float = 0.0
    commands: List[str] = field(default_factory=list)


class Target(Protocol):
    """What the exporter needs of a target (:class:`EmbedderTarget`, :class:`DetectorTarget`)."""

    label: str                 # names its engines in messages
    engine_kind: str           # the artifact kind of its engines
    formats: Tuple[str, ...]   # the formats it has
    onnx_paths: List[Path]     # the FP32 ONNX files the other formats start from

    def onnx(self) -> Iterator[Candidate]: ...

    def engine_spec(self, onnx_path: Path) -> EngineSpec: ...

    def engine_record(self, spec: EngineSpec, built: BuiltEngine,
                      latency: Optional[Dict[str, float]]) -> Sidecar: ...


def default_weights() -> Optional[Path]:
    """The shipped default model: a probe-net checkpoint, else the default ONNX (``hsst/assets/models``)."""
    from hsst.runtime.model_files import ASSETS_MODELS, DEFAULT_EMBEDDING_ONNX

    for candidate in (ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX.replace(".onnx", ".pt"),
                      ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX):
        if candidate.is_file():
            return candidate
    return None


def check_output_dir(path: Path) -> Path:
    """Create ``path`` and prove it is writable; :class:`ConfigError` with the reason otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".hsst-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {path}: {exc.strerror or exc}; pass --output DIR with a "
                          "writable folder") from None
    return path


class Exporter:
    """Runs one export described by :class:`ExportOptions` (see :func:`export`)."""

    def __init__(self, opts: ExportOptions) -> None:
        self.opts = opts.validate()
        self.result = ExportResult()
        self.gate = Gate(self.result.artifacts)
        self._builder: Optional[EngineBuilder] = None

    @property
    def builder(self) -> EngineBuilder:
        """This machine's engine builder, chosen when the first engine is asked for (imports TensorRT then)."""
        if self._builder is None:
            self._builder = select_builder()
        return self._builder

    def run(self) -> ExportResult:
        """Export every target; engines TensorRT cannot build here end the run last, with their commands."""
        t0 = time.perf_counter()
        out = check_output_dir(self.opts.output)
        pending: List[EngineNotBuilt] = []
        for target in self._targets(out):
            try:
                self._export(target)
            except EngineNotBuilt as exc:  # the other targets still get their files
                self.result.commands += exc.commands
                pending.append(exc)
        self.result.seconds = time.perf_counter() - t0
        if pending:
            raise EngineNotBuilt("\n".join(str(exc) for exc in pending), self.result.commands)
        return self.result

    def _targets(self, out: Path) -> Iterator[Target]:
        weights = self.opts.weights or default_weights()
        if weights is None and not self.opts.detector:
            raise ModelError("no model given and the default model is not installed: pass --weights CKPT "
                             "(a probe-net checkpoint from hsst-train) or --weights model.onnx")
        if weights is not None:
            embedder = EmbedderTarget(self.opts, Path(weights), out)
            embedder.faces()  # bad or faceless --data fails here, before any file is written
            yield embedder
        else:
            logger.info("no probe-net given: exporting the face detectors only")
        if self.opts.detector:
            yield DetectorTarget(self.opts, out)

    def _export(self, target: Target) -> None:
        onnx_paths = self.export_onnx(target)
        if "onnx-int8" in self.opts.formats and "onnx-int8" in target.formats:
            self.export_onnx_int8(target, onnx_paths)
        if "engine" in self.opts.formats:
            self.export_engine(target, onnx_paths)

    # -- one method per format --------------------------------------------------------------------------------
    def export_onnx(self, target: Target) -> List[Path]:
        """Write and gate the target's ONNX files; returns the ONNX files the other formats start from."""
        for candidate in target.onnx():
            self.gate.check(candidate)
        return list(target.onnx_paths)

    def export_onnx_int8(self, target: Any, onnx_paths: List[Path]) -> None:
        """onnxruntime INT8 copies of the ONNX files (targets that have the format: the probe-net)."""
        for onnx_path in onnx_paths:
            self.gate.check(target.onnx_int8(onnx_path))

    def export_engine(self, target: Target, onnx_paths: List[Path]) -> None:
        """A TensorRT engine of each ONNX, made by this machine's builder and gated against onnxruntime.

        Raises:
            EngineNotBuilt: no TensorRT here (after every spec of the target: one message with all commands).
        """
        for onnx_path in onnx_paths:
            spec = target.engine_spec(onnx_path)
            built = self.builder.build(spec)
            if built is not None:
                self.gate.check(self._engine_candidate(target, spec, built))
        self.builder.raise_pending(target.label)

    def _engine_candidate(self, target: Target, spec: EngineSpec, built: BuiltEngine) -> Candidate:
        x = spec.inputs[: self.builder.gate_limit]
        outputs, latency = self.builder.run(built, spec, x)
        return Candidate(target.engine_kind, built.path, onnx_outputs(spec.onnx, x, spec.batch, spec.static),
                         outputs, spec.precision, ("onnxruntime-fp32", f"tensorrt-{spec.precision}"),
                         target.engine_record(spec, built, latency), hint=built.hint(spec), latency=latency)


def export(**kwargs: Any) -> ExportResult:
    """Python entry point mirroring the CLI: ``export(weights="ckpt.pt", formats=("onnx", "engine"), half=True)``."""
    return Exporter(ExportOptions(**kwargs)).run()


def write_report(result: ExportResult, path: Path) -> None:
    """Machine-readable summary of a run (``<output>/export-report.json``)."""
    data = {"seconds": round(result.seconds, 2), "commands": result.commands,
            "artifacts": [{"kind": a.kind, "path": str(a.path), "sidecar": str(a.sidecar),
                           "size_mb": round(a.size_mb, 3),
                           "parity": a.parity.to_dict() if a.parity else None, "latency_ms": a.latency}
                          for a in result.artifacts]}
    atomic_write_json(path, data)
