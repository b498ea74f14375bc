"""What the gallery stores and hands out, as plain records, and the checks on what it is given.

No template values here: :class:`Identity` and :class:`TemplateInfo` describe rows without opening them;
:class:`SealedIdentity` / :class:`SealedTemplate` carry sealed rows between stores (bundles).
"""
from __future__ import annotations

import getpass
import io
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from hsst.core.errors import InputError, ModelError
from hsst.core.files import file_sha256
from hsst.core.metadata import ModelMeta, sidecar_path

PathLike = Union[str, Path]
ID_MAX = 256


def iso(ts: Optional[float]) -> Optional[str]:
    """UTC ISO-8601 of an epoch time (None passes)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_actor() -> str:
    """``user@host``: who did it, when the caller does not say."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def model_hash(model: PathLike) -> str:
    """The identity a gallery binds templates to: the SHA-256 of the float32 ONNX the network was exported as.

    An ONNX (or any file without a sidecar): its own SHA-256. An FP32 / FP16 TensorRT engine built from an ONNX
    (its sidecar names that ONNX as ``source``): the ONNX's SHA-256, so the templates of an enrolment station
    running the ONNX match the gates running its engine. INT8 models keep their own hash (their embeddings
    drift further from the float network's).
    """
    path = Path(model)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    side = sidecar_path(path)
    if side.is_file():
        try:
            extra = ModelMeta.load(side).extra or {}
        except ModelError:  # an unreadable sidecar: the model loader says so; bind to the file itself
            extra = {}
        source = (extra.get("source") or {}).get("sha256")
        if extra.get("format") == "engine" and extra.get("precision") in ("fp32", "fp16") and source:
            return str(source)
    return file_sha256(path)


def check_identity_id(value: Any) -> str:
    """An identity id: a non-empty string of at most 256 characters without control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"identity id must be a non-empty string, got {value!r}")
    if len(value) > ID_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InputError(f"identity id {value[:40]!r} must be at most {ID_MAX} characters without control characters")
    return value


def to_json(value: Any, what: str) -> str:
    """Canonical JSON of a caller's value, or an InputError saying what must change."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be JSON-serialisable (str, number, bool, None, list, dict): {exc}") from None


def photo_bytes(image: np.ndarray, aligned: bool, where: str) -> bytes:
    """An enrolment photo as ``.npy`` bytes, after checking it is an image (and square when an aligned crop)."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{where} must be a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{where} must be uint8 or uint16, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)) or min(image.shape[:2]) < 8:
        raise InputError(f"{where} must be (H, W) or (H, W, 1|3) with sides >= 8, got {image.shape}")
    if aligned and image.shape[0] != image.shape[1]:
        raise InputError(f"{where} is marked as an aligned crop but is {image.shape[1]}x{image.shape[0]}, not square")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(image), allow_pickle=False)
    return buf.getvalue()


@dataclass(frozen=True)
class Identity:
    """An enrolled person (no template values: those stay sealed)."""

    id: str
    name: Optional[str]
    attributes: Dict[str, Any]
    created_at: float
    updated_at: float
    version: int
    templates: int
    photos: int

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "name": self.name, "attributes": self.attributes, "templates": self.templates,
                "photos": self.photos, "created": iso(self.created_at), "updated": iso(self.updated_at),
                "version": self.version}


@dataclass(frozen=True)
class TemplateInfo:
    """What is known about a template without opening it."""

    id: str
    identity_id: str
    model_hash: str
    quality: Optional[Dict[str, Any]]
    photo_id: Optional[str]
    created_at: float

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "model": self.model_hash, "quality": self.quality, "photo": self.photo_id,
                "created": iso(self.created_at)}


@dataclass(frozen=True)
class Photo:
    """A kept enrolment photo (decrypted)."""

    id: str
    identity_id: str
    aligned: bool
    image: np.ndarray
    quality: Optional[Dict[str, Any]]
    created_at: float


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit trail: who did what to whom, when."""

    seq: int
    at: float
    action: str
    identity_id: Optional[str]
    actor: str
    detail: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return {"seq": self.seq, "at": iso(self.at), "action": self.action, "identity": self.identity_id,
                "actor": self.actor, "detail": self.detail}


@dataclass(frozen=True)
class SealedTemplate:
    """A template row as stored (sealed): what bundles carry between stores with the same data key."""

    uid: str
    model_hash: str
    sealed: bytes
    quality: Optional[str]
    created_at: float


@dataclass(frozen=True)
class SealedIdentity:
    """An identity with its sealed templates, as bundles carry it."""

    id: str
    name: Optional[str]
    attributes: str
    created_at: float
    updated_at: float
    templates: List[SealedTemplate]


@dataclass
class VerifyReport:
    """What :meth:`GalleryStore.verify` found; ``ok`` when ``problems`` is empty."""

    integrity: str = "ok"
    identities: int = 0
    templates: int = 0
    photos: int = 0
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> Dict[str, Any]:
        return {"ok": self.ok, "integrity": self.integrity, "identities": self.identities,
                "templates": self.templates, "photos": self.photos, "problems": self.problems}


@dataclass
class ReEmbedReport:
    """What :meth:`GalleryStore.re_embed` did."""

    model_hash: str
    dim: int
    identities: int = 0
    templates: int = 0
    dropped: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model_hash, "dim": self.dim, "identities": self.identities,
                "templates": self.templates, "dropped": self.dropped}
