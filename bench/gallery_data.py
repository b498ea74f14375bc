"""Real LFW templates for bench/bench_gallery.py: every photo detected, aligned and embedded once, then cached.

Split: one probe per LFW identity with two or more photos (its last photo, in name order); the gallery is the
other photos, all of the probe identities first, then others up to ``n_gallery``. Embeddings are computed in
chunks with the shipped model (through :class:`hsst.export.calibration.FaceImageFolder`, the gate's detector
and alignment) and cached in ``$HSST_CACHE/bench`` (or ``~/.cache/hsst/bench``) after every chunk, so an
interrupted first run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from hsst.core.files import atomic_write_bytes, file_sha256

logger = logging.getLogger("bench_gallery")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sdk" / "assets" / "models" / "hsst-mobilefacenet-112.onnx"
CHUNK = 400


@dataclass
class RealSet:
    """Real LFW embeddings: gallery templates and held-out probes, each with its identity name."""

    gallery: np.ndarray        # (G, D) float32, L2-normalised
    gallery_names: np.ndarray  # (G,) str
    probes: np.ndarray         # (P, D) float32
    probe_names: np.ndarray    # (P,) str


def split_lfw(lfw: Path, n_gallery: int) -> Tuple[List[Path], List[Path]]:
    """``(gallery_files, probe_files)``: the last photo of each multi-photo identity is its probe."""
    folders = sorted(d for d in lfw.iterdir() if d.is_dir())
    probes, multi_rest, singles = [], [], []
    for folder in folders:
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= 2:
            probes.append(photos[-1])
            multi_rest.extend(photos[:-1])
        else:
            singles.extend(photos)
    gallery = (multi_rest + singles)[:n_gallery]
    return gallery, probes


def _cache_file(model: Path, files: List[Path]) -> Path:
    root = Path(os.environ.get("HSST_CACHE") or Path.home() / ".cache" / "hsst") / "bench"
    digest = hashlib.sha256(file_sha256(model).encode())
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
    return root / f"gallery-lfw-{digest.hexdigest()[:16]}.npz"


def _load_partial(cache: Path) -> Dict[str, np.ndarray]:
    if not cache.is_file():
        return {}
    with np.load(cache, allow_pickle=False) as data:
        return {"emb": data["emb"], "ok": data["ok"], "done": data["done"]}


def _save(cache: Path, emb: np.ndarray, ok: np.ndarray, done: int) -> None:
    buf = io.BytesIO()
    np.savez(buf, emb=emb, ok=ok, done=np.int64(done))
    atomic_write_bytes(cache, buf.getvalue())  # a killed run keeps the last whole chunk


def embed_files(files: List[Path], model: Path = MODEL) -> Tuple[np.ndarray, np.ndarray]:
    """``(embeddings (N, D), ok (N,) bool)`` of photos, from the cache where it has them."""
    from hsst.core.metadata import ModelMeta, sidecar_path
    from hsst.export.calibration import FaceImageFolder
    from hsst.runtime.embedder import Embedder

    meta = ModelMeta.load(sidecar_path(model))
    cache = _cache_file(model, files)
    part = _load_partial(cache)
    emb = part.get("emb", np.zeros((len(files), meta.embedding_dim), np.float32))
    ok = part.get("ok", np.zeros(len(files), bool))
    done = int(part.get("done", 0))
    if done >= len(files):
        return emb, ok
    logger.info("embedding %d LFW photos (detect + align + embed, cached in %s); %d done before",
                len(files), cache, done)
    embedder = Embedder.from_file(model, threads=1)
    t0 = time.perf_counter()
    for start in range(done, len(files), CHUNK):
        chunk = files[start:start + CHUNK]
        with tempfile.TemporaryDirectory() as tmp:
            links = []
            for i, path in enumerate(chunk):
                link = Path(tmp) / f"{i:05d}{path.suffix}"
                link.symlink_to(path.resolve())
                links.append(link)
            folder = FaceImageFolder(tmp, meta.preprocess, align=True)
            crops = folder.crops()
            bad = {s.path.name for s in folder.skipped}
            kept = [i for i, link in enumerate(links) if link.name not in bad]
            vectors = embedder.embed(crops)
        emb[start + np.array(kept, int)] = vectors
        ok[start + np.array(kept, int)] = True
        _save(cache, emb, ok, start + len(chunk))
        rate = (start + len(chunk) - done) / (time.perf_counter() - t0)
        logger.info("  %d / %d photos (%.1f photos/s)", start + len(chunk), len(files), rate)
    return emb, ok


def real_set(lfw: Path, n_gallery: int = 10000, model: Path = MODEL) -> RealSet:
    """The cached real templates and probes (computed on first use; see the module docstring)."""
    gallery_files, probe_files = split_lfw(lfw, n_gallery)
    files = gallery_files + probe_files
    emb, ok = embed_files(files, model)
    names = np.array([p.parent.name for p in files])
    g = np.arange(len(gallery_files))
    p = np.arange(len(gallery_files), len(files))
    g, p = g[ok[g]], p[ok[p]]
    return RealSet(np.ascontiguousarray(emb[g]), names[g], np.ascontiguousarray(emb[p]), names[p])
