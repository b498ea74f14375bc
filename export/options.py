"""Export options in ultralytics' vocabulary, and the one table that says which format takes which option.

Formats:

* ``onnx``: float32 ONNX of the probe-net (always written: every other format is built from it).
* ``onnx-int8``: onnxruntime INT8 (static QDQ quantisation, calibrated on aligned faces) for x86 gates.
* ``engine``: TensorRT engine, built on the device that runs it (FP32, ``half`` FP16 or ``int8`` INT8).

An option given for a run whose formats do not accept it is an error, never silently ignored: ``--int8``
with only ``--onnx`` says to use ``--format onnx-int8`` (onnxruntime) or ``--trt`` (TensorRT).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, FrozenSet, Optional, Sequence, Tuple

from hsst.core.errors import ConfigError

FORMATS: Tuple[str, ...] = ("onnx", "onnx-int8", "engine")
FORMAT_ALIASES: Dict[str, str] = {"trt": "engine", "tensorrt": "engine", "onnx_int8": "onnx-int8",
                                  "ort-int8": "onnx-int8"}

#: Default ONNX opset. 17 is the newest opset that every TensorRT on JetPack 5/6 (8.5, 8.6, 10.x) parses and that
#: torch's legacy exporter (``dynamo=False``) writes without onnxscript; LayerNormalization-free MobileFaceNet needs
#: nothing newer. JetPack 4.6 (TensorRT 8.2, Jetson Nano) parses up to opset 13: pass ``--opset 13`` there.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 11, 20
#: ONNX opset the TensorRT 8.2 ONNX parser (JetPack 4.6) was released against.
TRT82_MAX_OPSET = 13

#: option -> formats that accept it. ``data`` serves parity (all), INT8 calibration (onnx-int8, engine int8).
OPTION_FORMATS: Dict[str, FrozenSet[str]] = {
    "half": frozenset({"engine"}),
    "int8": frozenset({"engine"}),
    "data": frozenset({"onnx", "onnx-int8", "engine"}),
    "dynamic": frozenset({"onnx", "onnx-int8", "engine"}),
    "batch": frozenset({"onnx", "onnx-int8", "engine"}),
    "imgsz": frozenset({"onnx", "onnx-int8", "engine"}),
    "workspace": frozenset({"engine"}),
    "opset": frozenset({"onnx", "onnx-int8", "engine"}),
    "simplify": frozenset({"onnx", "onnx-int8", "engine"}),
    "normalize": frozenset({"onnx", "onnx-int8", "engine"}),
    "device": frozenset({"engine"}),
    "optimize": frozenset({"onnx", "onnx-int8"}),
}

_HINTS = {
    ("int8", "onnx"): "use --format onnx-int8 for an onnxruntime INT8 model (x86 gates) or --trt --int8 for a "
                      "TensorRT INT8 engine",
    ("half", "onnx"): "FP16 is a TensorRT engine precision: add --trt",
    ("workspace", "onnx"): "the workspace is TensorRT builder memory: add --trt",
    ("device", "onnx"): "--device picks the TensorRT device (gpu or dla:N): add --trt",
}

_DEVICE_RE = re.compile(r"^(gpu|cuda|0|dla:?([0-9]))$")


def normalize_format(name: str) -> str:
    """Canonical format name (``trt`` -> ``engine``); :class:`ConfigError` for an unknown one."""
    key = str(name).strip().lower()
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ConfigError(f"unknown export format {name!r}; choose from {', '.join(FORMATS)} (alias trt = engine)")
    return key


def parse_device(device: str) -> Tuple[str, Optional[int]]:
    """``gpu`` / ``0`` / ``cuda`` -> ("gpu", None); ``dla:1`` / ``dla1`` -> ("dla", 1)."""
    match = _DEVICE_RE.match(str(device).strip().lower())
    if not match:
        raise ConfigError(f"unknown --device {device!r}; use gpu or dla:N (N = DLA core, Xavier / Orin NX / AGX)")
    if match.group(2) is not None:
        return "dla", int(match.group(2))
    return "gpu", None


@dataclass
class ExportOptions:
    """Everything one ``hsst-export`` run does (Python keywords mirror the CLI flags).

    Attributes:
        formats: formats to write (``onnx`` is always written as the base of the others).
        weights: probe-net checkpoint (``hsst.train.models.save_probe_checkpoint``); None = the shipped default.
        output: output folder.
        name: file stem; default the model name from its metadata.
        half: TensorRT FP16 engine.
        int8: TensorRT INT8 engine (needs ``data`` for calibration).
        data: folder of aligned face crops, or of face photos (detected and aligned): parity faces and INT8
            calibration. None: the bundled sample photo for the parity gate (INT8 needs ``data``).
        dynamic: symbolic batch dimension in the ONNX; engine profile 1 / max(1, batch // 2) / batch.
        batch: static batch size, or the maximum batch with ``dynamic``.
        imgsz: input side; must equal the model's crop size (MobileFaceNet's GDC kernel fixes it).
        workspace: TensorRT builder workspace in GiB (None = TensorRT's default).
        opset: ONNX opset.
        simplify: run onnxslim on the ONNX graph.
        normalize: L2-normalise the embedding inside the graph.
        optimize: rewrite the float ONNX for onnxruntime on CPU (PRelu as Relu + depthwise 1x1 convs; exact,
            about 2x faster on x86; TensorRT prefers the plain graph). ``onnx-int8`` always gets it.
        device: TensorRT device: ``gpu`` or ``dla:N`` (DLA with GPU fallback).
        calib_images: at most this many calibration images.
        parity_images: at most this many parity faces.
        detector: also export the face-detector models (BlazeFace, face mesh) through the same formats.
    """

    formats: Tuple[str, ...] = ("onnx",)
    weights: Optional[Path] = None
    output: Path = Path("exports")
    name: Optional[str] = None
    half: bool = False
    int8: bool = False
    data: Optional[Path] = None
    dynamic: bool = False
    batch: int = 1
    imgsz: Optional[int] = None
    workspace: Optional[float] = None
    opset: int = DEFAULT_OPSET
    simplify: bool = False
    normalize: bool = False
    optimize: bool = False
    device: str = "gpu"
    calib_images: int = 512
    parity_images: int = 32
    detector: bool = False
    given: FrozenSet[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.formats = tuple(dict.fromkeys(normalize_format(f) for f in (self.formats or ("onnx",))))
        if "onnx" not in self.formats:
            self.formats = ("onnx",) + self.formats
        self.output = Path(self.output)
        self.weights = Path(self.weights) if self.weights is not None else None
        self.data = Path(self.data) if self.data is not None else None
        if not self.given:
            defaults = {f.name: f.default for f in fields(self) if f.name in OPTION_FORMATS}
            self.given = frozenset(k for k, v in defaults.items() if getattr(self, k) != v)

    @property
    def precision(self) -> str:
        """TensorRT engine precision: ``int8``, ``fp16`` or ``fp32``."""
        return "int8" if self.int8 else "fp16" if self.half else "fp32"

    @property
    def max_batch(self) -> int:
        return self.batch

    def profile(self) -> Tuple[int, int, int]:
        """Batch sizes of the TensorRT optimisation profile (min, opt, max)."""
        if not self.dynamic:
            return (self.batch,) * 3
        return 1, max(1, self.batch // 2), self.batch

    def validate(self) -> "ExportOptions":
        """Check values and the option/format table; raise :class:`ConfigError` with the fix."""
        check_options_for_formats(self.given, self.formats)
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(f"--opset {self.opset} is outside the supported {MIN_OPSET}..{MAX_OPSET} "
                              f"(default {DEFAULT_OPSET}; {TRT82_MAX_OPSET} for TensorRT 8.2 on JetPack 4.6)")
        if self.half and self.int8:
            raise ConfigError("--half and --int8 exclude each other; INT8 engines already fall back to FP16/FP32 "
                              "per layer where that is faster or more accurate")
        if self.int8 and self.data is None:
            raise ConfigError("--int8 needs --data DIR: a folder of face crops or photos for calibration "
                              "(a few hundred faces of the gate's population)")
        if "onnx-int8" in self.formats and self.data is None:
            raise ConfigError("--format onnx-int8 needs --data DIR: a folder of face crops or photos (a few hundred "
                              "faces of the gate's population) for calibration")
        if self.workspace is not None and self.workspace <= 0:
            raise ConfigError(f"--workspace is in GiB and must be > 0, got {self.workspace}")
        if self.imgsz is not None and self.imgsz <= 0:
            raise ConfigError(f"--imgsz must be positive, got {self.imgsz}")
        if parse_device(self.device)[0] == "dla" and self.dynamic:
            raise ConfigError(f"--device {self.device} runs static shapes only (DLA needs min = opt = max batch; a "
                              "range makes layers fall back to the GPU silently): drop --dynamic and pass --batch N")
        return self


def check_options_for_formats(given: Sequence[str], formats: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if an option was given that none of ``formats`` accepts.

    Args:
        given: option names the user set (keys of :data:`OPTION_FORMATS`).
        formats: canonical format names of this run.
    """
    wanted = set(formats)
    for option in sorted(given):
        accepted = OPTION_FORMATS.get(option)
        if accepted is None:
            raise ConfigError(f"unknown export option {option!r}; known: {', '.join(sorted(OPTION_FORMATS))}")
        if not accepted & wanted:
            hint = _HINTS.get((option, "onnx"), f"add one of the formats {', '.join(sorted(accepted))}")
            raise ConfigError(f"--{option} does not apply to format(s) {', '.join(formats)}: it is accepted by "
                              f"{', '.join(sorted(accepted))}; {hint}")


def options_table() -> str:
    """The option/format table as Markdown (docs/EXPORT.md shows the same table)."""
    head = "| option | " + " | ".join(FORMATS) + " |"
    rows = [head, "|---|" + "---|" * len(FORMATS)]
    for option, accepted in OPTION_FORMATS.items():
        rows.append(f"| {option} | " + " | ".join("yes" if f in accepted else "-" for f in FORMATS) + " |")
    return "\n".join(rows)
