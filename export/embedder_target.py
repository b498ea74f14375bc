"""The probe-net as an export target: what each format writes, and what its gate compares it with.

=============  =====================================  ================================================
format         file                                    gate reference (same real faces)
=============  =====================================  ================================================
``onnx``       ``<name>.onnx``                         the torch model of the checkpoint
``onnx-int8``  ``<name>.int8.onnx``                    onnxruntime on the FP32 ONNX
``engine``     :class:`EngineSpec` for a builder       onnxruntime on the FP32 ONNX
=============  =====================================  ================================================

The source is a probe-net checkpoint (``hsst-train``) or an ONNX exported earlier with its sidecar (on a Jetson,
without torch). Torch is imported only to export from a checkpoint.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from hsst.core.errors import ConfigError, ModelError
from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.export.builders import BuiltEngine, EngineSpec
from hsst.export.calibration import MAKE_CROPS_HINT, FaceImageFolder, default_faces
from hsst.export.gate import Candidate
from hsst.export.options import ExportOptions, parse_device
from hsst.export.parity import onnx_embeddings, torch_embeddings
from hsst.export.sidecar import MetaSidecar, check_onnx, file_sha256, make_sidecar, write_sidecar

logger = logging.getLogger(__name__)

__all__ = ["ProbeNetSource", "load_probe_net", "EmbedderTarget", "to_parity_set"]


@dataclass
class ProbeNetSource:
    """Where the probe-net comes from.

    Attributes:
        path: the file given (``--weights``).
        meta: the model's metadata (from the checkpoint, or the ONNX's sidecar).
        sha256: the file's hash (recorded as the exported files' ``source``).
        model: the torch model of a checkpoint; None for an ONNX.
        onnx: the ONNX given instead of a checkpoint; None for a checkpoint.
    """

    path: Path
    meta: ModelMeta
    sha256: str
    model: Any = None
    onnx: Optional[Path] = None


def load_probe_net(weights: Path, opts: ExportOptions) -> ProbeNetSource:
    """Load a checkpoint, or accept an exported ONNX whose sidecar describes it (checked before any work)."""
    if not weights.is_file():
        raise ModelError(f"model file not found: {weights}; pass --weights with a probe-net checkpoint "
                         "(hsst-train writes them) or an ONNX exported by hsst-export")
    sha = file_sha256(weights)
    if weights.suffix.lower() == ".onnx":
        return ProbeNetSource(weights, _given_onnx_meta(weights, opts), sha, onnx=weights)
    try:
        from hsst.train.models import load_probe_checkpoint
    except ImportError as exc:
        raise ConfigError(f"exporting a checkpoint needs torch ({exc}); pip install hsst[export], or pass an "
                          "ONNX exported elsewhere with --weights model.onnx") from None
    model, meta = load_probe_checkpoint(weights, map_location="cpu")
    if opts.name:
        meta.name = opts.name  # the files and the model they hold carry one name
    return ProbeNetSource(weights, meta, sha, model=model)


def _given_onnx_meta(weights: Path, opts: ExportOptions) -> ModelMeta:
    if not sidecar_path(weights).is_file():
        raise ModelError(f"{weights} has no sidecar {sidecar_path(weights).name}; hsst-export needs the "
                         "model metadata: export it with hsst-export, or pass the probe-net checkpoint")
    meta = ModelMeta.load(sidecar_path(weights))
    if meta.extra.get("status") == "failed":
        raise ModelError(f"{weights} failed its parity gate when exported; re-export it")
    check_onnx(weights, meta)
    if set(opts.formats) == {"onnx"} and not opts.detector:
        raise ConfigError(f"{weights} already is an ONNX: --format onnx has nothing to write; ask for "
                          "--format onnx-int8 or --trt, or pass the probe-net checkpoint to re-export")
    return meta


def to_parity_set(folder: FaceImageFolder, limit: int) -> np.ndarray:
    """At most ``limit`` faces of ``folder`` as network input (spread over the folder)."""
    x = folder.tensor()
    if x.shape[0] <= limit:
        return x
    idx = np.linspace(0, x.shape[0] - 1, num=limit).round().astype(int)
    return np.ascontiguousarray(x[idx])


class EmbedderTarget:
    """The probe-net: its ONNX, onnxruntime INT8 copy and engine spec, each with its gate's reference.

    Args:
        opts: the run's options.
        weights: a probe-net checkpoint or an exported ONNX (with its sidecar).
        out: the output folder.

    Attributes:
        onnx_paths: the FP32 ONNX the other formats start from (given, or written by :meth:`onnx`).
    """

    label = "TensorRT engine"
    onnx_kind, engine_kind = "onnx", "engine"
    formats = ("onnx", "onnx-int8", "engine")

    def __init__(self, opts: ExportOptions, weights: Path, out: Path) -> None:
        self.opts, self.out = opts, out
        self.source = load_probe_net(weights, opts)
        self.onnx_paths: List[Path] = [self.source.onnx] if self.source.onnx else []
        self._folder: Optional[FaceImageFolder] = None
        self._faces: Optional[np.ndarray] = None

    @property
    def stem(self) -> str:
        return self.opts.name or self.source.meta.name

    # -- the gate's faces -------------------------------------------------------------------------------------
    def face_folder(self) -> FaceImageFolder:
        """``--data`` (or the bundled sample photo), read for the model: parity faces and INT8 calibration."""
        if self._folder is None:
            root = self.opts.data
            if root is None:
                root = default_faces()
                if root is None:
                    raise ConfigError(f"the accuracy gates need real faces and the bundled sample photo is not "
                                      f"installed (pip install 'hsst[examples]'): {MAKE_CROPS_HINT}")
                logger.warning("no --data: the accuracy gate checks the bundled sample photo only (one face, %s); "
                               "%s", root.name, MAKE_CROPS_HINT)
            self._folder = FaceImageFolder(root, self.source.meta.preprocess,
                                           limit=max(self.opts.calib_images, self.opts.parity_images))
        return self._folder

    def faces(self) -> np.ndarray:
        """The parity faces as network input (at most ``parity_images``)."""
        if self._faces is None:
            self._faces = to_parity_set(self.face_folder(), self.opts.parity_images)
        return self._faces

    def calibration_faces(self) -> np.ndarray:
        return self.face_folder().tensor()[: self.opts.calib_images]

    def check_faces(self, count: int = 64) -> np.ndarray:
        """Calibration faces that are not parity faces: the INT8 precision search decides on them, so the gate
        judges its result on faces it never saw (with few faces, all of them)."""
        x = self.face_folder().tensor()
        parity = set(np.linspace(0, len(x) - 1, num=min(self.opts.parity_images, len(x))).round().astype(int).tolist())
        rest = [i for i in range(min(len(x), self.opts.calib_images)) if i not in parity]
        if not rest:
            return self.calibration_faces()
        pick = np.linspace(0, len(rest) - 1, num=min(count, len(rest))).round().astype(int)
        return np.ascontiguousarray(x[[rest[i] for i in sorted(set(pick.tolist()))]])

    # -- formats ----------------------------------------------------------------------------------------------
    def onnx(self) -> Iterator[Candidate]:
        """The FP32 ONNX exported from the checkpoint, against torch (nothing when an ONNX was given)."""
        if self.source.model is None:
            return
        from hsst.export.onnx_export import export_onnx

        o, meta = self.opts, self.source.meta
        path = self.out / f"{self.stem}.onnx"
        exp = export_onnx(self.source.model, meta, path, opset=o.opset, batch=o.batch, dynamic=o.dynamic,
                          normalize=o.normalize, simplify=o.simplify, imgsz=o.imgsz, optimize=o.optimize)
        faces = self.faces()
        sidecar = make_sidecar(meta, path, "onnx", exp.input_shape, exp.output_shape, o.normalize, precision="fp32",
                               opset=exp.opset, simplified=exp.simplified, folded_batchnorm=exp.folded,
                               graph_rewrites=(["prelu-as-relu-dwconv"] if exp.prelu_decomposed else []),
                               batch={"dynamic": o.dynamic, "size": o.batch},
                               source={"file": self.source.path.name, "sha256": self.source.sha256})
        self.onnx_paths.append(path)
        yield self._candidate("onnx", path, torch_embeddings(self.source.model, faces, normalize=o.normalize),
                              onnx_embeddings(path, faces, batch=o.batch, static=not o.dynamic), "onnx",
                              ("torch", "onnxruntime"), sidecar)

    def onnx_int8(self, onnx_path: Path) -> Candidate:
        """The onnxruntime INT8 copy (QOperator, calibrated on ``--data``), against the FP32 ONNX.

        Mixed precision where INT8 alone misses the gate: the convolutions that lose the most signal to
        quantisation stay float32 (:func:`hsst.export.quantize.quantize_mixed`, decided on calibration faces
        apart from the gate's)."""
        from hsst.export.parity import GATES
        from hsst.export.quantize import QuantizeConfig, quantize_mixed

        base = _onnx_meta(onnx_path)
        first = base.extra["input"]["shape"][0]
        static = not isinstance(first, str)  # the ONNX decides, not the options (it may be a given file)
        batch = int(first) if static else self.opts.batch
        path = self.out / f"{self.stem}.int8.onnx"
        check = self.check_faces()
        mixed = quantize_mixed(onnx_path, path, self.calibration_faces(),
                               lambda p: onnx_embeddings(p, check, batch=batch, static=static),
                               target_cosine=GATES["onnx-int8"][1], input_name=base.input_name,
                               config=QuantizeConfig(target="onnxruntime", batch=batch))
        sidecar = _derived_sidecar(base, path, "onnx-int8", precision="int8",
                                   quantization={"tool": "onnxruntime.quantization", "format": "QOperator",
                                                 "weights": "int8 per-channel symmetric", "activations": "uint8",
                                                 "calibration": "minmax", "faces": len(self.face_folder().crops()),
                                                 "float_layers": mixed.float_layers,
                                                 "search": [{"float_layers": n, "cosine": round(c, 5)}
                                                            for n, c in mixed.tried]},
                                   graph_rewrites=["prelu-as-relu-dwconv"],
                                   source={"file": onnx_path.name, "sha256": base.extra.get("sha256")})
        faces = self.faces()
        return self._candidate("onnx-int8", path, onnx_embeddings(onnx_path, faces, batch=batch, static=static),
                               onnx_embeddings(path, faces, batch=batch, static=static), "onnx-int8",
                               ("onnxruntime-fp32", "onnxruntime-int8"), sidecar)

    def _candidate(self, kind: str, path: Path, reference: np.ndarray, got: np.ndarray, gate: str,
                   labels: tuple, sidecar: ModelMeta) -> Candidate:
        name = self.source.meta.output_name
        return Candidate(kind, path, {name: reference}, {name: got}, gate, labels, MetaSidecar(sidecar))

    # -- engines ----------------------------------------------------------------------------------------------
    def engine_spec(self, onnx_path: Path) -> EngineSpec:
        """What to build from ``onnx_path``: its batch (static, or a profile), precision, device, faces."""
        o = self.opts
        base = _onnx_meta(onnx_path)
        shape = base.extra["input"]["shape"]
        dynamic = isinstance(shape[0], str)
        if not dynamic and o.dynamic:
            raise ConfigError(f"--dynamic needs an ONNX with a symbolic batch dimension; {onnx_path.name} has batch "
                              f"{shape[0]}: re-export it with --dynamic")
        if not dynamic and int(shape[0]) != o.batch:
            raise ConfigError(f"{onnx_path.name} has a static batch of {shape[0]}; pass --batch {shape[0]} or "
                              "re-export with --dynamic --batch N")
        faces = self.faces()
        if faces.shape[1:] != tuple(shape[1:]):
            raise ConfigError(f"parity faces have shape {faces.shape[1:]}, the model takes {shape[1:]}")
        return EngineSpec(name=self.stem, onnx=onnx_path, out_dir=self.out, input_name=base.input_name,
                          chw=tuple(int(d) for d in shape[1:]), batch=o.batch,  # type: ignore[arg-type]
                          profile=o.profile() if dynamic else None, precision=o.precision,
                          device=parse_device(o.device), workspace=o.workspace, inputs=faces,
                          calib=self.face_folder() if o.int8 else None, model_sha=base.extra.get("sha256", ""),
                          qdq_onnx=functools.partial(self.qdq_onnx, onnx_path) if o.int8 else None,
                          jetson_command=self._jetson_command(onnx_path))

    def engine_record(self, spec: EngineSpec, built: BuiltEngine,
                      latency: Optional[Dict[str, float]]) -> MetaSidecar:
        """The engine's sidecar: the FP32 ONNX's metadata plus the build record, batch profile and latency."""
        base = _onnx_meta(spec.onnx)
        profile = spec.profile
        measured = {"latency_ms": latency} if latency else {}
        return MetaSidecar(_derived_sidecar(
            base, built.path, "engine", precision=spec.precision, tensorrt=built.tensorrt,
            source={"file": spec.onnx.name, "sha256": base.extra.get("sha256")},
            batch={"dynamic": profile is not None and profile[0] != profile[2], "size": spec.batch,
                   "profile": list(profile) if profile else None}, **measured))

    def qdq_onnx(self, onnx_path: Path) -> Path:
        """Symmetric Q/DQ ONNX for TensorRT's explicit INT8 (TensorRT 11, trtexec builds), with its sidecar."""
        from hsst.export.quantize import QuantizeConfig, quantize_onnx

        base = _onnx_meta(onnx_path)
        path = self.out / f"{self.stem}.qdq.onnx"
        quantize_onnx(onnx_path, path, self.calibration_faces(), input_name=base.input_name,
                      config=QuantizeConfig(target="tensorrt", batch=self.opts.batch))
        write_sidecar(_derived_sidecar(base, path, "onnx-qdq", precision="int8",
                                       quantization={"tool": "onnxruntime.quantization", "format": "QDQ",
                                                     "target": "tensorrt", "symmetric": True}), path)
        return path

    def _jetson_command(self, onnx_path: Path) -> str:
        """The hsst-export line that builds and gates this engine on the Jetson (inside the copied folder)."""
        o = self.opts
        return (f"hsst-export --weights {onnx_path.name} --trt" + (" --half" if o.half else "")
                + (" --int8 --data <faces>" if o.int8 else " --data <faces>")
                + (f" --dynamic --batch {o.batch}" if o.dynamic else (f" --batch {o.batch}" if o.batch != 1 else ""))
                + (f" --device {o.device}" if parse_device(o.device)[0] == "dla" else ""))


def _onnx_meta(onnx_path: Path) -> ModelMeta:
    return ModelMeta.load(sidecar_path(onnx_path))


def _derived_sidecar(base: ModelMeta, path: Path, fmt: str, **facts: Any) -> ModelMeta:
    """The sidecar of a file made from the FP32 ONNX that ``base`` describes (same input and output)."""
    ext = base.extra
    return make_sidecar(base, path, fmt, ext["input"]["shape"], ext["output"]["shape"], base.output_normalized,
                        **facts)
