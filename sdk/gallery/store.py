"""The persistent gallery: identities, sealed templates and photos, and an append-only audit trail in SQLite.

One file (plus SQLite's ``-wal`` / ``-shm``), all created 0600. WAL journal with ``synchronous=FULL``: a commit
is on disk when it returns, and every change (enrol, update, remove, import, re-embed) is one transaction, so a
process killed at any instant, or a power cut, leaves the previous state or the new one - never half an
identity. Templates and photos are sealed per row with AES-256-GCM (:mod:`hsst.gallery.sealing`); names and
attributes are plain (they are what ``hsst-gallery list`` shows). The audit table refuses UPDATE and DELETE
(triggers). Every template records the model that made it; opening with another model is
:class:`~hsst.gallery.errors.ModelMismatch`, and :meth:`GalleryStore.re_embed` moves a gallery to a new model
from its kept enrolment photos.

The file layout is :mod:`hsst.gallery.schema`, the records handed out :mod:`hsst.gallery.records`.
Search runs on an in-memory :class:`~hsst.gallery.index.TemplateIndex` rebuilt from the file at open and kept in
step with this process's writes; :meth:`GalleryStore.refresh` picks up another process's. The methods ``add``,
``remove``, ``search``, ``identities``, ``metadata``, ``dim``, ``len`` and ``in`` behave as the gate's
``hsst.runtime.gallery.Gallery`` interface.
"""
from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import InputError
from hsst.gallery.errors import ModelMismatch, StoreError, TamperedData, WrongKey
from hsst.gallery.flat import check_vectors
from hsst.gallery.index import IndexOptions, TemplateIndex
from hsst.gallery.keys import KeyProvider
from hsst.gallery.records import (AuditEntry, Identity, Photo, PathLike, ReEmbedReport, SealedIdentity,
                                  SealedTemplate, TemplateInfo, VerifyReport, check_identity_id, default_actor, iso,
                                  photo_bytes, to_json)
from hsst.gallery.schema import SCHEMA_VERSION, STATEMENTS, check_schema, connect, secure, unfinished
from hsst.gallery.sealing import RowSealer

logger = logging.getLogger(__name__)

IF_EXISTS = ("error", "add", "replace")
#: What opening a store does with a template row that fails authentication (see :meth:`GalleryStore.open`).
ON_TAMPERED = ("refuse", "skip")
#: Templates decrypted per batch while the index is (re)built.
_LOAD_BATCH = 65536

class GalleryStore:
    """A gallery file opened with its keys: enrol, remove, search, audit, bundles' raw rows, re-embed.

    Use :meth:`open` (or :meth:`create`); close with :meth:`close` or a ``with`` block. Thread-safe: writes are
    serialised, searches run concurrently with each other and with the file I/O of writes.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, sealer: RowSealer, index_options: IndexOptions,
                 search: bool, on_tampered: str = "refuse") -> None:
        if on_tampered not in ON_TAMPERED:
            raise InputError(f"on_tampered must be one of {ON_TAMPERED}, got {on_tampered!r}")
        self.path = path
        self._on_tampered = on_tampered
        #: identity id -> why it is out of the search index (``on_tampered="skip"``): a row failed authentication.
        self.quarantined: Dict[str, str] = {}
        self._conn = conn
        self._sealer = sealer
        self._index_options = index_options
        self._search = search  # keep an in-memory index (built by open())
        self._db = threading.RLock()
        self._meta = self._read_meta()
        self._index: Optional[TemplateIndex] = None
        self._loaded_version = -1  # the file version the index reflects

    # -- opening ----------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: PathLike, keys: KeyProvider, model: str, dim: Optional[int] = None,
               index: Optional[IndexOptions] = None, actor: Optional[str] = None,
               on_tampered: str = "refuse") -> "GalleryStore":
        """A new, empty gallery file bound to ``model`` (a model hash: :func:`hsst.gallery.records.model_hash`).

        Args:
            path: the file to create (an existing file is an error); its folder is created 0700.
            keys: the data key's provider.
            model: hash of the embedding model the templates will come from.
            dim: embedding dimension (None: fixed by the first enrolment).
            index: search options.
            actor: who creates it (audit).
            on_tampered: what :meth:`open` does with a row that fails authentication (``refuse`` or ``skip``).
        """
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path} exists; open it instead, or choose another path")
        _check_model(model)
        sealer = RowSealer(keys.data_key())
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # 0600 before a byte is written
        conn = None
        try:
            conn = connect(path)
            store_id = uuid.uuid4().hex
            now = time.time()
            meta = {"store_id": store_id, "model_hash": model, "dim": "" if dim is None else str(int(dim)),
                    "key_id": sealer.key_id, "key_check": sealer.make_key_check(store_id).hex(),
                    "created_at": repr(now), "version": "0", "bundle_version": "", "bundle_source": ""}
            conn.execute("BEGIN IMMEDIATE")  # schema and bindings in one transaction: a gallery or nothing
            for statement in STATEMENTS:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, now))
            conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            conn.execute("INSERT INTO audit (at, action, identity_id, actor, detail) VALUES (?, 'create', NULL, ?, ?)",
                         (now, actor or default_actor(), json.dumps({"model": model, "store": store_id})))
            conn.execute("COMMIT")
        except BaseException:
            if conn is not None:
                conn.close()
            for suffix in ("", "-wal", "-shm"):  # nothing was committed: leave no half-made file behind
                leftover = Path(str(path) + suffix)
                if leftover.exists():
                    leftover.unlink()
            raise
        conn.close()
        logger.info("created gallery %s (model %s, key %s)", path, model[:16], sealer.key_id)
        return cls.open(path, keys, model, index=index, on_tampered=on_tampered)

    @classmethod
    def open(cls, path: PathLike, keys: KeyProvider, model: Optional[str] = None, index: Optional[IndexOptions] = None,
             search: bool = True, create: bool = False, dim: Optional[int] = None,
             on_tampered: str = "refuse") -> "GalleryStore":
        """Open a gallery file.

        Args:
            path: the gallery file.
            keys: the data key's provider (the key the gallery was created with).
            model: hash of the model in use; None skips the check (tools that do not search).
            index: search options.
            search: build the in-memory index (decrypts every template); False for listing and maintenance.
            create: create the gallery when the file does not exist (needs ``model``).
            dim: embedding dimension for a created gallery.
            on_tampered: a template row that fails authentication: ``refuse`` to open (raise
                :class:`TamperedData`), or ``skip``: leave that identity out of the search index (logged as an
                error, listed in :attr:`quarantined`) until it is re-enrolled with ``if_exists="replace"`` or
                removed, so one damaged row does not shut the gate for everyone else.

        Raises:
            StoreError: missing (without ``create``), not a gallery, or from a newer hsst.
            WrongKey: the key is not the gallery's.
            ModelMismatch: the templates come from another model than ``model``.
            TamperedData: a template row fails authentication (``search=True`` opens every one), unless
                ``on_tampered="skip"``.
        """
        path = Path(path)
        if path.is_file() and unfinished(path):
            if not create:
                raise StoreError(f"{path} holds no gallery (its creation was interrupted before the first commit); "
                                 "delete it and create the gallery again")
            logger.warning("%s: creation was interrupted before its first commit; creating it again", path)
            for suffix in ("", "-wal", "-shm"):
                leftover = Path(str(path) + suffix)
                if leftover.exists():
                    leftover.unlink()
        if not path.is_file():
            if create:
                if model is None:
                    raise InputError("creating a gallery needs the model hash its templates will come from")
                return cls.create(path, keys, model, dim=dim, index=index, on_tampered=on_tampered)
            raise StoreError(f"gallery not found: {path}; create it by enrolling (or `hsst-gallery import` a bundle)")
        sealer = RowSealer(keys.data_key())
        conn = connect(path)
        try:
            check_schema(conn, path)
            for suffix in ("", "-wal", "-shm"):
                secure(Path(str(path) + suffix))
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            sealer.check_key(meta["store_id"], bytes.fromhex(meta["key_check"]), meta["key_id"], f"gallery {path}")
            store = cls(path, conn, sealer, index or IndexOptions(), search=search, on_tampered=on_tampered)
            if model is not None:
                store._bind_model(model)
            if search:
                store._rebuild_index()
            return store
        except BaseException:
            conn.close()
            raise

    def _bind_model(self, model: str) -> None:
        _check_model(model)
        stored = self.model_hash
        if model == stored:
            return
        with self._db:
            count = self._conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0]
            if count:
                with_photo = self._conn.execute(
                    "SELECT COUNT(DISTINCT identity_id) FROM photos WHERE aligned = 1").fetchone()[0]
                people = self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
                raise ModelMismatch(
                    f"gallery {self.path} holds templates of model {stored[:16]}..., the model in use is "
                    f"{model[:16]}...; templates of one model mean nothing to another. Re-embed it from the kept "
                    f"enrolment photos ({with_photo} of {people} identities have one): `hsst-gallery re-embed "
                    f"--gallery {self.path} --model NEW.onnx`, or re-enrol everyone")
            with self._transaction():  # empty: nothing to re-embed, take the new model (its dimension comes
                self._set_meta("model_hash", model)  # with the first enrolment)
                self._set_meta("dim", "")
                self._audit("rebind", None, "hsst", {"from": stored, "to": model})
            logger.info("gallery %s was empty: bound to model %s", self.path, model[:16])

    def close(self) -> None:
        """Close the file (pending nothing: every change was committed when its call returned)."""
        with self._db:
            self._conn.close()

    def __enter__(self) -> "GalleryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------------------------

    def _read_meta(self) -> Dict[str, str]:
        with self._db:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self._meta[key] = value

    def _meta_int(self, key: str) -> Optional[int]:
        """A numeric meta value, None while unset (stored as an empty string)."""
        value = self._meta.get(key, "")
        return int(value) if value else None

    @property
    def store_id(self) -> str:
        """Random id of this gallery (bundles name their source by it)."""
        return self._meta["store_id"]

    @property
    def model_hash(self) -> str:
        """Hash of the model every template was made with."""
        return self._meta["model_hash"]

    @property
    def dim(self) -> Optional[int]:
        """Embedding dimension (None until the first enrolment of a gallery created without one)."""
        return self._meta_int("dim")

    @property
    def version(self) -> int:
        """Change counter: +1 per committed change (incremental bundles are "changes since version N")."""
        return int(self._meta["version"])

    @property
    def key_id(self) -> str:
        return self._meta["key_id"]

    @property
    def bundle_version(self) -> Optional[int]:
        """Version of the last bundle imported (None: none yet)."""
        return self._meta_int("bundle_version")

    @property
    def bundle_source(self) -> Optional[str]:
        """Store id of the station whose bundles this gallery follows (None: none yet)."""
        return self._meta.get("bundle_source") or None

    @property
    def index(self) -> Optional[TemplateIndex]:
        """The in-memory search index (None when opened with ``search=False``)."""
        return self._index

    # -- transactions -----------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One atomic change: BEGIN IMMEDIATE (takes SQLite's write lock at once) ... COMMIT, or ROLLBACK."""
        with self._db:
            saved = dict(self._meta)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                fresh = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
                self._meta.update(fresh)  # another process may have committed since we last looked
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._meta = saved
                raise

    def _bump(self) -> int:
        version = self.version + 1
        self._set_meta("version", str(version))
        return version

    def _audit(self, action: str, identity_id: Optional[str], actor: Optional[str], detail: Dict[str, Any]) -> None:
        self._conn.execute("INSERT INTO audit (at, action, identity_id, actor, detail) VALUES (?, ?, ?, ?, ?)",
                           (time.time(), action, identity_id, actor or default_actor(),
                            json.dumps(detail, sort_keys=True)))

    # -- index ------------------------------------------------------------------------------------------------

    def _rebuild_index(self) -> None:
        """Decrypt every template into a fresh index (at open, after a full import, a re-embed or refresh)."""
        quarantined: Dict[str, str] = {}
        with self._db:
            self._meta = self._read_meta()
            dim = self.dim
            index = TemplateIndex(dim, self._index_options) if dim else None
            cursor = self._conn.execute("SELECT label, identity_id, uid, model_hash, sealed FROM templates")
            model = self.model_hash
            while True:
                rows = cursor.fetchmany(_LOAD_BATCH)
                if not rows:
                    break
                if index is None:
                    raise StoreError(f"{self.path} holds templates but no dimension; the file is damaged")
                for row in rows:
                    if row[3] != model:
                        raise ModelMismatch(f"template {row[2]} of identity {row[1]!r} was made by model "
                                            f"{row[3][:16]}..., the gallery by {model[:16]}...; run "
                                            "`hsst-gallery verify` and re-embed or re-enrol")
                opened = [(r, self._open_or_quarantine(r, model, dim, quarantined)) for r in rows]
                opened = [(r, v) for r, v in opened if v is not None]
                if opened:
                    index.add(np.stack([v for _, v in opened]), np.array([r[0] for r, _ in opened], np.int64),
                              [r[1] for r, _ in opened])
            if index is not None and quarantined:  # the quarantined identities' rows read before their bad one
                index.remove([r[0] for ident in quarantined for r in self._conn.execute(
                    "SELECT label FROM templates WHERE identity_id = ?", (ident,))])
            self._index = index
            self.quarantined = quarantined
            self._loaded_version = self.version
        if index is not None:
            logger.info("gallery %s: %d templates of %d identities in the index (%s, %s)", self.path, len(index),
                        index.num_owners, index.backend, index.storage)

    def _open_or_quarantine(self, row: tuple, model: str, dim: int, quarantined: Dict[str, str]
                            ) -> Optional[np.ndarray]:
        """The row's template; with ``on_tampered="skip"`` None for a row that fails authentication (its identity
        is quarantined) or belongs to a quarantined identity."""
        if row[1] in quarantined:
            return None
        try:
            return self._sealer.open_template(row[1], row[2], model, row[4], dim)
        except TamperedData as exc:
            if self._on_tampered != "skip":
                raise
            quarantined[row[1]] = str(exc)
            logger.error("gallery %s: identity %r left out of the search index: %s; re-enrol it "
                         "(hsst-enroll, or enrol with if_exists='replace') or remove it", self.path, row[1], exc)
            return None

    def refresh(self) -> bool:
        """Rebuild the index when another process changed the file since; True when it did."""
        with self._db:
            current = int(self._conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])
            if not self._search or current == self._loaded_version:
                self._meta = self._read_meta()
                return False
            self._rebuild_index()
            return True

    def _synced(self, version: int) -> None:
        """After this process committed ``version`` and updated the index: in step unless another process
        committed in between (then :meth:`refresh` rebuilds)."""
        if self._loaded_version == version - 1:
            self._loaded_version = version

    # -- writes -----------------------------------------------------------------------------------------------

    def enrol(self, identity_id: str, templates: np.ndarray, *, name: Optional[str] = None,
              attributes: Optional[Dict[str, Any]] = None, quality: Union[None, Dict[str, Any], Sequence[Any]] = None,
              photos: Optional[Sequence[np.ndarray]] = None, photos_aligned: bool = True,
              if_exists: str = "error", actor: Optional[str] = None) -> List[str]:
        """Enrol an identity with its templates in one transaction: all of them are stored, or none.

        Args:
            identity_id: the id (badge or employee number...); at most 256 characters, no control characters.
            templates: (K, D) float32 embeddings (L2-normalised here).
            name: display name.
            attributes: JSON-serialisable facts (badge number, department...), merged into existing ones.
            quality: the enrolment photo's quality verdict: one dict for all templates or one per template.
            photos: the photo each template was made from (kept sealed so templates can be re-made for a new
                model), ``len(photos) == K``; None keeps none.
            photos_aligned: the photos are aligned crops at the model's crop size (re-embeddable as they are);
                False: raw photos (re-embedding them needs the face detector).
            if_exists: ``error`` (the default), ``add`` templates to the identity, or ``replace`` its templates.
            actor: who enrols (audit), default ``user@host``.

        Returns:
            The new templates' ids.
        """
        identity_id = check_identity_id(identity_id)
        if if_exists not in IF_EXISTS:
            raise InputError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
        x = check_vectors(templates, self.dim, f"templates of {identity_id!r}")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norms < 1e-6):
            raise InputError(f"templates of {identity_id!r} contain a zero vector")
        x = np.ascontiguousarray(x / norms, np.float32)
        k = len(x)
        qualities = _per_template(quality, k, "quality")
        quality_json = [None if q is None else to_json(q, "quality") for q in qualities]
        attrs_json = to_json(attributes or {}, "attributes")
        if name is not None and not isinstance(name, str):
            raise InputError(f"name must be a string, got {type(name).__name__}")
        if photos is not None and len(photos) != k:
            raise InputError(f"{len(photos)} photos for {k} templates: give the photo of each template, or none")
        photo_blobs = [photo_bytes(p, photos_aligned, f"photo {i} of {identity_id!r}")
                       for i, p in enumerate(photos or [])]
        model = self.model_hash
        with self._db:
            with self._transaction():
                if self.model_hash != model or self.dim not in (None, x.shape[1]):  # another process re-embedded
                    raise ModelMismatch(f"gallery {self.path} was moved to model {self.model_hash[:16]}... "
                                        f"({self.dim}-d) meanwhile; reopen it with that model's embedder")
                row = self._conn.execute("SELECT attributes FROM identities WHERE id = ?", (identity_id,)).fetchone()
                if row is not None and if_exists == "error":
                    raise InputError(f"identity {identity_id!r} is already enrolled; pass if_exists='add' to add "
                                     "templates or 'replace' to replace them (hsst-gallery remove it first to start over)")
                version = self._bump()
                now = time.time()
                if self.dim is None:
                    self._set_meta("dim", str(x.shape[1]))
                old_labels: List[int] = []
                if row is None:
                    self._conn.execute("INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?)",
                                       (identity_id, name, attrs_json, now, now, version))
                else:
                    merged = dict(json.loads(row[0]))
                    merged.update(attributes or {})
                    self._conn.execute("UPDATE identities SET name = COALESCE(?, name), attributes = ?, updated_at = ?, "
                                       "version = ? WHERE id = ?", (name, to_json(merged, "attributes"), now, version,
                                                                    identity_id))
                    if if_exists == "replace":
                        old_labels = [r[0] for r in self._conn.execute(
                            "SELECT label FROM templates WHERE identity_id = ?", (identity_id,))]
                        self._conn.execute("DELETE FROM templates WHERE identity_id = ?", (identity_id,))
                        self._conn.execute("DELETE FROM photos WHERE identity_id = ?", (identity_id,))
                photo_ids: List[Optional[str]] = [None] * k
                for i, blob in enumerate(photo_blobs):
                    photo_ids[i] = uuid.uuid4().hex
                    self._conn.execute("INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?)",
                                       (photo_ids[i], identity_id, int(photos_aligned), quality_json[i],
                                        self._sealer.seal_photo(identity_id, photo_ids[i], blob), now))
                uids = [uuid.uuid4().hex for _ in range(k)]
                labels = []
                for i in range(k):
                    cur = self._conn.execute(
                        "INSERT INTO templates (uid, identity_id, model_hash, sealed, quality, photo_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (uids[i], identity_id, model, self._sealer.seal_template(identity_id, uids[i], model, x[i]),
                         quality_json[i], photo_ids[i], now))
                    labels.append(cur.lastrowid)
                self._conn.execute("DELETE FROM tombstones WHERE identity_id = ?", (identity_id,))
                action = "enrol" if row is None else "update"
                self._audit(action, identity_id, actor, {"templates": k, "photos": len(photo_blobs), "mode": if_exists,
                                                         "model": model[:16], "version": version})
            # committed: the next search sees it (holding the lock keeps the index in commit order)
            if self._search:
                if self._index is None:  # first enrolment of a gallery created without a dimension
                    self._index = TemplateIndex(x.shape[1], self._index_options)
                self._index.remove(old_labels)
                if identity_id in self.quarantined and if_exists == "replace":
                    del self.quarantined[identity_id]  # every row of it is new
                if identity_id not in self.quarantined:
                    self._index.add(x, np.array(labels, np.int64), [identity_id] * k)
                else:
                    logger.warning("%r stays out of the search index: a stored template of it failed "
                                   "authentication; enrol it with if_exists='replace'", identity_id)
                self._synced(version)
        logger.info("%s %r: %d template(s), %d photo(s) (gallery version %d)", action, identity_id, k,
                    len(photo_blobs), version)
        return uids

    def add(self, identity: str, embeddings: np.ndarray, metadata: Optional[Dict[str, Any]] = None) -> None:
        """The gate's ``Gallery.add``: add templates to an identity (enrolling it if new), merge metadata."""
        self.enrol(identity, embeddings, attributes=metadata, if_exists="add", actor="gate")

    def update(self, identity_id: str, name: Optional[str] = None, attributes: Optional[Dict[str, Any]] = None,
               replace_attributes: bool = False, actor: Optional[str] = None) -> Identity:
        """Change an identity's name and/or attributes (merged, or replaced with ``replace_attributes``)."""
        identity_id = check_identity_id(identity_id)
        with self._db, self._transaction():
            row = self._conn.execute("SELECT attributes FROM identities WHERE id = ?", (identity_id,)).fetchone()
            if row is None:
                raise InputError(f"identity {identity_id!r} is not enrolled")
            merged = {} if replace_attributes else dict(json.loads(row[0]))
            merged.update(attributes or {})
            version = self._bump()
            self._conn.execute("UPDATE identities SET name = COALESCE(?, name), attributes = ?, updated_at = ?, "
                               "version = ? WHERE id = ?", (name, to_json(merged, "attributes"), time.time(), version,
                                                            identity_id))
            self._audit("update", identity_id, actor, {"name": name is not None, "attributes": sorted(attributes or {}),
                                                       "version": version})
            self._synced(version)
        return self.get(identity_id)

    def remove(self, identity: str, actor: Optional[str] = None) -> bool:
        """Remove an identity with its templates and photos (one transaction); False when it was not enrolled."""
        identity = check_identity_id(identity)
        with self._db:
            with self._transaction():
                labels = [r[0] for r in self._conn.execute("SELECT label FROM templates WHERE identity_id = ?",
                                                           (identity,))]
                gone = self._conn.execute("DELETE FROM identities WHERE id = ?", (identity,)).rowcount
                if not gone:
                    return False
                version = self._bump()
                self._conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (identity, version))
                self._audit("remove", identity, actor, {"templates": len(labels), "version": version})
            if self._index is not None:
                self._index.remove(labels)
                self._synced(version)
            self.quarantined.pop(identity, None)
        logger.info("removed %r (%d templates; gallery version %d)", identity, len(labels), version)
        return True

    # -- reads ------------------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k identities per query by cosine (best template of each), as the gate's ``Gallery.search``.

        Args:
            queries: (N, D) float32 C-contiguous L2-normalised embeddings (a (D,) vector is one query).
            k: identities per query.

        Returns:
            ``(ids, scores)``: (N, k) object array of identity ids (None where fewer than k identities) and
            (N, k) float32 cosines, best first (-inf there).
        """
        index = self._index
        if index is None:
            if self.dim is None:  # empty gallery of unknown dimension: nobody to find
                q = check_vectors(queries, None, "queries")
                return np.full((len(q), k), None, object), np.full((len(q), k), -np.inf, np.float32)
            raise StoreError("this gallery was opened with search=False; open it with search=True to search")
        return index.search_owners(queries, k)

    @property
    def identities(self) -> List[str]:
        """Enrolled identity ids (sorted)."""
        with self._db:
            return [r[0] for r in self._conn.execute("SELECT id FROM identities ORDER BY id")]

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, str):
            return False
        with self._db:
            return self._conn.execute("SELECT 1 FROM identities WHERE id = ?", (identity,)).fetchone() is not None

    def __len__(self) -> int:
        if self._index is not None:  # O(1): the gate asks before every search
            return self._index.num_owners
        with self._db:
            return int(self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def metadata(self, identity: str) -> Dict[str, Any]:
        """The gate's ``Gallery.metadata``: an identity's attributes (KeyError when not enrolled)."""
        found = self.get(identity)
        if found is None:
            raise KeyError(identity)
        return dict(found.attributes)

    def get(self, identity_id: str) -> Optional[Identity]:
        """An identity's record, or None."""
        found = self.list(where=identity_id)
        return found[0] if found else None

    def list(self, limit: Optional[int] = None, offset: int = 0, where: Optional[str] = None) -> List[Identity]:
        """Identities in id order (``where``: just that id)."""
        sql = ("SELECT i.id, i.name, i.attributes, i.created_at, i.updated_at, i.version, "
               "(SELECT COUNT(*) FROM templates t WHERE t.identity_id = i.id), "
               "(SELECT COUNT(*) FROM photos p WHERE p.identity_id = i.id) FROM identities i")
        args: List[Any] = []
        if where is not None:
            sql += " WHERE i.id = ?"
            args.append(where)
        sql += " ORDER BY i.id LIMIT ? OFFSET ?"
        args += [-1 if limit is None else int(limit), int(offset)]
        with self._db:
            rows = self._conn.execute(sql, args).fetchall()
        return [Identity(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def templates(self, identity_id: str) -> List[TemplateInfo]:
        """Facts about an identity's templates (no values)."""
        with self._db:
            rows = self._conn.execute("SELECT uid, identity_id, model_hash, quality, photo_id, created_at FROM templates "
                                      "WHERE identity_id = ? ORDER BY label", (identity_id,)).fetchall()
        return [TemplateInfo(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, r[4], r[5]) for r in rows]

    def embeddings(self, identity_id: str) -> np.ndarray:
        """An identity's templates, decrypted: (K, D) float32 (K = 0 when not enrolled)."""
        with self._db:
            rows = self._conn.execute("SELECT uid, model_hash, sealed FROM templates WHERE identity_id = ? ORDER BY label",
                                      (identity_id,)).fetchall()
        dim = self.dim or 0
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.stack([self._sealer.open_template(identity_id, r[0], r[1], r[2], dim) for r in rows])

    def photos(self, identity_id: str) -> List[Photo]:
        """An identity's kept enrolment photos, decrypted."""
        with self._db:
            rows = self._conn.execute("SELECT id, aligned, quality, sealed, created_at FROM photos WHERE identity_id = ? "
                                      "ORDER BY rowid", (identity_id,)).fetchall()
        return [Photo(r[0], identity_id, bool(r[1]), self._load_photo(identity_id, r[0], r[3]),
                      json.loads(r[2]) if r[2] else None, r[4]) for r in rows]

    def _load_photo(self, identity_id: str, photo_id: str, sealed: bytes) -> np.ndarray:
        data = self._sealer.open_photo(identity_id, photo_id, sealed)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:  # authenticated yet unreadable: written by something else than this code
            raise TamperedData(f"photo {photo_id} of identity {identity_id!r} is not an image array: {exc}") from None

    def audit(self, identity_id: Optional[str] = None, since: int = 0, limit: Optional[int] = None) -> List[AuditEntry]:
        """The audit trail, oldest first (``since``: entries after that sequence number)."""
        sql = "SELECT seq, at, action, identity_id, actor, detail FROM audit WHERE seq > ?"
        args: List[Any] = [since]
        if identity_id is not None:
            sql += " AND identity_id = ?"
            args.append(identity_id)
        sql += " ORDER BY seq LIMIT ?"
        args.append(-1 if limit is None else int(limit))
        with self._db:
            rows = self._conn.execute(sql, args).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def stats(self) -> Dict[str, Any]:
        """Counts and bindings (no template values)."""
        def count(sql: str) -> int:
            return int(self._conn.execute(sql).fetchone()[0])

        with self._db:
            out = {
                "path": str(self.path), "store": self.store_id, "schema": SCHEMA_VERSION, "model": self.model_hash,
                "dim": self.dim, "key": self.key_id, "version": self.version,
                "bundle_version": self.bundle_version, "bundle_source": self.bundle_source,
                "identities": count("SELECT COUNT(*) FROM identities"),
                "templates": count("SELECT COUNT(*) FROM templates"),
                "photos": count("SELECT COUNT(*) FROM photos"),
                "photos_aligned": count("SELECT COUNT(*) FROM photos WHERE aligned = 1"),
                "audit_entries": count("SELECT COUNT(*) FROM audit"),
                "created": iso(float(self._meta["created_at"])),
                "bytes": sum(Path(str(self.path) + s).stat().st_size for s in ("", "-wal")
                             if Path(str(self.path) + s).exists()),
            }
        if self._index is not None:
            out["index"] = {"backend": self._index.backend, "storage": self._index.storage,
                            "templates": len(self._index)}
        return out

    def verify(self) -> VerifyReport:
        """Check everything: SQLite integrity, foreign keys, the key, every sealed row, model binding, modes."""
        report = VerifyReport()
        with self._db:
            checks = [r[0] for r in self._conn.execute("PRAGMA integrity_check").fetchall()]
            report.integrity = "ok" if checks == ["ok"] else "; ".join(checks[:5])
            if checks != ["ok"]:
                report.problems.append(f"SQLite integrity_check: {report.integrity}")
            for table, rowid, parent, _ in self._conn.execute("PRAGMA foreign_key_check").fetchall():
                report.problems.append(f"{table} row {rowid} points at a missing {parent} row")
            try:
                self._sealer.check_key(self.store_id, bytes.fromhex(self._meta["key_check"]), self.key_id, str(self.path))
            except WrongKey as exc:
                report.problems.append(str(exc))
                return report  # with the wrong key every row would fail: say it once
            model, dim = self.model_hash, self.dim or 0
            report.identities = int(self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])
            for uid, identity_id, row_model, sealed in self._conn.execute(
                    "SELECT uid, identity_id, model_hash, sealed FROM templates"):
                report.templates += 1
                if row_model != model:
                    report.problems.append(f"template {uid} of {identity_id!r}: model {row_model[:16]}..., "
                                           f"gallery {model[:16]}...")
                try:
                    self._sealer.open_template(identity_id, uid, row_model, sealed, dim)
                except TamperedData as exc:
                    report.problems.append(str(exc).split(":")[0] + ": fails authentication (tampered or moved)")
            for photo_id, identity_id, sealed in self._conn.execute("SELECT id, identity_id, sealed FROM photos"):
                report.photos += 1
                try:
                    self._load_photo(identity_id, photo_id, sealed)
                except TamperedData as exc:
                    report.problems.append(str(exc).split(":")[0] + ": fails authentication (tampered or moved)")
            empty = [r[0] for r in self._conn.execute(
                "SELECT id FROM identities i WHERE NOT EXISTS (SELECT 1 FROM templates t WHERE t.identity_id = i.id)")]
            if empty:
                report.problems.append(f"{len(empty)} identities without templates, e.g. {empty[:3]}")
            triggers = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            if not {"audit_no_update", "audit_no_delete"} <= triggers:
                report.problems.append("the audit table's append-only triggers are missing")
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.path) + suffix)
            if path.exists() and os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
                report.problems.append(f"{path} is readable by group or others; chmod 600 {path}")
        return report

    # -- bundles: raw rows in, raw rows out ------------------------------------------------------------------

    @contextmanager
    def snapshot(self, since: int = 0) -> Iterator["Snapshot"]:
        """A consistent read of the changes after version ``since`` (0: everything), for bundle export.

        Reads on its own connection inside one read transaction, so enrolments may go on meanwhile.
        """
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        try:
            conn.execute("BEGIN")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            yield Snapshot(conn, meta, since)
        finally:
            conn.close()

    def apply(self, identities: Iterable[SealedIdentity], removed: Sequence[str], *, full: bool,
              bundle: Dict[str, Any], actor: Optional[str] = None) -> Dict[str, int]:
        """Apply a verified bundle's rows in one transaction (all or nothing), then update the index.

        Every sealed template must open with this gallery's key under its own identity / template id / model:
        authentication is checked here, row by row, before anything commits. ``full`` replaces the whole
        gallery; otherwise the listed identities are replaced and ``removed`` ones deleted. ``bundle`` (its
        ``version``, ``source``, ``dim``...) is recorded as the last import.

        Returns:
            ``{"upserted": n, "removed": n, "templates": n}``.
        """
        model = self.model_hash
        counts = {"upserted": 0, "removed": 0, "templates": 0}
        fresh: List[Tuple[str, np.ndarray, List[int]]] = []  # incremental: what the index gains ...
        stale: List[int] = []                                # ... and loses
        actor = actor or f"bundle {str(bundle.get('source', '?'))[:12]}@{bundle.get('version')}"
        with self._db:
            with self._transaction():
                version = self._bump()
                dim = self.dim
                if dim is None:
                    dim = int(bundle["dim"])
                    self._set_meta("dim", str(dim))
                before = {r[0] for r in self._conn.execute("SELECT id FROM identities")} if full else set()
                if full:
                    self._conn.execute("DELETE FROM identities")
                seen = set()
                for ident in identities:
                    check_identity_id(ident.id)
                    if ident.id in seen or not ident.templates:
                        raise TamperedData(f"bundle identity {ident.id!r} is listed twice or has no templates")
                    seen.add(ident.id)
                    vectors = []
                    for t in ident.templates:
                        if t.model_hash != model:
                            raise ModelMismatch(f"bundle template {t.uid} of {ident.id!r} comes from model "
                                                f"{t.model_hash[:16]}..., this gallery's is {model[:16]}...")
                        vectors.append(self._sealer.open_template(ident.id, t.uid, t.model_hash, t.sealed, dim))
                    if not full:
                        stale += [r[0] for r in self._conn.execute("SELECT label FROM templates WHERE identity_id = ?",
                                                                   (ident.id,))]
                        self._conn.execute("DELETE FROM identities WHERE id = ?", (ident.id,))
                    self._conn.execute("INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?)",
                                       (ident.id, ident.name, ident.attributes, ident.created_at, ident.updated_at,
                                        version))
                    labels = [self._conn.execute(
                        "INSERT INTO templates (uid, identity_id, model_hash, sealed, quality, photo_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?, NULL, ?)",
                        (t.uid, ident.id, t.model_hash, t.sealed, t.quality, t.created_at)).lastrowid
                        for t in ident.templates]
                    self._conn.execute("DELETE FROM tombstones WHERE identity_id = ?", (ident.id,))
                    self._audit("import", ident.id, actor, {"templates": len(labels), "bundle": bundle.get("version")})
                    if not full:
                        fresh.append((ident.id, np.stack(vectors), labels))
                    counts["upserted"] += 1
                    counts["templates"] += len(labels)
                gone = sorted(before - seen)
                for identity_id in removed:
                    if identity_id in seen:
                        continue
                    stale += [r[0] for r in self._conn.execute("SELECT label FROM templates WHERE identity_id = ?",
                                                               (identity_id,))]
                    if self._conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,)).rowcount:
                        gone.append(identity_id)
                for identity_id in gone:
                    self._conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (identity_id, version))
                    self._audit("remove", identity_id, actor, {"bundle": bundle.get("version")})
                counts["removed"] = len(gone)
                self._set_meta("bundle_version", str(int(bundle["version"])))
                self._set_meta("bundle_source", str(bundle["source"]))
                self._audit("import", None, actor, dict(bundle, **counts))
            if self._search:
                if full or self._index is None:
                    self._rebuild_index()
                else:
                    self._index.remove(stale)
                    for identity_id, vectors, labels in fresh:
                        self._index.add(vectors, np.array(labels, np.int64), [identity_id] * len(labels))
                    self._synced(version)
        logger.info("imported bundle version %s (%s): %d identities in, %d removed", bundle.get("version"),
                    "full" if full else f"since {bundle.get('base_version')}", counts["upserted"], counts["removed"])
        return counts

    # -- re-embedding -----------------------------------------------------------------------------------------

    def re_embed(self, embed: Callable[[List[np.ndarray]], np.ndarray], model: str, *, drop_missing: bool = False,
                 batch: int = 32, actor: Optional[str] = None) -> ReEmbedReport:
        """Re-make every template from the kept aligned enrolment photos with a new model, in one transaction.

        Args:
            embed: aligned crops -> (N, D') float32 embeddings (e.g. ``Embedder.embed``).
            model: the new model's hash.
            drop_missing: remove identities without a kept aligned photo (they must be re-enrolled) instead of
                refusing.
            batch: photos per ``embed`` call.
            actor: who (audit).

        Raises:
            StoreError: identities without a kept aligned photo and not ``drop_missing``; the gallery changed
                while embedding (run again).
        """
        _check_model(model)
        with self._db:
            start_version = int(self._conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])
            ids = self.identities
            rows = self._conn.execute("SELECT identity_id, id, quality, sealed FROM photos WHERE aligned = 1 "
                                      "ORDER BY identity_id, rowid").fetchall()
        by_id: Dict[str, List[Tuple[str, Optional[str], bytes]]] = {}
        for identity_id, photo_id, quality, sealed in rows:
            by_id.setdefault(identity_id, []).append((photo_id, quality, sealed))
        missing = [i for i in ids if i not in by_id]
        if missing and not drop_missing:
            with self._db:
                raw = {r[0] for r in self._conn.execute("SELECT DISTINCT identity_id FROM photos WHERE aligned = 0")}
            raw_only = [i for i in missing if i in raw]
            raise StoreError(
                f"{len(missing)} of {len(ids)} identities cannot be re-embedded (e.g. {missing[:3]}): "
                f"{len(raw_only)} have only raw photos - re-embedding from raw photos needs the face path "
                f"(detection and alignment), which re-embed does not run - and {len(missing) - len(raw_only)} have "
                "no kept photo. Re-enrol them, or pass --drop-missing to remove them now and re-enrol them later")
        jobs = [(i, pid, q, s) for i in ids if i in by_id for pid, q, s in by_id[i]]
        vectors: List[np.ndarray] = []
        for start in range(0, len(jobs), batch):
            part = jobs[start:start + batch]
            crops = [self._load_photo(i, pid, s) for i, pid, _, s in part]
            out = embed(crops)
            out = check_vectors(np.ascontiguousarray(out, np.float32), None, "re-embedded templates")
            if len(out) != len(crops):
                raise InputError(f"the embedding function returned {len(out)} vectors for {len(crops)} photos")
            vectors.append(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12))
        x = np.concatenate(vectors) if vectors else np.zeros((0, self.dim or 0), np.float32)
        new_dim = int(x.shape[1]) if len(x) else (self.dim or 0)
        report = ReEmbedReport(model, new_dim, dropped=missing)
        with self._db:
            with self._transaction():
                if self.version != start_version:
                    raise StoreError("the gallery changed while re-embedding; run re-embed again")
                version = self._bump()
                now = time.time()
                old_model = self.model_hash
                self._conn.execute("DELETE FROM templates")
                for identity_id in missing:
                    self._conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
                    self._conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (identity_id, version))
                    self._audit("remove", identity_id, actor, {"reason": "re-embed: no kept aligned photo"})
                for (identity_id, photo_id, quality, _), vector in zip(jobs, x):
                    uid = uuid.uuid4().hex
                    self._conn.execute(
                        "INSERT INTO templates (uid, identity_id, model_hash, sealed, quality, photo_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (uid, identity_id, model, self._sealer.seal_template(identity_id, uid, model, vector), quality,
                         photo_id, now))
                self._conn.execute("UPDATE identities SET version = ?, updated_at = ?", (version, now))
                self._set_meta("model_hash", model)
                self._set_meta("dim", str(new_dim) if new_dim else "")
                report.identities = len(ids) - len(missing)
                report.templates = len(jobs)
                self._audit("re-embed", None, actor, {"from": old_model, "to": model, "identities": report.identities,
                                                      "templates": report.templates, "dropped": len(missing)})
            self._index = None
            if self._search:
                self._rebuild_index()
        logger.info("re-embedded %d identities (%d templates) with model %s; dropped %d", report.identities,
                    report.templates, model[:16], len(missing))
        return report


class Snapshot:
    """Rows of one consistent read (see :meth:`GalleryStore.snapshot`)."""

    def __init__(self, conn: sqlite3.Connection, meta: Dict[str, str], since: int) -> None:
        self._conn = conn
        self.meta = meta
        self.since = since
        self.version = int(meta["version"])

    def removed(self) -> List[str]:
        """Identities removed after ``since`` (none for a full snapshot: absence says it)."""
        if self.since == 0:
            return []
        return [r[0] for r in self._conn.execute("SELECT identity_id FROM tombstones WHERE version > ? "
                                                 "ORDER BY identity_id", (self.since,))]

    def count(self) -> int:
        """Identities changed after ``since``."""
        return int(self._conn.execute("SELECT COUNT(*) FROM identities WHERE version > ?", (self.since,)).fetchone()[0])

    def identities(self) -> Iterator[SealedIdentity]:
        """Identities changed after ``since``, each with all its sealed templates (streamed, id order)."""
        cursor = self._conn.execute(
            "SELECT i.id, i.name, i.attributes, i.created_at, i.updated_at, t.uid, t.model_hash, t.sealed, t.quality, "
            "t.created_at FROM identities i JOIN templates t ON t.identity_id = i.id WHERE i.version > ? "
            "ORDER BY i.id, t.label", (self.since,))
        current: Optional[SealedIdentity] = None
        for row in cursor:
            if current is None or current.id != row[0]:
                if current is not None:
                    yield current
                current = SealedIdentity(row[0], row[1], row[2], row[3], row[4], [])
            current.templates.append(SealedTemplate(row[5], row[6], bytes(row[7]), row[8], row[9]))
        if current is not None:
            yield current


def _check_model(model: Any) -> None:
    if not isinstance(model, str) or not model or len(model) > 128:
        raise InputError(f"model hash must be a non-empty string of at most 128 characters, got {model!r}")


def _per_template(value: Union[None, Dict[str, Any], Sequence[Any]], k: int, what: str) -> List[Any]:
    if value is None or isinstance(value, dict):
        return [value] * k
    if len(value) != k:
        raise InputError(f"{len(value)} {what} entries for {k} templates: give one for all, or one per template")
    return list(value)
