"""Signed gallery bundles: a central enrolment station exports, gates import (full, or changes since version N).

File layout (one file, written atomically, mode 0600)::

    magic "HSSTGB\\0\\1" | u32 header length | header (JSON) | Ed25519 signature (64 bytes) | payload

The signature covers magic, length and header; the header holds the payload's length and SHA-256, so the
whole file is authenticated while the payload is streamed, never held in memory. The header says what the
bundle is (``full`` or ``incremental`` since ``base_version``), the station's gallery ``version`` and id
(``source``), the ``model`` hash and ``dim``, the data ``key`` id, the removed identities and the signer's key
id. The payload is one record per identity: ``u32 length | JSON`` (id, name, attributes, template facts)
followed by its sealed templates, copied verbatim from the station's store - gates of a site share the
station's data key, and every row stays bound to its identity, template id and model.

A gate imports a bundle only when the signature verifies with its configured public key, the model and key
are its own, and the version is newer than the last one it imported from that station (an incremental bundle
must also start at or before it). The import is one SQLite transaction: all of it or nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Union

from cryptography.exceptions import InvalidSignature

from hsst.gallery.errors import BundleError, ModelMismatch, WrongKey
from hsst.gallery.keys import KeyProvider, public_key_id
from hsst.gallery.records import SealedIdentity, SealedTemplate, default_actor
from hsst.gallery.store import GalleryStore

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
MAGIC = b"HSSTGB\x00\x01"
FORMAT = 1
SIGNATURE_BYTES = 64
MAX_HEADER = 64 << 20   # a header (with its removal list) beyond this is not a bundle of ours
MAX_RECORD = 16 << 20
_COPY = 1 << 20


@dataclass
class BundleHeader:
    """What a bundle is (the signed part)."""

    kind: str                 # "full" or "incremental"
    version: int              # the station gallery's version the bundle brings a gate to
    base_version: int         # incremental: changes after this version (0 for full)
    source: str               # the station gallery's store id
    model: str                # model hash of every template
    dim: int
    key: str                  # id of the data key that sealed the templates
    signer: str               # id of the Ed25519 public key that signed
    created: float
    identities: int
    templates: int
    payload_bytes: int
    payload_sha256: str
    removed: List[str] = field(default_factory=list)
    format: int = FORMAT

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["removed"] = len(self.removed)
        return out


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _read_exact(fh: BinaryIO, n: int, what: str, path: Path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise BundleError(f"{path} is truncated (ended inside the {what}); copy the bundle again")
    return data


def export_bundle(store: GalleryStore, out: PathLike, keys: KeyProvider, since: Optional[int] = None) -> BundleHeader:
    """Write a signed bundle of ``store``: everything, or the changes after version ``since``.

    Args:
        store: the station's gallery.
        out: the bundle file (written atomically, mode 0600).
        keys: must hold the signing key.
        since: None for a full bundle; N for the changes after version N (what gates at version N need).
    """
    out = Path(out)
    signing = keys.signing_key()
    if since is not None and not 0 <= since <= store.version:
        raise BundleError(f"--since {since} is outside this gallery's versions 0..{store.version}")
    if store.dim is None:
        raise BundleError(f"{store.path} has never held a template (no dimension yet); enrol someone first")
    out.parent.mkdir(parents=True, exist_ok=True)
    body_tmp = out.with_name(f".{out.name}.{os.getpid()}.payload")
    final_tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    n_ids = n_templates = n_bytes = 0
    try:
        with store.snapshot(since or 0) as snap:
            removed = snap.removed()
            with open(os.open(body_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as body:
                for ident in snap.identities():
                    record = json.dumps({"id": ident.id, "name": ident.name, "attributes": ident.attributes,
                                         "created": ident.created_at, "updated": ident.updated_at,
                                         "templates": [{"uid": t.uid, "model": t.model_hash, "quality": t.quality,
                                                        "created": t.created_at, "bytes": len(t.sealed)}
                                                       for t in ident.templates]}).encode("utf-8")
                    chunk = b"".join([_u32(len(record)), record] + [t.sealed for t in ident.templates])
                    body.write(chunk)
                    digest.update(chunk)
                    n_ids += 1
                    n_templates += len(ident.templates)
                    n_bytes += len(chunk)
            header = BundleHeader(kind="full" if since is None else "incremental", version=snap.version,
                                  base_version=since or 0, source=snap.meta["store_id"], model=snap.meta["model_hash"],
                                  dim=int(snap.meta["dim"]), key=snap.meta["key_id"],
                                  signer=public_key_id(signing.public_key()), created=time.time(), identities=n_ids,
                                  templates=n_templates, payload_bytes=n_bytes, payload_sha256=digest.hexdigest(),
                                  removed=removed)
        head = json.dumps(asdict(header), sort_keys=True).encode("utf-8")
        signed = MAGIC + _u32(len(head)) + head
        with open(os.open(final_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(signed + signing.sign(signed))
            with open(body_tmp, "rb") as body:
                for block in iter(lambda: body.read(_COPY), b""):
                    fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(final_tmp, out)  # a reader sees no bundle or the whole one
    finally:
        for tmp in (body_tmp, final_tmp):
            if tmp.exists():
                tmp.unlink()
    logger.info("exported %s bundle %s: version %d%s, %d identities, %d templates, %d removals", header.kind, out,
                header.version, f" since {since}" if since is not None else "", n_ids, n_templates, len(removed))
    return header


def read_header(path: PathLike, keys: KeyProvider) -> BundleHeader:
    """The header of a bundle whose signature verifies with ``keys.verify_key()`` (payload not checked).

    Raises:
        BundleError: not a bundle, truncated, or the signature does not verify.
    """
    path = Path(path)
    with _open(path) as fh:
        return _verified_header(fh, path, keys)


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BundleError(f"bundle not found: {path}") from None
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror}") from None


def _verified_header(fh: BinaryIO, path: Path, keys: KeyProvider) -> BundleHeader:
    verify = keys.verify_key()
    magic = fh.read(len(MAGIC))
    if magic[:6] != MAGIC[:6]:
        raise BundleError(f"{path} is not a gallery bundle (no HSSTGB header); export one with `hsst-gallery export`")
    if magic != MAGIC:
        raise BundleError(f"{path} is a bundle of format {magic[6:]!r}, this hsst reads {MAGIC[6:]!r}; upgrade hsst")
    size_raw = _read_exact(fh, 4, "header length", path)
    size = struct.unpack(">I", size_raw)[0]
    if size > MAX_HEADER:
        raise BundleError(f"{path}: header length {size} is implausible; the file is damaged or not a bundle")
    head = _read_exact(fh, size, "header", path)
    signature = _read_exact(fh, SIGNATURE_BYTES, "signature", path)
    try:
        verify.verify(signature, magic + size_raw + head)
    except InvalidSignature:
        claimed = "?"
        try:
            claimed = str(json.loads(head.decode("utf-8")).get("signer", "?"))
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        raise BundleError(f"bundle {path} fails its signature check with the configured key "
                          f"{public_key_id(verify)} (the bundle names signer {claimed}): it was modified after "
                          "signing, or signed by another station. Do not import it; get a fresh bundle from the "
                          "station, or configure that station's verify.pem if it is really yours") from None
    try:
        data = json.loads(head.decode("utf-8"))
        return BundleHeader(**data)
    except (ValueError, TypeError) as exc:  # signed but unreadable: a newer writer's fields
        raise BundleError(f"bundle {path} has a header this hsst cannot read ({exc}); upgrade hsst") from None


def _check_applicable(header: BundleHeader, store: GalleryStore, path: Path, new_source: bool) -> None:
    if header.kind not in ("full", "incremental"):
        raise BundleError(f"bundle {path} is of unknown kind {header.kind!r}")
    if header.model != store.model_hash or (store.dim is not None and header.dim != store.dim):
        raise ModelMismatch(f"bundle {path} holds templates of model {header.model[:16]}... ({header.dim}-d); this "
                            f"gallery is bound to model {store.model_hash[:16]}... Export the bundle from a station "
                            "on the gate's model, or move the gate to the bundle's model (then its gallery must be "
                            "re-embedded or rebuilt from a bundle)")
    if header.key != store.key_id:
        raise WrongKey(f"bundle {path} was sealed with data key {header.key}, this gallery uses {store.key_id}: "
                       "gates of a site share the station's data key; install it (`--keys`) and import again")
    last, source = store.bundle_version, store.bundle_source
    if source is not None and source != header.source:
        if header.kind == "incremental" or not new_source:
            raise BundleError(f"bundle {path} comes from station {header.source[:12]}, this gallery follows "
                              f"station {source[:12]}; to switch stations import a full bundle with --new-source")
        return  # switching stations: their version numbers do not compare
    if last is not None and header.version <= last:
        raise BundleError(f"bundle {path} is version {header.version}, not newer than version {last} already "
                          "imported: refusing to roll the gallery back. Export a new bundle at the station")
    if header.kind == "incremental" and header.base_version > (last or 0):
        raise BundleError(f"bundle {path} holds the changes since version {header.base_version}, but this gallery "
                          f"is at version {last or 0}: changes in between would be missing. Import a full bundle, "
                          f"or an incremental one exported with --since {last or 0}")


def _records(fh: BinaryIO, header: BundleHeader, path: Path) -> Iterator[SealedIdentity]:
    """Identities of the payload, hashing as they are read; the hash is checked before the last one is
    handed over, so a file changed after the first pass still aborts the import."""
    digest = hashlib.sha256()
    left = header.payload_bytes
    for _ in range(header.identities):
        size_raw = _read_exact(fh, 4, "payload", path)
        size = struct.unpack(">I", size_raw)[0]
        if size > MAX_RECORD or size > left:
            raise BundleError(f"bundle {path}: a record claims {size} bytes; the payload is damaged")
        raw = _read_exact(fh, size, "payload", path)
        blobs = [size_raw, raw]
        try:
            meta = json.loads(raw.decode("utf-8"))
            templates = []
            for t in meta["templates"]:
                sealed = _read_exact(fh, int(t["bytes"]), "payload", path)
                blobs.append(sealed)
                templates.append(SealedTemplate(t["uid"], t["model"], sealed, t["quality"], float(t["created"])))
            ident = SealedIdentity(meta["id"], meta["name"], meta["attributes"], float(meta["created"]),
                                   float(meta["updated"]), templates)
        except (ValueError, KeyError, TypeError) as exc:  # signed, yet not what this hsst writes
            raise BundleError(f"bundle {path} holds a record this hsst cannot read ({exc!r}); upgrade hsst") from None
        for blob in blobs:
            digest.update(blob)
            left -= len(blob)
        if left == 0 and (digest.hexdigest() != header.payload_sha256 or fh.read(1)):
            raise BundleError(f"bundle {path} changed while it was imported; nothing was imported, try again")
        yield ident
    if left != 0:
        raise BundleError(f"bundle {path}: the payload does not match its header; nothing was imported")


def import_bundle(store: GalleryStore, path: PathLike, keys: KeyProvider, new_source: bool = False,
                  actor: Optional[str] = None) -> Dict[str, Any]:
    """Verify a bundle and apply it to ``store`` atomically.

    Args:
        store: the gate's gallery.
        path: the bundle file.
        keys: ``verify_key()`` checks the signature; the data key (the store's) opens every template.
        new_source: accept a full bundle from another station than the one this gallery follows.
        actor: who imports (audit), default ``user@host``.

    Returns:
        ``{"bundle": header dict, "upserted": n, "removed": n, "templates": n}``.

    Raises:
        BundleError: not a bundle, bad signature, modified payload, stale version, missing changes, other station.
        ModelMismatch: templates of another model.
        WrongKey: templates sealed with another data key.
    """
    path = Path(path)
    with _open(path) as fh:
        header = _verified_header(fh, path, keys)
        start = fh.tell()
        _check_applicable(header, store, path, new_source)
        digest = hashlib.sha256()  # first pass: a modified payload is named as such before any row is parsed
        n = 0
        for block in iter(lambda: fh.read(_COPY), b""):
            digest.update(block)
            n += len(block)
        if n != header.payload_bytes or digest.hexdigest() != header.payload_sha256:
            raise BundleError(f"bundle {path}: the payload does not match its signed hash and length ({n} bytes, "
                              f"signed {header.payload_bytes}): it was modified or truncated after signing. "
                              "Nothing was imported; copy the bundle again from the station")
        fh.seek(start)
        info = {"version": header.version, "base_version": header.base_version, "source": header.source,
                "kind": header.kind, "signer": header.signer, "dim": header.dim}
        counts = store.apply(_records(fh, header, path), header.removed, full=header.kind == "full", bundle=info,
                             actor=actor or f"{default_actor()} (bundle {header.source[:12]}@{header.version})")
    return dict({"bundle": header.to_dict()}, **counts)


#: A bundle file younger than this is left for the next look: a sync job may still be writing it.
INBOX_SETTLE_S = 2.0


@dataclass
class InboxResult:
    """One bundle an inbox pass handled: ``applied`` (counts in ``result``) or refused (``error``)."""

    path: Path
    applied: bool
    result: Dict[str, Any] = field(default_factory=dict)
    error: str = ""


def apply_inbox(store: GalleryStore, inbox: PathLike, keys: KeyProvider, settle_s: float = INBOX_SETTLE_S
                ) -> List[InboxResult]:
    """Apply the signed bundles dropped into ``inbox`` (``*.hgb``: a site's sync job, a USB stick...).

    Bundles are taken oldest version first (by their verified headers), each applied atomically by
    :func:`import_bundle`, then moved to ``inbox/applied/``; a refused one (bad signature, stale, another model
    or station, damaged) goes to ``inbox/refused/`` with ``<name>.reason.txt``, so it is not tried again and an
    operator sees why. Files younger than ``settle_s`` are left for the next pass (write as ``*.part`` and rename
    to be safe); other names are ignored.

    Returns:
        What this pass did, in order (empty when there was nothing to do).
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    now = time.time()
    ready = [p for p in inbox.iterdir() if p.suffix == ".hgb" and p.is_file() and now - p.stat().st_mtime >= settle_s]
    headers: Dict[Path, Optional[BundleHeader]] = {}
    for path in ready:
        try:
            headers[path] = read_header(path, keys)
        except BundleError:
            headers[path] = None  # refused below, with the same message import_bundle gives
    order = sorted(ready, key=lambda p: (headers[p].version, p.name) if headers[p] is not None else (-1, p.name))
    done: List[InboxResult] = []
    for path in order:
        try:
            result = import_bundle(store, path, keys, actor=f"{default_actor()} (inbox {inbox})")
        except (BundleError, ModelMismatch, WrongKey) as exc:
            done.append(InboxResult(_file_away(path, "refused", str(exc)), False, error=str(exc)))
            logger.error("gallery bundle %s refused: %s", path.name, exc)
            continue
        done.append(InboxResult(_file_away(path, "applied"), True, result=result))
        logger.info("gallery bundle %s applied: %d identities in or updated, %d removed (version %d)", path.name,
                    result["upserted"], result["removed"], result["bundle"]["version"])
    return done


def _file_away(path: Path, folder: str, reason: str = "") -> Path:
    """Move a handled bundle into ``inbox/<folder>/`` (a name already there gets a time suffix)."""
    dest_dir = path.parent / folder
    dest_dir.mkdir(mode=0o700, exist_ok=True)
    dest = dest_dir / path.name
    if dest.exists():
        dest = dest_dir / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
    os.replace(path, dest)
    if reason:
        Path(f"{dest}.reason.txt").write_text(reason + "\n", encoding="utf-8")
    return dest
