"""On-disk embedding cache, so repeated evaluations of the same model on the same images are fast.

A cached embedding is keyed by everything that determines it: the model file's sha256, the image (absolute
path, size, modification time), how the face crop was made (face source signature), the probe transform
signature and its seed. Images without a face are cached as failures too, so they are not re-detected.

Storage is one SQLite file (stdlib, atomic commits, safe to interrupt), by default
``$HSST_CACHE/eval_embeddings.sqlite`` or ``~/.cache/hsst/eval_embeddings.sqlite``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple, Union

import numpy as np

from hsst.core.errors import ConfigError

logger = logging.getLogger(__name__)

CACHE_FILE = "eval_embeddings.sqlite"
#: An entry: (embedding or None, failure reason or None).
Entry = Tuple[Optional[np.ndarray], Optional[str]]


def default_cache_path() -> Path:
    """``$HSST_CACHE/eval_embeddings.sqlite`` or ``~/.cache/hsst/eval_embeddings.sqlite``."""
    root = os.environ.get("HSST_CACHE") or Path.home() / ".cache" / "hsst"
    return Path(root) / CACHE_FILE


def file_sha256(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def image_key(path: Path, model_sha: str, face_sig: str, transform_sig: str) -> str:
    """Cache key of one image's embedding (sha256 hex)."""
    st = Path(path).stat()
    text = f"{model_sha}\n{Path(path).resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{face_sig}\n{transform_sig}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Key -> embedding (float32) or failure reason, in a SQLite file.

    Args:
        path: the cache file (created with its folder).

    Attributes:
        hits: lookups answered from the cache since creation.
        misses: lookups that were not.
    """

    def __init__(self, path: Union[str, Path, None] = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB, failure TEXT)")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the embedding cache {self.path}: {exc}; pass another --cache file or "
                              "--no-cache") from exc
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> Dict[str, Entry]:
        """Cached entries of ``keys`` (missing keys are absent from the result)."""
        keys = list(keys)
        found: Dict[str, Entry] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = self._db.execute(f"SELECT key, vec, failure FROM emb WHERE key IN ({','.join('?' * len(part))})",
                                    part).fetchall()
            for key, vec, failure in rows:
                found[key] = (None if vec is None else np.frombuffer(vec, np.float32).copy(), failure)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, entries: Dict[str, Entry]) -> None:
        """Store entries (replacing older ones with the same key) in one transaction."""
        rows = [(k, None if v is None else np.ascontiguousarray(v, np.float32).tobytes(), f)
                for k, (v, f) in entries.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb (key, vec, failure) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class NullCache:
    """No caching (``--no-cache``); same interface as :class:`EmbeddingCache`."""

    path = None

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> Dict[str, Entry]:
        self.misses += len(list(keys))
        return {}

    def put_many(self, entries: Dict[str, Entry]) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        pass
