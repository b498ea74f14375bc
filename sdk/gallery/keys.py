"""Where the gallery's keys come from: a 256-bit data key (AES-GCM) and Ed25519 keys for signed bundles.

:class:`KeyProvider` is the small interface the store and bundles use; :class:`FileKeys` reads key files
(secret ones must be 0600: a group- or world-readable key file is refused with the ``chmod`` that fixes it),
:class:`EnvKeys` reads environment variables. A hardware key store (TPM, OP-TEE, an HSM that unseals the key)
implements the same methods. :func:`generate_keys` writes a fresh set (``hsst-gallery keygen``).

Formats: the data key is 64 hex characters; Ed25519 keys are PEM (PKCS#8 private, SubjectPublicKeyInfo
public, as ``openssl genpkey -algorithm ed25519`` writes them) or 64 hex characters of the raw 32-byte key.
Key material never reaches a log or an error message; :func:`key_id` names a key by a hash instead.
"""
from __future__ import annotations

import abc
import binascii
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hsst.gallery.errors import KeySourceError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

DATA_KEY_BYTES = 32
DATA_KEY_FILE = "data.key"
SIGNING_KEY_FILE = "signing.pem"
VERIFY_KEY_FILE = "verify.pem"
ENV_DATA_KEY = "HSST_GALLERY_KEY"
ENV_SIGNING_KEY = "HSST_GALLERY_SIGNING_KEY"
ENV_VERIFY_KEY = "HSST_GALLERY_VERIFY_KEY"
KEYGEN_HINT = "make keys with `hsst-gallery keygen --out DIR`"


def key_id(data_key: bytes) -> str:
    """Short public name of a data key (a domain-separated SHA-256 prefix; reveals nothing usable)."""
    return hashlib.sha256(b"hsst-gallery-key-id\x00" + data_key).hexdigest()[:16]


def public_key_id(key: Ed25519PublicKey) -> str:
    """Short name of an Ed25519 public key (SHA-256 prefix of its raw bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class KeyProvider(abc.ABC):
    """The gallery's keys. Only :meth:`data_key` is required; bundle keys are needed only to sign / verify."""

    @abc.abstractmethod
    def data_key(self) -> bytes:
        """The 32-byte AES-256-GCM key that encrypts templates and photos.

        Raises:
            KeySourceError: the key is missing, malformed or unsafely stored.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the keys come from, for messages (never the key material)."""

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key that signs exported bundles (central enrolment station only)."""
        raise KeySourceError(f"{self.describe()} has no bundle signing key; the enrolment station that exports "
                             f"bundles needs one ({KEYGEN_HINT})")

    def verify_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key that imported bundles must be signed with (every gate)."""
        try:
            return self.signing_key().public_key()
        except KeySourceError:
            raise KeySourceError(f"{self.describe()} has no bundle verify key; copy the station's "
                                 f"{VERIFY_KEY_FILE} beside the gate's data key (or set {ENV_VERIFY_KEY})") from None


def check_private_mode(path: Path) -> None:
    """Refuse a secret key file that is not a regular file or that group or others may access."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeySourceError(f"key file not found: {path}; {KEYGEN_HINT}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeySourceError(f"key path {path} is not a regular file")
    if os.name == "posix" and st.st_mode & 0o077:
        raise KeySourceError(f"key file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                             f"restrict it with `chmod 600 {path}` and check who may have copied it")


def _read_secret(path: Path) -> bytes:
    check_private_mode(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeySourceError(f"cannot read key file {path}: {exc.strerror}") from None


def parse_data_key(text: bytes, where: str) -> bytes:
    """The 32 bytes of a data key written as 64 hex characters (surrounding whitespace ignored)."""
    try:
        key = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != DATA_KEY_BYTES:
        raise KeySourceError(f"{where} is not a data key: expected {2 * DATA_KEY_BYTES} hex characters "
                             f"(a 256-bit key); {KEYGEN_HINT}")
    return key


def _raw_or_pem(text: bytes, where: str) -> Union[bytes, None]:
    """The raw 32 bytes when ``text`` is hex; None when it looks like PEM; an error otherwise."""
    stripped = text.strip()
    if stripped.startswith(b"-----BEGIN"):
        return None
    try:
        raw = binascii.unhexlify(stripped)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KeySourceError(f"{where} is neither a PEM Ed25519 key nor 64 hex characters; {KEYGEN_HINT}")
    return raw


def parse_signing_key(text: bytes, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, unencrypted) or hex of the raw 32 bytes."""
    raw = _raw_or_pem(text, where)
    try:
        if raw is not None:
            return Ed25519PrivateKey.from_private_bytes(raw)
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as exc:
        raise KeySourceError(f"{where} is not an unencrypted Ed25519 private key ({exc}); {KEYGEN_HINT}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeySourceError(f"{where} holds a {type(key).__name__}, not an Ed25519 key; {KEYGEN_HINT}")
    return key


def parse_verify_key(text: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or hex of the raw 32 bytes."""
    raw = _raw_or_pem(text, where)
    try:
        if raw is not None:
            return Ed25519PublicKey.from_public_bytes(raw)
        key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError) as exc:
        raise KeySourceError(f"{where} is not an Ed25519 public key ({exc}); {KEYGEN_HINT}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeySourceError(f"{where} holds a {type(key).__name__}, not an Ed25519 key; {KEYGEN_HINT}")
    return key


class FileKeys(KeyProvider):
    """Keys in files: the data key and signing key must be 0600; the verify key is public.

    Args:
        data_key: the data key file (64 hex characters).
        signing_key: Ed25519 private key file (enrolment station), or None.
        verify_key: Ed25519 public key file (gates), or None (then derived from ``signing_key``).
    """

    def __init__(self, data_key: Optional[PathLike], signing_key: Optional[PathLike] = None,
                 verify_key: Optional[PathLike] = None) -> None:
        self.data_key_path = Path(data_key) if data_key is not None else None
        self.signing_key_path = Path(signing_key) if signing_key is not None else None
        self.verify_key_path = Path(verify_key) if verify_key is not None else None

    @classmethod
    def from_dir(cls, folder: PathLike) -> "FileKeys":
        """The keys :func:`generate_keys` wrote into ``folder`` (``data.key``, ``signing.pem``, ``verify.pem``);
        the bundle keys only where present."""
        folder = Path(folder)
        if not folder.is_dir():
            raise KeySourceError(f"key folder not found: {folder}; {KEYGEN_HINT}")
        signing, verify = folder / SIGNING_KEY_FILE, folder / VERIFY_KEY_FILE
        return cls(folder / DATA_KEY_FILE, signing if signing.exists() else None, verify if verify.exists() else None)

    def describe(self) -> str:
        shown = [str(p) for p in (self.data_key_path, self.signing_key_path, self.verify_key_path) if p is not None]
        return "key files " + ", ".join(shown) if shown else "FileKeys (no files)"

    def data_key(self) -> bytes:
        if self.data_key_path is None:
            raise KeySourceError(f"no data key file given; {KEYGEN_HINT}")
        return parse_data_key(_read_secret(self.data_key_path), f"key file {self.data_key_path}")

    def signing_key(self) -> Ed25519PrivateKey:
        if self.signing_key_path is None:
            return super().signing_key()
        return parse_signing_key(_read_secret(self.signing_key_path), f"key file {self.signing_key_path}")

    def verify_key(self) -> Ed25519PublicKey:
        if self.verify_key_path is None:
            return super().verify_key()
        try:
            text = self.verify_key_path.read_bytes()
        except OSError as exc:
            raise KeySourceError(f"cannot read verify key {self.verify_key_path}: {exc.strerror}") from None
        return parse_verify_key(text, f"key file {self.verify_key_path}")


class EnvKeys(KeyProvider):
    """Keys in environment variables (containers, systemd ``LoadCredential``/``Environment=``).

    Args:
        environ: the mapping to read (default :data:`os.environ`).
        data_var, signing_var, verify_var: variable names.
    """

    def __init__(self, environ: Optional[Mapping[str, str]] = None, data_var: str = ENV_DATA_KEY,
                 signing_var: str = ENV_SIGNING_KEY, verify_var: str = ENV_VERIFY_KEY) -> None:
        self.environ = os.environ if environ is None else environ
        self.data_var, self.signing_var, self.verify_var = data_var, signing_var, verify_var

    def describe(self) -> str:
        return f"environment variables {self.data_var} / {self.signing_var} / {self.verify_var}"

    def _value(self, name: str) -> Optional[bytes]:
        value = self.environ.get(name)
        return value.encode("utf-8") if value else None

    def data_key(self) -> bytes:
        value = self._value(self.data_var)
        if value is None:
            raise KeySourceError(f"environment variable {self.data_var} is not set; set it to the 64 hex "
                                 f"characters of the gallery's data key ({KEYGEN_HINT})")
        return parse_data_key(value, f"environment variable {self.data_var}")

    def signing_key(self) -> Ed25519PrivateKey:
        value = self._value(self.signing_var)
        if value is None:
            return super().signing_key()
        return parse_signing_key(value, f"environment variable {self.signing_var}")

    def verify_key(self) -> Ed25519PublicKey:
        value = self._value(self.verify_var)
        if value is None:
            return super().verify_key()
        return parse_verify_key(value, f"environment variable {self.verify_var}")


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to a new file created with ``mode`` (never wider, whatever the umask), fsynced, and
    linked into place only when complete; an existing ``path`` is an error, never overwritten."""
    path = Path(path)
    if path.exists():
        raise KeySourceError(f"{path} exists; refusing to overwrite a key (a replaced data key makes the "
                             "gallery unreadable); move it away first if you really mean to")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; it never widens 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if path appeared meanwhile: no clobbering
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def generate_keys(folder: PathLike, data: bool = True, signing: bool = True) -> Dict[str, Path]:
    """Fresh keys in ``folder`` (created 0700): ``data.key`` and ``signing.pem`` (0600), ``verify.pem`` (0644).

    Args:
        folder: where to write; existing key files are never overwritten.
        data: write a data key (every gallery needs one; gates of a site share the station's).
        signing: write an Ed25519 pair (the station keeps ``signing.pem``; gates get ``verify.pem``).

    Returns:
        ``{"data": path, "signing": path, "verify": path}`` for what was written.
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    if data:
        written["data"] = write_private_file(folder / DATA_KEY_FILE, os.urandom(DATA_KEY_BYTES).hex().encode() + b"\n")
    if signing:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        written["signing"] = write_private_file(folder / SIGNING_KEY_FILE, pem)
        written["verify"] = write_private_file(folder / VERIFY_KEY_FILE, pub, mode=0o644)
    logger.info("wrote %s into %s", ", ".join(sorted(written)), folder)
    return written


def keys_from(folder: Optional[PathLike] = None, environ: Optional[Mapping[str, str]] = None) -> KeyProvider:
    """The usual choice: :class:`FileKeys` of ``folder`` when given, else :class:`EnvKeys` when
    ``HSST_GALLERY_KEY`` is set, else an error saying how to provide keys."""
    env = os.environ if environ is None else environ
    if folder is not None:
        return FileKeys.from_dir(folder)
    if env.get(ENV_DATA_KEY):
        return EnvKeys(env)
    raise KeySourceError(f"no gallery keys: pass --keys DIR (a folder made by `hsst-gallery keygen`) or set "
                         f"{ENV_DATA_KEY} (and {ENV_VERIFY_KEY} / {ENV_SIGNING_KEY} for bundles)")
