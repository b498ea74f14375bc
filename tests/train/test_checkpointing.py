"""hsst.train.checkpointing.torch_load: every bad checkpoint file gets one clear message of hsst's own, not torch's
internals (zip reader, the weights-only story) spliced into it."""
from __future__ import annotations

import pytest

from hsst.core.errors import ModelError
from hsst.runtime.model_files import ASSETS_MODELS
from hsst.train.checkpointing import load_train_state
from hsst.train.models import load_probe_checkpoint

SHIPPED = ASSETS_MODELS / "hsst-mobilefacenet-112.pt"
TORCH_INTERNALS = ("miniz", "PytorchStreamReader", "central directory", "Weights only load failed", "WeightsUnpickler")


@pytest.mark.parametrize("make, expected", [
    (lambda raw: raw[: len(raw) // 3], r"the file is truncated \(\d+ bytes, no zip directory\); re-copy or re-create"),
    (lambda raw: b"", r"the file is empty \(0 bytes\)"),
    (lambda raw: b"not a checkpoint at all", r"not a PyTorch checkpoint \(it starts with b'not '\)"),
    (lambda raw: b"\x89PNG\r\n\x1a\n" + raw[8:200], r"not a PyTorch checkpoint \(it starts with b'\\x89PNG'\)"),
])
def test_bad_files_get_one_line_of_hsst_s_own(tmp_path, make, expected):
    bad = tmp_path / "probe_net.pt"
    bad.write_bytes(make(SHIPPED.read_bytes()))
    for load in (lambda: load_probe_checkpoint(bad), lambda: load_train_state(bad)):
        with pytest.raises(ModelError, match=expected) as err:
            load()
        message = str(err.value)
        assert "\n" not in message and str(bad) in message
        assert not any(word in message for word in TORCH_INTERNALS), message


def test_pickled_objects_refused_by_a_weights_only_load(tmp_path):
    import torch

    from hsst.train.checkpointing import torch_load

    path = tmp_path / "objects.pt"
    torch.save({"when": slice(1, 2)}, path)                  # a Python object, not a tensor
    with pytest.raises(ModelError, match="holds pickled Python objects, which a weights-only load refuses") as err:
        torch_load(path, "checkpoint")
    assert not any(word in str(err.value) for word in TORCH_INTERNALS)
    assert torch_load(path, "checkpoint", weights_only=False)["when"] == slice(1, 2)


def test_a_good_file_loads():
    from hsst.train.checkpointing import torch_load

    assert torch_load(SHIPPED, "probe-net checkpoint")["meta"]["name"]
