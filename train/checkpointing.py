"""Resume checkpoints: the full training state, written atomically, and the RNG states inside it.

Layout of a run folder (``--out``)::

    probe_net.pt        the deployable probe-net (save_probe_checkpoint: weights + ModelMeta), final model
    last.ckpt           the resume state of the latest save (everything :class:`TrainState` holds)
    config.json         the resolved TrainConfig
    train_log.jsonl     one JSON line per step
    train.log           the console log

Every write goes to a temporary file in the same folder and is moved over the target with ``os.replace``,
which is atomic on POSIX and Windows: a process killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import logging
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from hsst.core.errors import ModelError
from hsst.core.files import atomic_write

logger = logging.getLogger(__name__)

RESUME_NAME = "last.ckpt"
PROBE_NAME = "probe_net.pt"
FORMAT = "hsst-train-state"
FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> Path:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace`` (never a half-written file)."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def _not_a_checkpoint(path: Path) -> Optional[str]:
    """Why ``path`` cannot be a ``torch.save`` file, from its first bytes and its zip directory; None if it may be."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":  # torch >= 1.6 writes a zip archive; its directory is at the very end
        return None if zipfile.is_zipfile(path) else f"the file is truncated ({size} bytes, no zip directory)"
    if head[:1] == b"\x80":  # the legacy format: a pickle
        return None
    return f"not a PyTorch checkpoint (it starts with {head!r})"


def torch_load(path: Union[str, Path], what: str, map_location: Any = "cpu", weights_only: bool = True) -> Any:
    """``torch.load`` with one clear :class:`ModelError` for a missing, empty, truncated, corrupt or foreign file.

    torch's own reasons (zip internals, the weights-only story) go to the debug log, not into the message.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    problem = _not_a_checkpoint(path)
    if problem:
        raise ModelError(f"cannot read {what} {path}: {problem}; re-copy or re-create it")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for bad files
        logger.debug("torch.load(%s) failed", path, exc_info=True)
        if weights_only and isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            raise ModelError(f"{what} {path} holds pickled Python objects, which a weights-only load refuses; if the "
                             "file is from a source you trust, load it with weights_only=False") from exc
        raise ModelError(f"cannot read {what} {path}: the file is corrupt ({type(exc).__name__} while unpacking "
                         "it); re-copy or re-create it") from exc


def capture_rng_state() -> Dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) RNG states."""
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_to_tuple(state["python"]))
    np.random.set_state(_to_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_tuple(value: Any) -> Any:
    # states may come back with lists instead of tuples after a round trip through other serialisers
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def save_train_state(path: Union[str, Path], state: Dict[str, Any]) -> Path:
    """Write a resume checkpoint (``state`` plus the format tag), atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    return atomic_torch_save(payload, path)


def load_train_state(path: Union[str, Path], map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a resume checkpoint written by :func:`save_train_state`.

    Raises:
        ModelError: missing, truncated or foreign file, or a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no resume checkpoint at {path}; start without --resume, or point --out at the "
                         "folder of the run to continue")
    # the state holds numpy RNG arrays and Python tuples: our own file, so full unpickling is fine
    state = torch_load(path, "resume checkpoint", map_location, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelError(f"{path} is not an hsst training state (format {FORMAT!r})")
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{path}: training state format {state['format_version']} is newer than this hsst "
                         f"({FORMAT_VERSION}); upgrade hsst")
    return state
