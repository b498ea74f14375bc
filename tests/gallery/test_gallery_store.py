"""GalleryStore with real faces: enrol, identify, remove, persistence, file modes, wrong key, tampered rows,
model binding, re-embed, audit trail, and searches while enrolments land."""
import logging
import os
import sqlite3
import stat

import numpy as np
import pytest

from hsst.core.errors import InputError, ModelError
from hsst.gallery.errors import ModelMismatch, StoreError, TamperedData, WrongKey
from hsst.gallery.index import IndexOptions
from hsst.gallery.keys import FileKeys, generate_keys
from hsst.gallery.store import GalleryStore

PHOTOS = 3  # per person in the real_faces fixture: the `enrolled` gallery holds the first two


def _identify(store, real_faces):
    names, probes = real_faces.probes()
    ids, scores = store.search(probes, k=1)
    return float((ids[:, 0] == np.array(names)).mean()), ids, scores


def test_enrol_identify_and_reopen(enrolled, real_faces, keys):
    rate, ids, scores = _identify(enrolled, real_faces)
    assert rate >= 0.8, ids[:, 0]  # unseen photos of enrolled people, LFW, shipped model
    assert len(enrolled) == len(real_faces.people) and enrolled.dim == 192
    person = real_faces.people[0]
    record = enrolled.get(person)
    assert record.templates == PHOTOS - 1 and record.photos == PHOTOS - 1
    assert record.attributes == {"badge": person[:3].upper()} and record.name == person.replace("_", " ")
    assert [t.quality for t in enrolled.templates(person)] == [{"passed": True, "score": 0.9}] * (PHOTOS - 1)
    assert all(t.model_hash == real_faces.model_hash for t in enrolled.templates(person))
    np.testing.assert_allclose(enrolled.embeddings(person), real_faces.of(person)[:PHOTOS - 1], atol=1e-6)
    kept = enrolled.photos(person)
    assert kept[0].aligned and np.array_equal(kept[0].image, real_faces.crops_of(person)[0])
    path = enrolled.path
    enrolled.close()
    with GalleryStore.open(path, keys, real_faces.model_hash) as again:  # the index is rebuilt from the file
        assert _identify(again, real_faces)[0] == rate
        assert again.version == len(real_faces.people)


def test_gate_interface_add_remove_metadata(store, real_faces):
    person = real_faces.people[1]
    store.add(person, real_faces.of(person)[:1], {"photos": ["a.jpg"]})
    store.add(person, real_faces.of(person)[1:2], {"photos": ["a.jpg", "b.jpg"]})
    assert person in store and len(store) == 1 and store.identities == [person]
    assert store.metadata(person) == {"photos": ["a.jpg", "b.jpg"]}
    assert store.get(person).templates == 2
    ids, scores = store.search(real_faces.of(person)[2], k=2)
    assert ids[0, 0] == person and ids[0, 1] is None and scores[0, 1] == -np.inf
    assert store.remove(person) and not store.remove(person)
    assert person not in store and len(store) == 0 and store.search(real_faces.of(person)[0])[0][0, 0] is None
    with pytest.raises(KeyError):
        store.metadata(person)
    assert [a.action for a in store.audit(identity_id=person)] == ["enrol", "update", "remove"]
    assert all(a.actor == "gate" for a in store.audit(identity_id=person)[:2])


def test_enrol_modes_and_bad_input_leave_nothing_half_done(store, real_faces):
    a, b = real_faces.people[:2]
    store.enrol(a, real_faces.of(a)[:2])
    with pytest.raises(InputError, match="already enrolled.*if_exists='add'"):
        store.enrol(a, real_faces.of(a)[2:])
    store.enrol(a, real_faces.of(a)[2:], if_exists="replace")
    assert store.get(a).templates == 1 and len(store.index) == 1
    version = store.version
    bad_photos = [real_faces.crops_of(b)[0], np.zeros((5, 5), np.uint8)]
    with pytest.raises(InputError, match="sides >= 8"):
        store.enrol(b, real_faces.of(b)[:2], photos=bad_photos)
    with pytest.raises(InputError, match="2 photos for 3 templates"):
        store.enrol(b, real_faces.of(b), photos=real_faces.crops_of(b)[:2])
    with pytest.raises(InputError, match="JSON-serialisable"):
        store.enrol(b, real_faces.of(b), attributes={"when": object()})
    with pytest.raises(InputError, match="float32"):
        store.enrol(b, real_faces.of(b).astype(np.float64))
    with pytest.raises(InputError, match="zero vector"):
        store.enrol(b, np.zeros((1, 192), np.float32))
    with pytest.raises(InputError, match="control characters"):
        store.enrol("bad\nid", real_faces.of(b))
    assert b not in store and store.version == version and len(store.index) == 1


def test_store_files_are_0600(enrolled):
    os.chmod(enrolled.path, 0o644)  # someone loosened it: the next open restores 0600
    enrolled.close()
    keys = FileKeys.from_dir(enrolled.path.parent / "keys")
    with GalleryStore.open(enrolled.path, keys, search=False) as again:
        assert again.verify().ok
    for suffix in ("", "-wal", "-shm"):
        path = enrolled.path.with_name(enrolled.path.name + suffix)
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_wrong_key_is_named(enrolled, tmp_path, real_faces):
    enrolled.close()
    generate_keys(tmp_path / "other", signing=False)
    with pytest.raises(WrongKey, match=f"encrypted with data key {enrolled.key_id}, the key given is"):
        GalleryStore.open(enrolled.path, FileKeys.from_dir(tmp_path / "other"), real_faces.model_hash)


def _raw(path):
    conn = sqlite3.connect(str(path), isolation_level=None)
    return conn


def _flip_a_bit(path, uid: str) -> None:
    """Alter one bit of a template's sealed bytes in the file, as an attacker or a failing SD card would."""
    conn = _raw(path)
    sealed = bytearray(conn.execute("SELECT sealed FROM templates WHERE uid = ?", (uid,)).fetchone()[0])
    sealed[20] ^= 0x40
    conn.execute("UPDATE templates SET sealed = ? WHERE uid = ?", (bytes(sealed), uid))
    conn.close()


def test_tampered_row_is_detected_and_named(enrolled, keys, real_faces):
    person = real_faces.people[2]
    uid = enrolled.templates(person)[0].id
    enrolled.close()
    _flip_a_bit(enrolled.path, uid)
    with pytest.raises(TamperedData, match=f"template {uid} of identity '{person}' fails authentication"):
        GalleryStore.open(enrolled.path, keys, real_faces.model_hash)
    with GalleryStore.open(enrolled.path, keys, real_faces.model_hash, search=False) as store:
        report = store.verify()
    assert not report.ok and report.integrity == "ok"
    assert any(uid in p and person in p for p in report.problems), report.problems


def test_templates_cannot_be_swapped_between_people(enrolled, keys, real_faces):
    """An attacker with write access moves Alice's template to Bob: Bob's probe would then open the gate as
    Alice. The associated data binds each row to its identity: the moved row does not decrypt."""
    alice, bob = real_faces.people[:2]
    enrolled.close()
    conn = _raw(enrolled.path)
    conn.execute("UPDATE templates SET identity_id = ? WHERE label = (SELECT MIN(label) FROM templates "
                 "WHERE identity_id = ?)", (alice, bob))
    conn.close()
    with pytest.raises(TamperedData, match=f"of identity '{alice}' fails authentication"):
        GalleryStore.open(enrolled.path, keys, real_faces.model_hash)


def test_audit_is_append_only(enrolled):
    entries = enrolled.audit()
    assert entries[0].action == "create" and {e.action for e in entries[1:]} == {"enrol"}
    assert all("template" not in str(e.detail.get("values", "")) for e in entries)
    conn = _raw(enrolled.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'nobody'")
    conn.close()


def test_other_model_is_refused_with_the_fix(enrolled, keys):
    enrolled.close()
    with pytest.raises(ModelMismatch, match=r"holds templates of model [0-9a-f]{16}\.\.\., the model in use is "
                                            r"ffffffffffffffff.*hsst-gallery re-embed.*or re-enrol") as info:
        GalleryStore.open(enrolled.path, keys, "f" * 64)
    assert isinstance(info.value, ModelError)


def test_an_empty_gallery_takes_the_new_model(store, keys):
    path = store.path
    store.close()
    with GalleryStore.open(path, keys, "e" * 64) as again:
        assert again.model_hash == "e" * 64 and again.audit()[-1].action == "rebind"


def test_not_a_gallery_and_missing(tmp_path, keys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a gallery"):
        GalleryStore.open(junk, keys)
    with pytest.raises(StoreError, match="gallery not found"):
        GalleryStore.open(tmp_path / "none.db", keys)
    other = tmp_path / "other.db"
    sqlite3.connect(str(other)).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(StoreError, match="not a gallery"):
        GalleryStore.open(other, keys)


def test_creation_killed_before_its_commit_is_redone(tmp_path, keys, real_faces):
    path = tmp_path / "g.db"
    path.touch(mode=0o600)  # what a kill between creating the file and the schema's commit leaves
    with pytest.raises(StoreError, match="creation was interrupted"):
        GalleryStore.open(path, keys, real_faces.model_hash)
    with GalleryStore.open(path, keys, real_faces.model_hash, create=True, dim=192) as store:
        store.enrol("x", real_faces.embeddings[:1])
    with GalleryStore.open(path, keys, real_faces.model_hash, create=True) as store:  # a real one is kept
        assert store.identities == ["x"]


def test_re_embed_from_kept_photos(tmp_path, keys, real_faces):
    """A gallery made by an older model is moved to the shipped one from its kept aligned crops; identities
    without a kept photo are refused, or dropped on request."""
    from hsst.runtime.embedder import Embedder

    old = GalleryStore.create(tmp_path / "old.db", keys, "0" * 64, dim=192)
    rng = np.random.default_rng(0)
    for name in real_faces.people:  # "old model" templates: unrelated vectors
        old.enrol(name, rng.standard_normal((PHOTOS - 1, 192)).astype(np.float32),
                  photos=real_faces.crops_of(name)[:PHOTOS - 1])
    old.enrol("no-photo", rng.standard_normal((1, 192)).astype(np.float32))
    old.enrol("raw-only", rng.standard_normal((1, 192)).astype(np.float32),
              photos=[np.zeros((200, 150), np.uint8)], photos_aligned=False)
    embedder = Embedder.from_file(real_faces.model, threads=1)
    with pytest.raises(StoreError, match="2 of .* cannot be re-embedded.*1 have only raw photos.*face path.*"
                                         "1 have\\s+no kept photo.*--drop-missing"):
        old.re_embed(embedder.embed, real_faces.model_hash)
    assert old.model_hash == "0" * 64  # refused: nothing changed
    report = old.re_embed(embedder.embed, real_faces.model_hash, drop_missing=True, actor="test")
    assert sorted(report.dropped) == ["no-photo", "raw-only"] and report.templates == 2 * len(real_faces.people)
    assert old.model_hash == real_faces.model_hash and "no-photo" not in old
    assert _identify(old, real_faces)[0] >= 0.8
    old.close()
    with GalleryStore.open(tmp_path / "old.db", keys, real_faces.model_hash) as again:
        assert again.verify().ok and again.audit()[-1].action == "re-embed"


def test_concurrent_search_while_enrolling(store, real_faces, searching):
    """Several threads search while the main thread enrols; a template enrolled is found by the next search."""
    names, probes = real_faces.probes()

    def search(rng):
        ids, scores = store.search(np.ascontiguousarray(probes[rng.integers(len(probes))]), k=2)
        assert ids.shape == (1, 2) and (ids[0, 0] is None or scores[0, 0] >= scores[0, 1])

    with searching(search):
        for i, vector in enumerate(real_faces.embeddings):
            store.enrol(f"face-{i}", vector[None])
            ids, scores = store.search(vector, k=1)
            assert ids[0, 0] == f"face-{i}" and scores[0, 0] > 0.999
    assert len(store) == len(real_faces.embeddings)


def test_refresh_sees_another_process(enrolled, keys, real_faces):
    other = GalleryStore.open(enrolled.path, keys, real_faces.model_hash)
    person = real_faces.people[3]
    other.remove(person, actor="cli")
    assert enrolled.search(real_faces.of(person)[0])[0][0, 0] == person  # stale until refreshed
    assert enrolled.refresh() and not enrolled.refresh()
    assert enrolled.search(real_faces.of(person)[0])[0][0, 0] != person
    other.close()


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_compact_storage_identifies_like_float32(tmp_path, keys, real_faces, storage):
    exact = GalleryStore.create(tmp_path / "a.db", keys, real_faces.model_hash, dim=192)
    for name in real_faces.people:
        exact.enrol(name, real_faces.of(name)[:PHOTOS - 1])
    exact.close()
    with GalleryStore.open(tmp_path / "a.db", keys, real_faces.model_hash) as a, \
            GalleryStore.open(tmp_path / "a.db", keys, real_faces.model_hash,
                              index=IndexOptions(storage=storage)) as b:
        assert b.index.storage == storage
        ra, ia, sa = _identify(a, real_faces)
        rb, ib, sb = _identify(b, real_faces)
        assert list(ia[:, 0]) == list(ib[:, 0])
        np.testing.assert_allclose(sa, sb, atol=0.02)


def test_skip_mode_serves_everyone_else_and_quarantines_the_tampered_identity(enrolled, keys, real_faces, caplog):
    """on_tampered="skip": one damaged row does not shut the gate; its identity is out of the search (named in
    the log and in ``quarantined``) until re-enrolled with if_exists="replace"."""
    person, other = real_faces.people[2], real_faces.people[0]
    uid = enrolled.templates(person)[-1].id  # its last row: the identity's earlier rows were read first
    enrolled.close()
    _flip_a_bit(enrolled.path, uid)
    with caplog.at_level(logging.ERROR, logger="hsst.gallery.store"):
        store = GalleryStore.open(enrolled.path, keys, real_faces.model_hash, on_tampered="skip")
    try:
        assert list(store.quarantined) == [person] and uid in store.quarantined[person]
        assert f"identity {person!r} left out of the search index" in caplog.text
        names, probes = real_faces.probes()
        best = dict(zip(names, store.search(probes, 1)[0][:, 0]))
        assert best[other] == other and person not in best.values()
        mine = probes[names.index(person)][None]
        store.enrol(person, real_faces.of(person)[:1], if_exists="add")  # still quarantined: a bad row remains
        assert person in store.quarantined and store.search(mine, 1)[0][0, 0] != person
        store.enrol(person, real_faces.of(person)[:2], if_exists="replace")
        assert not store.quarantined and store.search(mine, 1)[0][0, 0] == person
    finally:
        store.close()
    with pytest.raises(InputError, match="on_tampered must be one of"):
        GalleryStore.open(enrolled.path, keys, real_faces.model_hash, on_tampered="ignore")
