"""The export pipeline behind ``hsst-export``: checkpoint -> ONNX -> (onnxruntime INT8, TensorRT engine).

Every file written gets a JSON sidecar and passes an accuracy gate first. A file that fails its gate is kept
for inspection as ``<file>.failed`` (with ``<file>.failed.json`` holding the report) so no runtime can load it
by its normal name, and the run ends with :class:`GateFailed` (exit status 2).

Where TensorRT's Python API does not import, the engine is built with trtexec when present; otherwise the ONNX
and its sidecar are written and :class:`EngineNotBuilt` (exit status 3) carries the exact trtexec and
polygraphy commands to run on the Jetson.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hsst.core.files import atomic_write_json
from hsst.core.errors import ConfigError, HsstError, ModelError
from hsst.core.metadata import ModelMeta, sidecar_path
from hsst.export.calibration import MAKE_CROPS_HINT, FaceImageFolder, calibration_cache_path
from hsst.export.options import ExportOptions, parse_device
from hsst.export.parity import (ParityReport, compare_embeddings, onnx_embeddings, onnx_session, polygraphy_hint,
                                torch_embeddings)
from hsst.export.sidecar import check_onnx, file_sha256, make_sidecar, mark_failed, write_sidecar

logger = logging.getLogger(__name__)

__all__ = ["Artifact", "ExportResult", "GateFailed", "EngineNotBuilt", "Exporter", "export", "default_weights",
           "default_faces", "check_output_dir"]

#: Exit statuses of hsst-export.
EXIT_OK, EXIT_ERROR, EXIT_GATE, EXIT_NO_TRT = 0, 1, 2, 3


class GateFailed(HsstError):
    """An exported file failed its accuracy gate (kept as ``<file>.failed``)."""


class EngineNotBuilt(HsstError):
    """TensorRT is not usable here; the message carries the commands to run on the Jetson."""


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
class ExportResult:
    """Everything one run wrote, in order, and how long it took."""

    artifacts: List[Artifact] = field(default_factory=list)
    seconds: float = 0.0
    commands: List[str] = field(default_factory=list)


def default_weights() -> Optional[Path]:
    """The shipped default model: a probe-net checkpoint, else the default ONNX (``hsst/assets/models``)."""
    from hsst.runtime.models import ASSETS_MODELS, DEFAULT_EMBEDDING_ONNX

    for candidate in (ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX.replace(".onnx", ".pt"),
                      ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX):
        if candidate.is_file():
            return candidate
    return None


def default_faces() -> Optional[Path]:
    """The bundled sample face photo (scikit-image's astronaut, :mod:`hsst.samples`), when it is installed."""
    from hsst.samples import sample_face_path

    try:
        return sample_face_path()
    except ConfigError:
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
        self.model: Any = None
        self.meta: Optional[ModelMeta] = None
        self.source_sha: Optional[str] = None
        self._faces: Optional[np.ndarray] = None
        self._folder: Optional[FaceImageFolder] = None

    # -- inputs ---------------------------------------------------------------------------------------------
    def _load_source(self, weights: Path) -> Optional[Path]:
        """Load the checkpoint (returns None) or accept an exported ONNX with its sidecar (returns its path)."""
        if not weights.is_file():
            raise ModelError(f"model file not found: {weights}; pass --weights with a probe-net checkpoint "
                             "(hsst-train writes them) or an ONNX exported by hsst-export")
        self.source_sha = file_sha256(weights)
        if weights.suffix.lower() == ".onnx":
            if not sidecar_path(weights).is_file():
                raise ModelError(f"{weights} has no sidecar {sidecar_path(weights).name}; hsst-export needs the "
                                 "model metadata: export it with hsst-export, or pass the probe-net checkpoint")
            self.meta = ModelMeta.load(sidecar_path(weights))
            if self.meta.extra.get("status") == "failed":
                raise ModelError(f"{weights} failed its parity gate when exported; re-export it")
            check_onnx(weights, self.meta)
            if set(self.opts.formats) == {"onnx"} and not self.opts.detector:
                raise ConfigError(f"{weights} already is an ONNX: --format onnx has nothing to write; ask for "
                                  "--format onnx-int8 or --trt, or pass the probe-net checkpoint to re-export")
            return weights
        try:
            from hsst.train.models import load_probe_checkpoint
        except ImportError as exc:
            raise ConfigError(f"exporting a checkpoint needs torch ({exc}); pip install hsst[export], or pass an "
                              "ONNX exported elsewhere with --weights model.onnx") from None
        self.model, self.meta = load_probe_checkpoint(weights, map_location="cpu")
        if self.opts.name:
            self.meta.name = self.opts.name  # the files and the model they hold carry one name
        return None

    def faces(self) -> np.ndarray:
        """The parity faces as network input (``--data`` or the bundled samples)."""
        if self._faces is None:
            folder = self.face_folder()
            self._faces = to_parity_set(folder, self.opts.parity_images)
        return self._faces

    def face_folder(self, limit: Optional[int] = None) -> FaceImageFolder:
        root = self.opts.data
        if root is None:
            root = default_faces()
            if root is None:
                raise ConfigError(f"the accuracy gates need real faces and the bundled sample photo is not installed "
                                  f"(pip install 'hsst[examples]'): {MAKE_CROPS_HINT}")
            logger.warning("no --data: the accuracy gate checks the bundled sample photo only (one face, %s); "
                           "%s", root.name, MAKE_CROPS_HINT)
        assert self.meta is not None
        if limit is not None:
            return FaceImageFolder(root, self.meta.preprocess, limit=limit)
        if self._folder is None:
            self._folder = FaceImageFolder(root, self.meta.preprocess,
                                           limit=max(self.opts.calib_images, self.opts.parity_images))
        return self._folder

    @property
    def stem(self) -> str:
        assert self.meta is not None
        return self.opts.name or self.meta.name

    @property
    def static(self) -> bool:
        return not self.opts.dynamic

    # -- steps ----------------------------------------------------------------------------------------------
    def run(self) -> ExportResult:
        t0 = time.perf_counter()
        out = check_output_dir(self.opts.output)
        weights = self.opts.weights or default_weights()
        if weights is None and not self.opts.detector:
            raise ModelError("no model given and the default model is not installed: pass --weights CKPT "
                             "(a probe-net checkpoint from hsst-train) or --weights model.onnx")
        pending: Optional[EngineNotBuilt] = None
        if weights is not None:
            onnx_given = self._load_source(Path(weights))
            self.faces()  # bad or faceless --data fails here, before any file is written
            onnx_path = onnx_given or self.export_onnx(out)
            if "onnx-int8" in self.opts.formats:
                self.export_onnx_int8(onnx_path, out)
            if "engine" in self.opts.formats:
                try:
                    self.export_engine(onnx_path, out)
                except EngineNotBuilt as exc:
                    pending = exc
        else:
            logger.info("no probe-net given: exporting the face detectors only")
        if self.opts.detector:
            try:
                self.export_detectors(out)
            except EngineNotBuilt as exc:
                pending = EngineNotBuilt(f"{pending}\n{exc}") if pending else exc
        self.result.seconds = time.perf_counter() - t0
        if pending is not None:
            raise pending
        return self.result

    # -- face detectors -------------------------------------------------------------------------------------
    def export_detectors(self, out: Path) -> None:
        """Detector ONNX files + sidecars, and (``engine`` format) their TensorRT engines."""
        from hsst.export.detector import export_detector_onnx

        pairs = export_detector_onnx(out)
        for onnx_path, side in pairs:
            self.result.artifacts.append(Artifact("detector-onnx", onnx_path, side))
        if "engine" not in self.opts.formats:
            return
        from hsst.export.trtexec import find_trtexec
        from hsst.runtime.backends.cuda import TensorRTUnavailable, import_tensorrt

        try:
            trt = import_tensorrt()
        except TensorRTUnavailable as exc:
            trtexec = find_trtexec()
            commands = []
            for onnx_path, _ in pairs:
                cmd = self._detector_engine_trtexec(onnx_path, trtexec)
                if cmd:
                    commands.append(cmd)
            if trtexec is None:
                self.result.commands += commands
                raise EngineNotBuilt(f"detector engines NOT built: {str(exc).split('. On a Jetson')[0]}; wrote the "
                                     f"detector ONNX files in {out / 'detector'}; on the Jetson run:\n  "
                                     + "\n  ".join(commands)) from None
            return
        for onnx_path, _ in pairs:
            self._detector_engine_python(trt, onnx_path)

    def _detector_precision(self) -> str:
        if self.opts.int8:
            logger.warning("detectors are built FP16: INT8 calibration applies to the probe-net only")
        return "fp16" if (self.opts.half or self.opts.int8) else "fp32"

    def _detector_engine_python(self, trt: Any, onnx_path: Path) -> Path:
        from hsst.export.detector import detector_gate, detector_inputs, detector_sidecar, write_json
        from hsst.export.onnx_export import onnx_io
        from hsst.export.tensorrt_build import EngineBuildConfig, build_engine, engine_filename, timing_cache_path
        from hsst.runtime.backends import create_backend, latency_percentiles
        from hsst.runtime.backends.cuda import cuda_device_name, import_pycuda

        precision = self._detector_precision()
        import_pycuda()  # the gate runs the engine: fail before the build if pycuda or the GPU is missing
        device = parse_device(self.opts.device)
        version = str(trt.__version__)
        (in_name, shape), = onnx_io(onnx_path)[0][:1]
        name = onnx_path.name.split(".")[0]
        path = onnx_path.with_name(engine_filename(name, int(shape[0]), version, device, precision))
        cfg = EngineBuildConfig(precision=precision, input_name=in_name, chw=tuple(shape[1:]), profile=None,
                                workspace_gib=self.opts.workspace, device=device,
                                timing_cache=timing_cache_path(onnx_path.parent, version, cuda_device_name() or "gpu"))
        build = build_engine(onnx_path, path, cfg)
        x = detector_inputs(onnx_path, self._detector_images())
        sess = onnx_session(onnx_path)
        out_names = [o.name for o in sess.get_outputs()]
        ref = {n: np.concatenate([sess.run([n], {in_name: x[i:i + 1]})[0] for i in range(len(x))]) for n in out_names}
        with create_backend("tensorrt", path, check_sidecar=False) as engine:  # its sidecar comes below
            runs = [engine.run({in_name: x[i:i + 1]}) for i in range(len(x))]
            latency = latency_percentiles(engine.infer, x[:1])
        got = {n: np.concatenate([r[n] for r in runs]) for n in out_names}
        report = detector_gate(ref, got, precision)
        manifest = json.loads((onnx_path.parent / "face_models.json").read_text())
        record = detector_sidecar(onnx_path, manifest, format="engine", file=path.name, sha256=file_sha256(path),
                                  precision=precision, tensorrt=build.record(cfg), parity=report.to_dict(),
                                  latency_ms=latency)
        side = write_json(record, path)
        art = Artifact("detector-engine", path, side, parity=report, latency=latency)
        if not report.passed:
            failed = path.with_name(path.name + ".failed")
            path.replace(failed)
            side.replace(sidecar_path(failed))
            art.path, art.sidecar = failed, sidecar_path(failed)
            self.result.artifacts.append(art)
            raise GateFailed(f"{failed.name} failed its accuracy gate: {report}")
        self.result.artifacts.append(art)
        return path

    def _detector_images(self) -> FaceImageFolder:
        root = self.opts.data or default_faces()
        if root is None:
            raise ConfigError("the detector engine gate needs real images: pass --data DIR (photos or face crops)")
        from hsst.core.metadata import Preprocess

        return FaceImageFolder(root, Preprocess(color="bgr", crop_size=256), limit=8, align=False)  # whole frames

    def _detector_engine_trtexec(self, onnx_path: Path, trtexec: Optional[Path]) -> Optional[str]:
        """Build with trtexec when present (returns None), else return the command to run on the Jetson."""
        from hsst.export.detector import detector_sidecar, write_json
        from hsst.export.onnx_export import onnx_io
        from hsst.export.tensorrt_build import engine_filename, timing_cache_path
        from hsst.export.trtexec import (format_command, parse_trtexec_device, run_trtexec, trtexec_build_command,
                                         trtexec_features)

        precision = self._detector_precision()
        device = parse_device(self.opts.device)
        (in_name, shape), = onnx_io(onnx_path)[0][:1]
        name = onnx_path.name.split(".")[0]
        if trtexec is None:
            engine = engine_filename(name, int(shape[0]), "0", device, precision).replace(".0.", ".${TRTVER}.", 1)
            cmd = trtexec_build_command(onnx_path.name, engine, in_name, shape[1:], precision, None,
                                        self.opts.workspace, device, f"timing.{precision}.cache",
                                        trtexec="/usr/src/tensorrt/bin/trtexec")
            return _expand_var(format_command(cmd))
        feats = trtexec_features(trtexec)
        version = feats.version
        if version is None:
            raise ModelError(f"cannot tell which TensorRT {trtexec} belongs to (no [TensorRT vNNNN] in its --help); "
                             "build the detector engines with the commands in docs/EXPORT.md")
        path = onnx_path.with_name(engine_filename(name, int(shape[0]), version, device, precision))
        cmd = trtexec_build_command(onnx_path, path, in_name, shape[1:], precision, None, self.opts.workspace, device,
                                    timing_cache_path(onnx_path.parent, version, "trtexec"), trtexec=trtexec,
                                    features=feats)
        log = run_trtexec(cmd)
        manifest = json.loads((onnx_path.parent / "face_models.json").read_text())
        record = detector_sidecar(onnx_path, manifest, format="engine", file=path.name, sha256=file_sha256(path),
                                  precision=precision, tensorrt={
                                      "version": version, "api": "trtexec", "device": device[0] if device[0] == "gpu"
                                      else f"dla{device[1]}", "device_name": parse_trtexec_device(log) or "",
                                      "precision": precision, "builder": "trtexec", "version_compatible": False,
                                      "hardware_compatible": False}, parity=None)
        self.result.artifacts.append(Artifact("detector-engine", path, write_json(record, path)))
        return None

    def _gate(self, art: Artifact, meta: ModelMeta, report: ParityReport, hint: str = "") -> None:
        art.parity = report
        logger.info("%s: %s", art.path.name, report)
        if not report.passed:
            failed = mark_failed(art.path, meta, f"accuracy gate failed: {report}", report.to_dict())
            art.path, art.sidecar = failed, sidecar_path(failed)
            self.result.artifacts.append(art)
            more = f" Per-layer comparison: {hint}" if hint else ""
            raise GateFailed(f"{failed.name} failed its accuracy gate: {report}. The file is kept as {failed} for "
                             f"inspection; the runtime will not load it.{more}")
        self.result.artifacts.append(art)

    def export_onnx(self, out: Path) -> Path:
        from hsst.export.onnx_export import export_onnx

        o, meta = self.opts, self.meta
        assert meta is not None
        path = out / f"{self.stem}.onnx"
        exp = export_onnx(self.model, meta, path, opset=o.opset, batch=o.batch, dynamic=o.dynamic,
                          normalize=o.normalize, simplify=o.simplify, imgsz=o.imgsz, optimize=o.optimize)
        faces = self.faces()
        ref = torch_embeddings(self.model, faces, normalize=o.normalize)
        got = onnx_embeddings(path, faces, batch=o.batch, static=self.static)
        report = compare_embeddings(ref, got, "onnx", "torch", "onnxruntime")
        side = make_sidecar(meta, path, "onnx", exp.input_shape, exp.output_shape, o.normalize, precision="fp32",
                            opset=exp.opset, simplified=exp.simplified, folded_batchnorm=exp.folded,
                            graph_rewrites=(["prelu-as-relu-dwconv"] if exp.prelu_decomposed else []),
                            batch={"dynamic": o.dynamic, "size": o.batch}, parity=report.to_dict(),
                            source={"file": Path(o.weights or "").name, "sha256": self.source_sha})
        write_sidecar(side, path)
        self._gate(Artifact("onnx", path, sidecar_path(path)), side, report)
        return path

    def _onnx_meta(self, onnx_path: Path) -> ModelMeta:
        return ModelMeta.load(sidecar_path(onnx_path))

    def export_onnx_int8(self, onnx_path: Path, out: Path) -> Path:
        from hsst.export.quantize import QuantizeConfig, quantize_onnx

        base = self._onnx_meta(onnx_path)
        first = base.extra["input"]["shape"][0]
        static = not isinstance(first, str)  # the ONNX decides, not the options (it may be a given file)
        batch = int(first) if static else self.opts.batch
        path = out / f"{self.stem}.int8.onnx"
        calib = self.face_folder()
        quantize_onnx(onnx_path, path, calib.tensor()[: self.opts.calib_images], input_name=base.input_name,
                      config=QuantizeConfig(target="onnxruntime", batch=batch))
        faces = self.faces()
        ref = onnx_embeddings(onnx_path, faces, batch=batch, static=static)
        got = onnx_embeddings(path, faces, batch=batch, static=static)
        report = compare_embeddings(ref, got, "onnx-int8", "onnxruntime-fp32", "onnxruntime-int8")
        ext = base.extra
        side = make_sidecar(base, path, "onnx-int8", ext["input"]["shape"], ext["output"]["shape"],
                            base.output_normalized, precision="int8",
                            quantization={"tool": "onnxruntime.quantization", "format": "QOperator",
                                          "weights": "int8 per-channel symmetric", "activations": "uint8",
                                          "calibration": "minmax", "faces": len(calib.crops())},
                            graph_rewrites=["prelu-as-relu-dwconv"],
                            parity=report.to_dict(), source={"file": onnx_path.name, "sha256": ext.get("sha256")})
        write_sidecar(side, path)
        self._gate(Artifact("onnx-int8", path, sidecar_path(path)), side, report)
        return path

    def export_engine(self, onnx_path: Path, out: Path) -> Optional[Path]:
        from hsst.export.trtexec import find_trtexec
        from hsst.runtime.backends.cuda import TensorRTUnavailable, import_tensorrt

        try:
            trt = import_tensorrt()
        except TensorRTUnavailable as exc:
            trtexec = find_trtexec()
            if trtexec is not None:
                return self._engine_trtexec(onnx_path, out, trtexec)
            self._no_tensorrt(onnx_path, out, str(exc))
            return None
        return self._engine_python(trt, onnx_path, out)

    def _engine_inputs(self, onnx_path: Path) -> Tuple[ModelMeta, Tuple[int, int, int], Optional[Tuple[int, int, int]]]:
        base = self._onnx_meta(onnx_path)
        shape = base.extra["input"]["shape"]
        dynamic = isinstance(shape[0], str)
        if not dynamic and self.opts.dynamic:
            raise ConfigError(f"--dynamic needs an ONNX with a symbolic batch dimension; {onnx_path.name} has batch "
                              f"{shape[0]}: re-export it with --dynamic")
        if not dynamic and int(shape[0]) != self.opts.batch:
            raise ConfigError(f"{onnx_path.name} has a static batch of {shape[0]}; pass --batch {shape[0]} or "
                              "re-export with --dynamic --batch N")
        chw = tuple(int(d) for d in shape[1:])
        return base, chw, (self.opts.profile() if dynamic else None)  # type: ignore[return-value]

    def _engine_faces(self, base: ModelMeta) -> np.ndarray:
        faces = self.faces()
        if faces.shape[1:] != tuple(base.extra["input"]["shape"][1:]):
            raise ConfigError(f"parity faces have shape {faces.shape[1:]}, the model takes "
                              f"{base.extra['input']['shape'][1:]}")
        return faces

    def _int8_onnx_for_trt(self, onnx_path: Path, out: Path) -> Path:
        """Q/DQ ONNX (symmetric int8) for TensorRT's explicit quantisation (TensorRT 11, trtexec builds)."""
        from hsst.export.quantize import QuantizeConfig, quantize_onnx

        path = out / f"{self.stem}.qdq.onnx"
        quantize_onnx(onnx_path, path, self.face_folder().tensor()[: self.opts.calib_images],
                      config=QuantizeConfig(target="tensorrt", batch=1 if self.opts.batch == 1 else self.opts.batch))
        return path

    def _engine_python(self, trt: Any, onnx_path: Path, out: Path) -> Path:
        from hsst.export.tensorrt_build import (EngineBuildConfig, api_generation, autocast_fp16, build_engine,
                                                engine_filename, timing_cache_path)
        from hsst.runtime.backends import create_backend, latency_percentiles
        from hsst.runtime.backends.cuda import cuda_device_name, import_pycuda

        o = self.opts
        base, chw, profile = self._engine_inputs(onnx_path)
        import_pycuda()  # the gate runs the engine: fail before a long build if pycuda or the GPU is missing
        device = parse_device(o.device)
        version = str(trt.__version__)
        api = api_generation(version)
        build_onnx = onnx_path
        if o.int8 and api == "11":
            build_onnx = self._int8_onnx_for_trt(onnx_path, out)
        if o.half and api == "11":
            converted = autocast_fp16(onnx_path, out / f"{self.stem}.fp16.onnx")
            if converted is not None:
                build_onnx = converted
        gpu = cuda_device_name() or "gpu"
        path = out / engine_filename(self.stem, o.batch, version, device, o.precision)
        calib_data = self.face_folder() if o.int8 else None
        cfg = EngineBuildConfig(
            precision=o.precision, input_name=base.input_name, chw=chw, profile=profile, workspace_gib=o.workspace,
            device=device, timing_cache=timing_cache_path(out, version, gpu), calib_data=calib_data,
            calib_cache=(calibration_cache_path(out, self.stem, base.extra["sha256"], calib_data, version)
                         if calib_data else None),
            calib_batch=(profile[1] if profile else o.batch))
        build = build_engine(build_onnx, path, cfg)
        faces = self._engine_faces(base)
        ref = onnx_embeddings(onnx_path, faces, batch=o.batch, static=profile is None)
        from hsst.export.parity import run_in_batches

        with create_backend("tensorrt", path, check_sidecar=False) as engine:  # its sidecar comes below
            limit = engine.batch_limit
            got = run_in_batches(engine.infer, faces, limit, static=engine.static_batch)
            bench = faces[:limit]
            if bench.shape[0] < limit and engine.static_batch:
                bench = np.resize(faces, (limit,) + faces.shape[1:]).astype(np.float32)
            latency = latency_percentiles(engine.infer, bench)
        report = compare_embeddings(ref, got, o.precision, "onnxruntime-fp32", f"tensorrt-{o.precision}")
        record = build.record(cfg)
        side = make_sidecar(base, path, "engine", base.extra["input"]["shape"], base.extra["output"]["shape"],
                            base.output_normalized, precision=o.precision, tensorrt=record, parity=report.to_dict(),
                            latency_ms=latency, source={"file": onnx_path.name, "sha256": base.extra.get("sha256")},
                            batch={"dynamic": profile is not None and profile[0] != profile[2], "size": o.batch,
                                   "profile": list(profile) if profile else None})
        write_sidecar(side, path)
        hint = polygraphy_hint(build_onnx, o.precision, base.input_name, (o.batch, *chw), cfg.calib_cache)
        self._gate(Artifact("engine", path, sidecar_path(path), latency=latency), side, report, hint)
        return path

    def _engine_trtexec(self, onnx_path: Path, out: Path, trtexec: Path) -> Path:
        from hsst.export.tensorrt_build import device_tag, engine_filename, timing_cache_path
        from hsst.export.trtexec import (parse_trtexec_device, parse_trtexec_version, run_trtexec,
                                         trtexec_build_command, trtexec_embeddings, trtexec_features)

        o = self.opts
        base, chw, profile = self._engine_inputs(onnx_path)
        device = parse_device(o.device)
        feats = trtexec_features(trtexec)
        build_onnx = self._int8_onnx_for_trt(onnx_path, out) if o.int8 else onnx_path
        tmp_engine = out / f".{self.stem}.{os.getpid()}.engine"
        cache = timing_cache_path(out, feats.version or "0", "trtexec")
        cmd = trtexec_build_command(build_onnx, tmp_engine, base.input_name, chw, o.precision, profile, o.workspace,
                                    device, cache, trtexec=trtexec, features=feats)
        t0 = time.perf_counter()
        log = run_trtexec(cmd)
        build_s = time.perf_counter() - t0
        version = feats.version or parse_trtexec_version(log)  # every trtexec run prints [TensorRT vNNNN]
        if version is None:
            tmp_engine.unlink(missing_ok=True)
            raise ModelError(f"cannot tell which TensorRT {trtexec} belongs to (no [TensorRT vNNNN] in its output); "
                             "the engine could not be named and recorded")
        path = out / engine_filename(self.stem, o.batch, version, device, o.precision)
        tmp_engine.replace(path)
        path.with_name(path.name + ".build.log").write_text(log)
        faces = self._engine_faces(base)[:16]
        ref = onnx_embeddings(onnx_path, faces, batch=o.batch, static=profile is None)
        got = trtexec_embeddings(trtexec, path, faces, base.input_name, base.output_name, o.batch,
                                 dynamic=profile is not None, workdir=out)
        report = compare_embeddings(ref, got, o.precision, "onnxruntime-fp32", f"tensorrt-{o.precision}")
        record = {"version": version, "api": "trtexec", "device": device_tag(device),
                  "device_name": parse_trtexec_device(log) or "", "precision": o.precision, "builder": "trtexec",
                  "build_s": round(build_s, 2), "workspace_gib": o.workspace,
                  "profile": list(profile) if profile else None,
                  "quantization": "explicit-qdq" if o.int8 else None, "version_compatible": False,
                  "hardware_compatible": False, "command": " ".join(str(c) for c in cmd)}
        side = make_sidecar(base, path, "engine", base.extra["input"]["shape"], base.extra["output"]["shape"],
                            base.output_normalized, precision=o.precision, tensorrt=record, parity=report.to_dict(),
                            source={"file": onnx_path.name, "sha256": base.extra.get("sha256")})
        write_sidecar(side, path)
        hint = polygraphy_hint(build_onnx, o.precision, base.input_name, (o.batch, *chw))
        self._gate(Artifact("engine", path, sidecar_path(path)), side, report, hint)
        return path

    def _no_tensorrt(self, onnx_path: Path, out: Path, why: str) -> None:
        from hsst.export.tensorrt_build import engine_filename
        from hsst.export.trtexec import format_command, trtexec_bench_command, trtexec_build_command

        o = self.opts
        base, chw, profile = self._engine_inputs(onnx_path)
        device = parse_device(o.device)
        # The TensorRT version tag comes from trtexec itself on the Jetson (it prints [TensorRT v8502]).
        engine = engine_filename(self.stem, o.batch, "0", device, o.precision).replace(".0.", ".${TRTVER}.", 1)
        onnx_name = onnx_path.name
        if o.int8:
            qdq = self._int8_onnx_for_trt(onnx_path, out)
            write_sidecar(make_sidecar(base, qdq, "onnx-qdq", base.extra["input"]["shape"],
                                       base.extra["output"]["shape"], base.output_normalized, precision="int8",
                                       quantization={"tool": "onnxruntime.quantization", "format": "QDQ",
                                                     "target": "tensorrt", "symmetric": True}), qdq)
            onnx_name = qdq.name
        build = trtexec_build_command(onnx_name, engine, base.input_name, chw, o.precision, profile, o.workspace,
                                      device, f"timing.{o.precision}.cache", trtexec="/usr/src/tensorrt/bin/trtexec")
        bench = trtexec_bench_command(engine, base.input_name, chw, batch=profile[1] if profile else None,
                                      trtexec="/usr/src/tensorrt/bin/trtexec")
        poly = polygraphy_hint(onnx_name, o.precision, base.input_name, (o.batch, *chw))
        hsst_cmd = (f"hsst-export --weights {onnx_path.name} --trt" + (" --half" if o.half else "")
                    + (" --int8 --data <faces>" if o.int8 else " --data <faces>")
                    + (f" --dynamic --batch {o.batch}" if o.dynamic else
                       (f" --batch {o.batch}" if o.batch != 1 else ""))
                    + (f" --device {o.device}" if device[0] == "dla" else ""))
        version_cmd = ("TRTVER=$(/usr/src/tensorrt/bin/trtexec --help 2>&1 | "
                       "sed -n 's/.*\\[TensorRT v\\([0-9]*\\)\\].*/\\1/p' | head -n 1)")
        build_line = _expand_var(format_command(build))
        bench_line = _expand_var(format_command(bench))
        self.result.commands = [hsst_cmd, version_cmd, build_line, bench_line, poly]
        raise EngineNotBuilt(
            f"TensorRT engine NOT built: {why.split('. On a Jetson')[0]}, and no trtexec on PATH or in "
            f"/usr/src/tensorrt/bin. Wrote {onnx_name} and its sidecar in {out}. Engines must be built on the "
            "device that runs them: copy the folder to the Jetson and run there (inside it):\n"
            f"  {hsst_cmd}\nor, without hsst's Python API:\n  {version_cmd}\n  {build_line}\n"
            f"then check speed:\n  {bench_line}\nand accuracy layer by layer:\n  {poly}\n"
            "(python -m hsst.export.selftest runs the whole check on the Jetson)")


def _expand_var(line: str) -> str:
    """Let the shell expand ``${TRTVER}`` inside a shlex-quoted argument ('...' -> "...")."""
    import re

    return re.sub(r"'([^']*\$\{TRTVER\}[^']*)'", r'"\1"', line)


def to_parity_set(folder: FaceImageFolder, limit: int) -> np.ndarray:
    """At most ``limit`` faces of ``folder`` as network input (spread over the folder)."""
    x = folder.tensor()
    if x.shape[0] <= limit:
        return x
    idx = np.linspace(0, x.shape[0] - 1, num=limit).round().astype(int)
    return np.ascontiguousarray(x[idx])


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
