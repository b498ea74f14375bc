"""The one accuracy gate every exported file passes: reference outputs -> candidate outputs -> compare -> sidecar.

Targets (:mod:`hsst.export.embedder_target`, :mod:`hsst.export.detector_target`) and builders (:mod:`hsst.export.builders`)
only produce a :class:`Candidate`: the file just written, what a reference runtime and the file itself compute
on the same real inputs, and the file's sidecar record. :meth:`Gate.check` judges it. A file that passes gets
its sidecar (with the gate's report) under its normal name. A file that fails is kept as ``<file>.failed`` with
``<file>.failed.json`` (``status: failed``, the reason, the report), so no runtime loads it by its normal name,
and :class:`GateFailed` ends the run (hsst-export exit status 2).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from hsst.core.errors import HsstError
from hsst.core.metadata import sidecar_path
from hsst.export.parity import Outputs, ParityReport, compare_outputs
from hsst.export.sidecar import Sidecar, keep_failed

logger = logging.getLogger(__name__)

__all__ = ["GateFailed", "Artifact", "Candidate", "Gate"]


class GateFailed(HsstError):
    """An exported file failed its accuracy gate (kept as ``<file>.failed``)."""


@dataclass
class Artifact:
    """One exported file.

    Attributes:
        kind: ``onnx``, ``onnx-int8``, ``engine``, ``detector-onnx`` or ``detector-engine``.
        path: the file (``.failed`` when its gate failed).
        sidecar: its JSON sidecar.
        parity: the gate's report (None where no gate applies).
        latency: engine latency percentiles (ms), when measured.
    """

    kind: str
    path: Path
    sidecar: Path
    parity: Optional[ParityReport] = None
    latency: Optional[Dict[str, float]] = None

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6 if self.path.exists() else 0.0


@dataclass
class Candidate:
    """A file just written, waiting for its gate.

    Attributes:
        kind: the artifact kind it becomes (see :class:`Artifact`).
        path: the file.
        reference: what the reference runtime computes on the gate's inputs (torch, onnxruntime FP32...).
        outputs: what the file computes on the same inputs.
        gate: key of :data:`hsst.export.parity.GATES` (statistic and threshold).
        labels: (reference, candidate) runtime names for the report.
        sidecar: the file's sidecar record, without the gate's verdict.
        hint: what to run when it fails (engines: polygraphy's per-layer comparison).
        latency: engine latency percentiles (ms), when measured.
    """

    kind: str
    path: Path
    reference: Outputs
    outputs: Outputs
    gate: str
    labels: Tuple[str, str]
    sidecar: Sidecar
    hint: str = ""
    latency: Optional[Dict[str, float]] = None


class Gate:
    """Judges candidates; every verdict lands in ``artifacts`` (the run's list), passed or failed.

    Args:
        artifacts: the list the run reports (appended to, in order).
    """

    def __init__(self, artifacts: List[Artifact]) -> None:
        self.artifacts = artifacts

    def check(self, candidate: Candidate) -> Artifact:
        """Compare, then write the sidecar (passed) or keep the file as ``.failed`` and raise :class:`GateFailed`."""
        c = candidate
        report = compare_outputs(c.reference, c.outputs, c.gate, *c.labels)
        logger.info("%s: %s", c.path.name, report)
        sidecar = c.sidecar.with_facts(parity=report.to_dict())
        art = Artifact(c.kind, c.path, sidecar_path(c.path), parity=report, latency=c.latency)
        if report.passed:
            sidecar.write(c.path)
            self.artifacts.append(art)
            return art
        art.path = keep_failed(c.path, sidecar, f"accuracy gate failed: {report}")
        art.sidecar = sidecar_path(art.path)
        self.artifacts.append(art)
        more = f" Per-layer comparison: {c.hint}" if c.hint else ""
        raise GateFailed(f"{art.path.name} failed its accuracy gate: {report}. The file is kept as {art.path} for "
                         f"inspection; the runtime will not load it.{more}")
