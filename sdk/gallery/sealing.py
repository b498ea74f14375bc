"""AES-256-GCM sealing of gallery rows, each bound to its place by associated data.

A sealed row is ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``. The associated data names what the
row is and where it belongs (a template: its identity id, its template id and the model hash), so a row moved
to another identity, another template slot or relabelled as another model's fails authentication instead of
decrypting: templates cannot be swapped between people. Random 96-bit nonces are safe for far more rows than a
site ever seals with one key (NIST SP 800-38D bounds random nonces at 2^32 encryptions per key).
"""
from __future__ import annotations

import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsst.core.errors import InputError
from hsst.gallery.errors import TamperedData, WrongKey
from hsst.gallery.keys import DATA_KEY_BYTES, key_id

NONCE_BYTES = 12
TAG_BYTES = 16
_DOMAIN = b"hsst-gallery/1"
_KEY_CHECK = b"hsst-gallery key check"


def associated_data(kind: str, *parts: str) -> bytes:
    """Unambiguous associated data: domain, kind and each part length-prefixed (ids may hold any text)."""
    out = [_DOMAIN, struct.pack(">I", len(kind)), kind.encode("ascii")]
    for part in parts:
        raw = part.encode("utf-8")
        out += [struct.pack(">I", len(raw)), raw]
    return b"".join(out)


class RowSealer:
    """Seals and opens templates, photos and the key check of one gallery with one data key.

    Args:
        data_key: the 32-byte key (from a :class:`~hsst.gallery.keys.KeyProvider`).
    """

    def __init__(self, data_key: bytes) -> None:
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_BYTES:
            raise InputError(f"data key must be {DATA_KEY_BYTES} bytes, got "
                             f"{len(data_key) if isinstance(data_key, bytes) else type(data_key).__name__}")
        self._aead = AESGCM(data_key)
        self.key_id = key_id(data_key)

    def _seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def _open(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise InvalidTag()
        return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)

    # -- templates ------------------------------------------------------------------------------------------

    def seal_template(self, identity_id: str, template_id: str, model_hash: str, vector: np.ndarray) -> bytes:
        """Seal one (D,) float32 template (stored little-endian)."""
        plain = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        return self._seal(plain, associated_data("template", identity_id, template_id, model_hash))

    def open_template(self, identity_id: str, template_id: str, model_hash: str, sealed: bytes,
                      dim: int) -> np.ndarray:
        """The (D,) float32 template of a sealed row.

        Raises:
            TamperedData: the row was modified, moved or is not of this identity / slot / model.
        """
        try:
            plain = self._open(bytes(sealed), associated_data("template", identity_id, template_id, model_hash))
        except InvalidTag:
            raise TamperedData(f"template {template_id} of identity {identity_id!r} fails authentication: the row "
                               "was modified, moved to another identity or corrupted; run `hsst-gallery verify` to "
                               "list every bad row, then remove and re-enrol that identity") from None
        if len(plain) != 4 * dim:
            raise TamperedData(f"template {template_id} of identity {identity_id!r} holds {len(plain) // 4} values, "
                               f"the gallery's dimension is {dim}")
        return np.frombuffer(plain, dtype="<f4").astype(np.float32)

    # -- photos ---------------------------------------------------------------------------------------------

    def seal_photo(self, identity_id: str, photo_id: str, data: bytes) -> bytes:
        """Seal an enrolment photo's bytes."""
        return self._seal(data, associated_data("photo", identity_id, photo_id))

    def open_photo(self, identity_id: str, photo_id: str, sealed: bytes) -> bytes:
        """The bytes of a sealed photo (:class:`TamperedData` when it fails authentication)."""
        try:
            return self._open(bytes(sealed), associated_data("photo", identity_id, photo_id))
        except InvalidTag:
            raise TamperedData(f"photo {photo_id} of identity {identity_id!r} fails authentication: the row was "
                               "modified, moved or corrupted") from None

    # -- key check ------------------------------------------------------------------------------------------

    def make_key_check(self, store_id: str) -> bytes:
        """A sealed constant that only this key opens: tells a wrong key from a tampered row."""
        return self._seal(_KEY_CHECK, associated_data("key-check", store_id))

    def check_key(self, store_id: str, sealed: bytes, expected_key_id: str, where: str) -> None:
        """Raise :class:`WrongKey` unless ``sealed`` (from :meth:`make_key_check`) opens with this key."""
        try:
            ok = self._open(bytes(sealed), associated_data("key-check", store_id)) == _KEY_CHECK
        except InvalidTag:
            ok = False
        if not ok:
            raise WrongKey(f"{where} was encrypted with data key {expected_key_id}, the key given is {self.key_id}; "
                           "use the site's data key (the one the gallery was created with) - with another key "
                           "nothing in it can be read")

