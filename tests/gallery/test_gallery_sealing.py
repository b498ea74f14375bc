"""Row sealing: a template opens only under its own identity, template id, model and key."""
import os

import numpy as np
import pytest

from hsst.core.errors import InputError
from hsst.gallery.errors import TamperedData, WrongKey
from hsst.gallery.sealing import NONCE_BYTES, RowSealer, associated_data


def test_round_trip_of_a_real_template(real_faces):
    sealer = RowSealer(os.urandom(32))
    vector = real_faces.embeddings[0]
    sealed = sealer.seal_template("alice", "t1", "model", vector)
    assert vector.tobytes() not in sealed  # encrypted, not merely wrapped
    np.testing.assert_array_equal(sealer.open_template("alice", "t1", "model", sealed, 192), vector)
    again = sealer.seal_template("alice", "t1", "model", vector)
    assert again[:NONCE_BYTES] != sealed[:NONCE_BYTES]  # a fresh random nonce per row


@pytest.mark.parametrize("where", [("bob", "t1", "model"), ("alice", "t2", "model"), ("alice", "t1", "other")])
def test_a_row_moved_to_another_identity_slot_or_model_fails(real_faces, where):
    sealer = RowSealer(os.urandom(32))
    sealed = sealer.seal_template("alice", "t1", "model", real_faces.embeddings[0])
    with pytest.raises(TamperedData, match=f"template {where[1]} of identity '{where[0]}' fails authentication"):
        sealer.open_template(*where, sealed, 192)


def test_flipped_bit_truncation_and_wrong_key_are_detected(real_faces):
    key = os.urandom(32)
    sealed = RowSealer(key).seal_template("alice", "t1", "m", real_faces.embeddings[0])
    flipped = bytearray(sealed)
    flipped[40] ^= 0x01
    for bad in (bytes(flipped), sealed[:-1], sealed[:10]):
        with pytest.raises(TamperedData):
            RowSealer(key).open_template("alice", "t1", "m", bad, 192)
    with pytest.raises(TamperedData):
        RowSealer(os.urandom(32)).open_template("alice", "t1", "m", sealed, 192)


def test_key_check_tells_a_wrong_key_apart():
    key = os.urandom(32)
    check = RowSealer(key).make_key_check("store-1")
    RowSealer(key).check_key("store-1", check, RowSealer(key).key_id, "gallery g.db")
    other = RowSealer(os.urandom(32))
    with pytest.raises(WrongKey, match=f"gallery g.db was encrypted with data key {RowSealer(key).key_id}, "
                                       f"the key given is {other.key_id}"):
        other.check_key("store-1", check, RowSealer(key).key_id, "gallery g.db")


def test_photos_are_bound_to_their_identity():
    sealer = RowSealer(os.urandom(32))
    sealed = sealer.seal_photo("alice", "p1", b"pixels")
    assert sealer.open_photo("alice", "p1", sealed) == b"pixels"
    with pytest.raises(TamperedData, match="photo p1 of identity 'bob'"):
        sealer.open_photo("bob", "p1", sealed)


def test_associated_data_is_unambiguous():
    # length prefixes: ("ab", "c") and ("a", "bc") must not collide
    assert associated_data("template", "ab", "c") != associated_data("template", "a", "bc")


def test_bad_key_length_is_an_input_error():
    with pytest.raises(InputError, match="32 bytes"):
        RowSealer(b"short")
