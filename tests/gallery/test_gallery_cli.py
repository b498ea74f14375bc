"""hsst-gallery: keygen, list, show, remove, export, import, re-embed, stats, verify; JSON for scripts; errors as
one line on stderr with exit status 1."""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsst.gallery.cli import main
from hsst.gallery.keys import ENV_DATA_KEY
from hsst.gallery.store import GalleryStore


def _run(*args, ok=True, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _json(*args):
    return json.loads(_run(*args, "--json").stdout)


def test_keygen_then_commands_on_a_real_gallery(enrolled, tmp_path, real_faces):
    gallery, keys = enrolled.path, enrolled.path.parent / "keys"
    enrolled.close()
    made = _json("keygen", "--out", tmp_path / "new")
    assert set(made) == {"data", "signing", "verify"}
    again = _run("keygen", "--out", tmp_path / "new", ok=False)
    assert again.exit_code == 1 and "refusing to overwrite" in again.output

    people = _json("list", "--gallery", gallery, "--keys", keys)
    assert [p["id"] for p in people] == real_faces.people and people[0]["templates"] == 2
    assert len(_json("list", "--gallery", gallery, "--keys", keys, "--limit", "3", "--offset", "2")) == 3
    person = real_faces.people[0]
    shown = _json("show", person, "--gallery", gallery, "--keys", keys)
    assert shown["attributes"] == {"badge": person[:3].upper()} and len(shown["template_list"]) == 2
    assert shown["template_list"][0]["model"] == real_faces.model_hash and shown["audit"][0]["action"] == "enrol"
    text = _run("show", person, "--gallery", gallery, "--keys", keys).stdout
    assert person in text and "template" in text

    stats = _json("stats", "--gallery", gallery, "--keys", keys)
    assert stats["identities"] == len(real_faces.people) and stats["model"] == real_faces.model_hash
    assert _json("verify", "--gallery", gallery, "--keys", keys)["ok"] is True

    assert _json("remove", person, "--gallery", gallery, "--keys", keys)["removed"] == person
    missing = _run("remove", person, "--gallery", gallery, "--keys", keys, ok=False)
    assert missing.exit_code == 1 and "is not in" in missing.output
    # keys from the environment instead of --keys
    env = {ENV_DATA_KEY: (keys / "data.key").read_text().strip()}
    assert len(json.loads(_run("list", "--gallery", gallery, "--json", env=env).stdout)) == len(real_faces.people) - 1


def test_export_import_through_the_cli(enrolled, tmp_path, real_faces):
    gallery, keys = enrolled.path, enrolled.path.parent / "keys"
    version = enrolled.version
    enrolled.close()
    header = _json("export", "--gallery", gallery, "--keys", keys, "--out", tmp_path / "full.hgb")
    assert header["kind"] == "full" and header["identities"] == len(real_faces.people)
    gate_keys = tmp_path / "gate_keys"
    gate_keys.mkdir(mode=0o700)
    for name in ("data.key", "verify.pem"):
        shutil.copy2(keys / name, gate_keys / name)
    gate = tmp_path / "gate" / "gallery.db"
    result = _json("import", tmp_path / "full.hgb", "--gallery", gate, "--keys", gate_keys,
                   "--model", real_faces.model)
    assert result["upserted"] == len(real_faces.people) and result["bundle"]["version"] == version
    again = _run("import", tmp_path / "full.hgb", "--gallery", gate, "--keys", gate_keys, ok=False)
    assert again.exit_code == 1 and "not newer than version" in again.output
    no_signing = _run("export", "--gallery", gate, "--keys", gate_keys, "--out", tmp_path / "x.hgb", ok=False)
    assert no_signing.exit_code == 1 and "no bundle signing key" in no_signing.output
    inc = _json("export", "--gallery", gallery, "--keys", keys, "--out", tmp_path / "inc.hgb", "--since", version)
    assert inc["kind"] == "incremental" and inc["identities"] == 0
    with GalleryStore.open(gate, _keys(gate_keys), real_faces.model_hash) as store:
        names, probes = real_faces.probes()
        assert (store.search(probes)[0][:, 0] == np.array(names)).mean() >= 0.8


def _keys(folder):
    from hsst.gallery.keys import FileKeys

    return FileKeys.from_dir(folder)


def test_re_embed_through_the_cli(tmp_path, keys, real_faces):
    """A gallery from an older model (stand-in templates) is re-embedded with the shipped ONNX from its kept
    crops; the identity without a kept photo is refused first, dropped with --drop-missing."""
    gallery = tmp_path / "old.db"
    rng = np.random.default_rng(5)
    with GalleryStore.create(gallery, keys, "1" * 64, dim=192) as old:
        for name in real_faces.people:
            old.enrol(name, rng.standard_normal((2, 192)).astype(np.float32), photos=real_faces.crops_of(name)[:2])
        old.enrol("no-photo", rng.standard_normal((1, 192)).astype(np.float32))
    refused = _run("re-embed", "--gallery", gallery, "--keys", tmp_path / "keys", "--model", real_faces.model,
                   ok=False)
    assert refused.exit_code == 1 and "--drop-missing" in refused.output
    report = _json("re-embed", "--gallery", gallery, "--keys", tmp_path / "keys", "--model", real_faces.model,
                   "--drop-missing", "--threads", "1")
    assert report["dropped"] == ["no-photo"] and report["templates"] == 2 * len(real_faces.people)
    assert report["model"] == real_faces.model_hash and report["dim"] == 192
    with GalleryStore.open(gallery, keys, real_faces.model_hash) as store:
        names, probes = real_faces.probes()
        assert (store.search(probes)[0][:, 0] == np.array(names)).mean() >= 0.8


def test_verify_names_a_tampered_row_and_fails(enrolled, real_faces):
    gallery, keys = enrolled.path, enrolled.path.parent / "keys"
    person = real_faces.people[4]
    uid = enrolled.templates(person)[1].id
    enrolled.close()
    conn = sqlite3.connect(str(gallery), isolation_level=None)
    conn.execute("UPDATE templates SET sealed = zeroblob(796) WHERE uid = ?", (uid,))
    conn.close()
    result = _run("verify", "--gallery", gallery, "--keys", keys, "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and any(uid in p and person in p for p in report["problems"])


def test_console_script_errors_are_one_line(tmp_path, keys):
    """The installed command: a missing gallery or a wrong key is one line on stderr, no traceback."""
    script = Path(sys.executable).with_name("hsst-gallery")
    if not script.exists():
        pytest.skip("hsst-gallery is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), "stats", "--gallery", str(tmp_path / "none.db"), "--keys",
                             str(tmp_path / "keys")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: gallery not found")
    help_ = subprocess.run([str(script), "-h"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "re-embed" in help_.stdout
