"""Where model files come from: configuration first, then the shipped default, with metadata checks."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Tuple, Union

from hsst.core.errors import ModelError
from hsst.core.metadata import ModelMeta, sidecar_path

logger = logging.getLogger(__name__)

#: Folder of models shipped inside the package (``sdk/assets/models``).
ASSETS_MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
#: File name of the shipped default embedding model.
DEFAULT_EMBEDDING_ONNX = "hsst-mobilefacenet-112.onnx"

#: ``<model>.<maxbatch>.<trtversion>.<device>.<precision>.engine`` (jetson-inference naming).
ENGINE_NAME = re.compile(r"^(?P<model>.+)\.(?P<maxbatch>\d+)\.(?P<trt>[\d.]+?)\.(?P<device>[^.]+)\."
                         r"(?P<precision>fp32|fp16|int8)\.engine$")


def default_embedding_model() -> Path:
    """The shipped default embedding model (ONNX), or :class:`ModelError` saying what to do.

    The trained default model ships under ``hsst/assets/models`` (see its MODEL_CARD.md); a configuration's
    ``embedder.model`` (``--model`` on the command line) replaces it.
    """
    path = ASSETS_MODELS / DEFAULT_EMBEDDING_ONNX
    if not path.is_file() or not sidecar_path(path).is_file():
        raise ModelError(f"no embedding model configured and the default model is not installed ({path} with its "
                         f"JSON sidecar); set embedder.model in the configuration to an ONNX file or TensorRT "
                         "engine exported with hsst-export, or reinstall hsst (its package ships the default model)")
    return path


def resolve_model(model: Union[str, Path, None]) -> Tuple[Path, ModelMeta]:
    """Model file and its metadata: ``model`` if given, else :func:`default_embedding_model`.

    Raises:
        ModelError: the file or its JSON sidecar is missing or unreadable.
    """
    path = Path(model).expanduser() if model else default_embedding_model()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}; check embedder.model in the configuration")
    meta = ModelMeta.load(sidecar_path(path))
    return path, meta


def parse_engine_name(path: Union[str, Path]) -> Optional[dict]:
    """Fields of an engine file name following :data:`ENGINE_NAME`, or None when it does not."""
    match = ENGINE_NAME.match(Path(path).name)
    return match.groupdict() if match else None


def check_engine_meta(path: Path, meta: ModelMeta, precision: Optional[str] = None) -> None:
    """Warn when an engine's precision differs from the configured one.

    TensorRT version and GPU compatibility are checked by the TensorRT backend itself
    (:func:`hsst.core.metadata.check_engine_compat`) before deserializing.
    """
    engine_precision = (meta.extra or {}).get("precision") or (parse_engine_name(path) or {}).get("precision")
    if precision and engine_precision and engine_precision != precision:
        logger.warning("engine %s is %s but the configuration asks for %s; using the engine as built",
                       path.name, engine_precision, precision)
