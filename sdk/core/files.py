"""Small file helpers every layer shares: content hashes and atomic writes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

PathLike = Union[str, Path]


def model_cache_dir() -> Path:
    """Folder of models fetched or converted at set-up: ``$HSST_CACHE/models`` or ``~/.cache/hsst/models``."""
    root = os.environ.get("HSST_CACHE")
    return Path(root) / "models" if root else Path.home() / ".cache" / "hsst" / "models"


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-sized blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Let ``write`` fill a temporary file in the same folder, sync it, then ``os.replace`` it onto ``path``.

    A reader (or a process killed mid-write) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename makes it the file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, value: Any, **dumps: Any) -> Path:
    """:func:`atomic_write` of ``value`` as JSON and a final newline (``dumps``: :func:`json.dumps` options;
    default ``indent=2``)."""
    dumps.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(value, **dumps) + "\n")
