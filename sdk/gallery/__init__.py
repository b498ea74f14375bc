"""The persistent, encrypted gallery: store, search index, keys and signed bundles (issue 15).

Standalone: imports only :mod:`hsst.core`, the standard library, numpy, onnx(runtime), cryptography and
(optionally) faiss.

* :mod:`hsst.gallery.keys`    where keys come from (files 0600, environment; a hardware store later)
* :mod:`hsst.gallery.sealing` AES-256-GCM per row, bound to identity, template and model
* :mod:`hsst.gallery.store`   the gallery: one transaction per change, audit trail, model binding, re-embed
* :mod:`hsst.gallery.schema`  the SQLite file: tables, WAL + synchronous opening, checks
* :mod:`hsst.gallery.records` identities, template facts, audit entries, sealed rows (no template values)
* :mod:`hsst.gallery.index`   exact cosine top-k: the backend by storage and size, locking, owners
* :mod:`hsst.gallery.flat`    the storages' codecs and the backends: numpy, onnxruntime (int8), FAISS
* :mod:`hsst.gallery.bundle`  signed bundles from the enrolment station to the gates
* :mod:`hsst.gallery.cli`     ``hsst-gallery``
"""
from hsst.gallery.errors import (BundleError, GalleryError, KeySourceError, ModelMismatch, StoreError, TamperedData,
                                 WrongKey)
from hsst.gallery.index import IndexOptions, TemplateIndex
from hsst.gallery.keys import EnvKeys, FileKeys, KeyProvider, generate_keys, keys_from
from hsst.gallery.records import model_hash
from hsst.gallery.store import GalleryStore

__all__ = [
    "BundleError", "GalleryError", "KeySourceError", "ModelMismatch", "StoreError", "TamperedData", "WrongKey",
    "IndexOptions", "TemplateIndex", "EnvKeys", "FileKeys", "KeyProvider", "generate_keys", "keys_from",
    "GalleryStore", "model_hash",
]
