"""Keys: keygen's files and modes, 0600 enforced with the chmod in the message, env variables, bad key text."""
import os
import stat

import pytest

from hsst.core.errors import ConfigError
from hsst.gallery.errors import KeySourceError
from hsst.gallery.keys import (ENV_DATA_KEY, ENV_SIGNING_KEY, ENV_VERIFY_KEY, EnvKeys, FileKeys, generate_keys,
                               key_id, keys_from, public_key_id)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_private_files_0600_and_never_overwrites(tmp_path):
    old = os.umask(0o022)  # a permissive umask must not widen the secret files
    try:
        written = generate_keys(tmp_path / "k")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o700
    assert _mode(written["data"]) == 0o600 and _mode(written["signing"]) == 0o600
    assert _mode(written["verify"]) == 0o644
    keys = FileKeys.from_dir(tmp_path / "k")
    assert len(keys.data_key()) == 32
    assert public_key_id(keys.verify_key()) == public_key_id(keys.signing_key().public_key())
    before = written["data"].read_bytes()
    with pytest.raises(KeySourceError, match="refusing to overwrite"):
        generate_keys(tmp_path / "k")
    assert written["data"].read_bytes() == before
    assert not [p for p in (tmp_path / "k").iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_is_refused_with_the_fix(tmp_path, mode):
    generate_keys(tmp_path / "k", signing=False)
    path = tmp_path / "k" / "data.key"
    os.chmod(path, mode)
    with pytest.raises(KeySourceError, match=f"chmod 600 {path}") as info:
        FileKeys.from_dir(tmp_path / "k").data_key()
    assert isinstance(info.value, ConfigError)  # callers catching the shared kind still catch it
    assert path.read_text().strip() not in str(info.value)  # never the key itself


def test_signing_key_mode_is_enforced_too(tmp_path):
    generate_keys(tmp_path / "k")
    os.chmod(tmp_path / "k" / "signing.pem", 0o644)
    with pytest.raises(KeySourceError, match="chmod 600"):
        FileKeys.from_dir(tmp_path / "k").signing_key()


def test_missing_and_malformed_key_files_say_what_to_do(tmp_path):
    with pytest.raises(KeySourceError, match="key folder not found.*keygen"):
        FileKeys.from_dir(tmp_path / "nowhere")
    folder = tmp_path / "k"
    folder.mkdir()
    with pytest.raises(KeySourceError, match="key file not found.*keygen"):
        FileKeys.from_dir(folder).data_key()
    bad = folder / "data.key"
    bad.write_text("not a key\n")
    os.chmod(bad, 0o600)
    with pytest.raises(KeySourceError, match="64 hex characters"):
        FileKeys.from_dir(folder).data_key()
    with pytest.raises(KeySourceError, match="no bundle signing key"):
        FileKeys(bad).signing_key()
    with pytest.raises(KeySourceError, match="no bundle verify key.*verify.pem"):
        FileKeys(bad).verify_key()


def test_environment_keys_hex_and_pem(tmp_path):
    generate_keys(tmp_path / "k")
    files = FileKeys.from_dir(tmp_path / "k")
    env = {ENV_DATA_KEY: files.data_key().hex(),
           ENV_SIGNING_KEY: (tmp_path / "k" / "signing.pem").read_text(),
           ENV_VERIFY_KEY: (tmp_path / "k" / "verify.pem").read_text()}
    keys = EnvKeys(env)
    assert keys.data_key() == files.data_key()
    assert public_key_id(keys.verify_key()) == public_key_id(files.verify_key())
    message = b"bundle header"
    files.verify_key().verify(keys.signing_key().sign(message), message)
    # raw 32-byte keys as hex work as well (one line in a unit file)
    from cryptography.hazmat.primitives import serialization

    raw = files.verify_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public_key_id(EnvKeys({ENV_VERIFY_KEY: raw.hex()}).verify_key()) == public_key_id(files.verify_key())
    with pytest.raises(KeySourceError, match=f"{ENV_DATA_KEY} is not set"):
        EnvKeys({}).data_key()
    with pytest.raises(KeySourceError, match=f"environment variable {ENV_SIGNING_KEY} is neither"):
        EnvKeys({ENV_SIGNING_KEY: "xyz"}).signing_key()


def test_keys_from_picks_folder_then_environment(tmp_path):
    generate_keys(tmp_path / "k", signing=False)
    assert isinstance(keys_from(tmp_path / "k", environ={}), FileKeys)
    assert isinstance(keys_from(None, environ={ENV_DATA_KEY: "00" * 32}), EnvKeys)
    with pytest.raises(KeySourceError, match="--keys DIR.*HSST_GALLERY_KEY"):
        keys_from(None, environ={})


def test_key_id_names_a_key_without_revealing_it():
    key = bytes(range(32))
    assert key_id(key) == key_id(bytes(range(32))) != key_id(bytes(32))
    assert key.hex() not in key_id(key) and len(key_id(key)) == 16
