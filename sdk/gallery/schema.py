"""The gallery file on disk: its SQLite schema, how it is opened (WAL, synchronous), and its checks.

Tables: ``schema_version``; ``meta`` (store id, model hash, dimension, key id and key check, change version,
last bundle imported); ``identities``; ``templates`` (sealed vector, quality verdict, model hash, photo id);
``photos`` (sealed image); ``tombstones`` (removed ids with the version that removed them, for incremental
bundles); ``audit`` (append-only: triggers refuse UPDATE and DELETE).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from hsst.gallery.errors import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

STATEMENTS = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE identities (id TEXT PRIMARY KEY, name TEXT, attributes TEXT NOT NULL, created_at REAL NOT NULL, "
    "updated_at REAL NOT NULL, version INTEGER NOT NULL)",
    "CREATE INDEX identities_version ON identities(version)",
    "CREATE TABLE photos (id TEXT PRIMARY KEY, identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE, "
    "aligned INTEGER NOT NULL, quality TEXT, sealed BLOB NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX photos_identity ON photos(identity_id)",
    # label: the in-memory index's int64 key (AUTOINCREMENT: never reused); uid: the template's id everywhere else
    "CREATE TABLE templates (label INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, "
    "identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE, model_hash TEXT NOT NULL, "
    "sealed BLOB NOT NULL, quality TEXT, photo_id TEXT REFERENCES photos(id) ON DELETE SET NULL, "
    "created_at REAL NOT NULL)",
    "CREATE INDEX templates_identity ON templates(identity_id)",
    # removed identities with the version that removed them: incremental bundles carry removals
    "CREATE TABLE tombstones (identity_id TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, action TEXT NOT NULL, "
    "identity_id TEXT, actor TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
)


def connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")  # WAL + FULL: a returned commit survives a power cut
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a gallery (SQLite says: {exc}); point at the gallery file, or "
                         "restore it from a bundle or backup") from None
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode ({mode}); keep the gallery on a local file system")
    return conn


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError:
        raise StoreError(f"{path} is an SQLite file but not a gallery (no schema_version table)") from None
    if row is None or row[0] is None:
        raise StoreError(f"{path} is not a gallery (empty schema_version)")
    if row[0] > SCHEMA_VERSION:
        raise StoreError(f"gallery {path} has schema {row[0]}, newer than this hsst's {SCHEMA_VERSION}; upgrade hsst")


def unfinished(path: Path) -> bool:
    """A file left by a creation killed before its commit: SQLite (or empty) with no table. The size alone
    would not do: a committed gallery can sit entirely in its -wal file until a checkpoint."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            return conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False  # not SQLite at all: open() says so


def secure(path: Path) -> None:
    """Make a gallery file 0600 when it is more open (the store holds biometric data)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if os.name == "posix" and mode & 0o077:
        os.chmod(path, 0o600)
        logger.warning("%s was mode %04o; set to 0600 (gallery files hold biometric data)", path, mode)
