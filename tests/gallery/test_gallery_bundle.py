"""Signed bundles from a station to a gate: full and incremental, and every refusal (tampered, wrong key,
older version, other model, other data key, missing changes, other station) leaving the gate untouched."""
import shutil

import numpy as np
import pytest

from hsst.core.errors import ModelError
from hsst.gallery.bundle import MAGIC, export_bundle, import_bundle, read_header
from hsst.gallery.errors import BundleError, ModelMismatch, WrongKey
from hsst.gallery.keys import FileKeys, generate_keys
from hsst.gallery.store import GalleryStore


@pytest.fixture
def gate(tmp_path, keys, real_faces):
    """A gate's empty gallery with the station's data key and verify key (no signing key)."""
    gate_keys = tmp_path / "gate_keys"
    gate_keys.mkdir(mode=0o700)
    for name in ("data.key", "verify.pem"):
        shutil.copy2(tmp_path / "keys" / name, gate_keys / name)
    provider = FileKeys.from_dir(gate_keys)
    store = GalleryStore.create(tmp_path / "gate.db", provider, real_faces.model_hash, dim=192)
    yield store, provider
    store.close()


def _state(store):
    return store.version, store.bundle_version, store.identities, len(store.index or [])


def test_full_then_incremental(enrolled, keys, gate, real_faces, tmp_path):
    station = enrolled
    store, gate_keys = gate
    header = export_bundle(station, tmp_path / "full.hgb", keys)
    assert header.kind == "full" and header.identities == len(real_faces.people)
    assert (tmp_path / "full.hgb").read_bytes()[:8] == MAGIC and oct((tmp_path / "full.hgb").stat().st_mode)[-3:] == "600"
    result = import_bundle(store, tmp_path / "full.hgb", gate_keys)
    assert result["upserted"] == len(real_faces.people) and store.bundle_version == station.version
    names, probes = real_faces.probes()
    np.testing.assert_array_equal(store.search(probes)[0], station.search(probes)[0])  # the gate identifies alike
    assert store.get(names[0]).attributes == station.get(names[0]).attributes
    assert store.verify().ok

    since = station.version
    gone, renamed = names[0], names[1]
    station.remove(gone)
    station.update(renamed, name="Renamed")
    station.enrol("newcomer", real_faces.of(names[2])[2:])
    inc = export_bundle(station, tmp_path / "inc.hgb", keys, since=since)
    assert (inc.kind, inc.base_version, inc.identities, inc.removed) == ("incremental", since, 2, [gone])
    result = import_bundle(store, tmp_path / "inc.hgb", gate_keys)
    assert (result["upserted"], result["removed"]) == (2, 1)
    assert gone not in store and store.get(renamed).name == "Renamed" and "newcomer" in store
    assert store.search(real_faces.of(names[2])[2])[0][0, 0] == "newcomer"
    assert store.search(real_faces.of(gone)[0])[0][0, 0] != gone
    assert store.identities == station.identities
    assert [a.action for a in store.audit(identity_id=gone)][-1] == "remove"
    store.close()
    with GalleryStore.open(store.path, gate_keys, real_faces.model_hash) as again:
        assert again.identities == station.identities and again.verify().ok


def test_older_and_same_version_refused(enrolled, keys, gate, tmp_path):
    store, gate_keys = gate
    export_bundle(enrolled, tmp_path / "v1.hgb", keys)
    enrolled.remove(enrolled.identities[0])
    export_bundle(enrolled, tmp_path / "v2.hgb", keys)
    import_bundle(store, tmp_path / "v2.hgb", gate_keys)
    before = _state(store)
    for old in ("v1.hgb", "v2.hgb"):
        with pytest.raises(BundleError, match="not newer than version .* refusing to roll the gallery back"):
            import_bundle(store, tmp_path / old, gate_keys)
    assert _state(store) == before


def test_tampered_payload_and_header_refused(enrolled, keys, gate, tmp_path):
    store, gate_keys = gate
    export_bundle(enrolled, tmp_path / "b.hgb", keys)
    data = (tmp_path / "b.hgb").read_bytes()
    payload = bytearray(data)
    payload[-100] ^= 0x01  # inside a sealed template
    (tmp_path / "payload.hgb").write_bytes(bytes(payload))
    with pytest.raises(BundleError, match="does not match its signed hash.*modified or truncated after signing"):
        import_bundle(store, tmp_path / "payload.hgb", gate_keys)
    header = data.replace(b'"kind": "full"', b'"kind": "FULL"', 1)
    assert header != data
    (tmp_path / "header.hgb").write_bytes(header)
    with pytest.raises(BundleError, match="fails its signature check.*modified after signing"):
        import_bundle(store, tmp_path / "header.hgb", gate_keys)
    (tmp_path / "cut.hgb").write_bytes(data[:len(data) // 2])
    with pytest.raises(BundleError, match="modified or truncated"):
        import_bundle(store, tmp_path / "cut.hgb", gate_keys)
    (tmp_path / "junk.hgb").write_bytes(b"PK\x03\x04 not a bundle")
    with pytest.raises(BundleError, match="not a gallery bundle"):
        import_bundle(store, tmp_path / "junk.hgb", gate_keys)
    assert len(store) == 0 and store.bundle_version is None


def test_bundle_signed_by_another_station_refused(enrolled, gate, tmp_path):
    store, gate_keys = gate
    generate_keys(tmp_path / "rogue")
    rogue = FileKeys(enrolled.path.parent / "keys" / "data.key", tmp_path / "rogue" / "signing.pem")
    export_bundle(enrolled, tmp_path / "rogue.hgb", rogue)
    with pytest.raises(BundleError, match="fails its signature check with the configured key"):
        read_header(tmp_path / "rogue.hgb", gate_keys)
    with pytest.raises(BundleError, match="signed by another station"):
        import_bundle(store, tmp_path / "rogue.hgb", gate_keys)
    assert len(store) == 0


def test_bundle_for_another_model_refused(enrolled, keys, tmp_path, real_faces):
    export_bundle(enrolled, tmp_path / "b.hgb", keys)
    with GalleryStore.create(tmp_path / "other.db", keys, "a" * 64, dim=192) as other:
        other.enrol("someone", real_faces.of(real_faces.people[0])[:1])  # bound: not rebindable
        with pytest.raises(ModelMismatch, match="holds templates of model .* bound to model aaaaaaaaaaaaaaaa") as info:
            import_bundle(other, tmp_path / "b.hgb", keys)
        assert isinstance(info.value, ModelError) and other.identities == ["someone"]


def test_bundle_sealed_with_another_data_key_refused(enrolled, keys, tmp_path, real_faces):
    export_bundle(enrolled, tmp_path / "b.hgb", keys)
    generate_keys(tmp_path / "k2", signing=False)
    foreign = FileKeys(tmp_path / "k2" / "data.key", verify_key=tmp_path / "keys" / "verify.pem")
    with GalleryStore.create(tmp_path / "g2.db", foreign, real_faces.model_hash, dim=192) as other:
        with pytest.raises(WrongKey, match="sealed with data key .* gates of a site share the station's data key"):
            import_bundle(other, tmp_path / "b.hgb", foreign)
        assert len(other) == 0


def test_incremental_gap_and_other_station(enrolled, keys, gate, tmp_path, real_faces):
    store, gate_keys = gate
    export_bundle(enrolled, tmp_path / "full.hgb", keys)
    import_bundle(store, tmp_path / "full.hgb", gate_keys)
    at = enrolled.version
    enrolled.remove(enrolled.identities[0])
    enrolled.remove(enrolled.identities[0])
    export_bundle(enrolled, tmp_path / "gap.hgb", keys, since=at + 1)
    with pytest.raises(BundleError, match=f"changes since version {at + 1}, but this gallery is at version {at}"):
        import_bundle(store, tmp_path / "gap.hgb", gate_keys)
    # a second station with the same keys: its bundles are refused unless a full one switches explicitly
    with GalleryStore.create(tmp_path / "station2.db", keys, real_faces.model_hash, dim=192) as station2:
        station2.enrol("only-here", real_faces.of(real_faces.people[0])[:1])
        export_bundle(station2, tmp_path / "s2.hgb", keys)
    before = _state(store)
    with pytest.raises(BundleError, match="comes from station .* --new-source"):
        import_bundle(store, tmp_path / "s2.hgb", gate_keys)
    assert _state(store) == before
    import_bundle(store, tmp_path / "s2.hgb", gate_keys, new_source=True)
    assert store.identities == ["only-here"]


def test_a_bad_row_deep_in_a_signed_bundle_imports_nothing(enrolled, keys, gate, tmp_path, real_faces):
    """The station signs a bundle whose last template does not open with the site key (a station bug or a
    compromised station): the gate's import fails on that row and rolls back everything before it."""
    store, gate_keys = gate
    last = enrolled.identities[-1]
    uid = enrolled.templates(last)[-1].id
    enrolled.close()
    import sqlite3

    conn = sqlite3.connect(str(enrolled.path), isolation_level=None)
    conn.execute("UPDATE templates SET sealed = ? WHERE uid = ?", (b"\x00" * 796, uid))
    conn.close()
    with GalleryStore.open(enrolled.path, keys, search=False) as station:
        export_bundle(station, tmp_path / "b.hgb", keys)
    from hsst.gallery.errors import TamperedData

    with pytest.raises(TamperedData, match=f"template {uid} of identity '{last}'"):
        import_bundle(store, tmp_path / "b.hgb", gate_keys)
    assert len(store) == 0 and store.bundle_version is None and store.identities == []


def test_inbox_applies_oldest_first_and_files_each_away(enrolled, keys, gate, real_faces, tmp_path):
    """A full and an incremental bundle dropped together are applied in version order whatever their names; a
    file still being written (younger than the settle time) waits; other files are left alone; a replay is
    refused and filed with its reason."""
    import os
    import time

    from hsst.gallery.bundle import apply_inbox

    station = enrolled
    store, gate_keys = gate
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    since = station.version
    export_bundle(station, inbox / "b_full.hgb", keys)
    station.enrol("newcomer", real_faces.of(real_faces.people[0])[2:])
    export_bundle(station, inbox / "a_changes.hgb", keys, since=since)  # sorts first by name, applies second
    (inbox / "notes.txt").write_text("not a bundle")
    past = time.time() - 60
    for name in ("b_full.hgb", "a_changes.hgb"):
        os.utime(inbox / name, (past, past))
    shutil.copyfile(inbox / "b_full.hgb", inbox / "replay.hgb")  # fresh mtime: still "being copied"

    done = apply_inbox(store, inbox, gate_keys)
    assert [(d.path.name, d.applied) for d in done] == [("b_full.hgb", True), ("a_changes.hgb", True)]
    assert "newcomer" in store and store.identities == station.identities
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["notes.txt", "replay.hgb"]
    os.utime(inbox / "replay.hgb", (past, past))
    replay, = apply_inbox(store, inbox, gate_keys)
    assert not replay.applied and replay.path == inbox / "refused" / "replay.hgb"
    assert "not newer" in (inbox / "refused" / "replay.hgb.reason.txt").read_text()
    assert apply_inbox(store, inbox, gate_keys) == [] and apply_inbox(store, tmp_path / "absent", gate_keys) == []
