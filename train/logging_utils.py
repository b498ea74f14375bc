"""Training logs: the per-step JSONL log, console + file logging, and the progress bar."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from tqdm import tqdm
from hsst.core.files import atomic_write_text

LOG_NAME = "train_log.jsonl"
TEXT_LOG_NAME = "train.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonlLogger:
    """Appends one JSON object per line; on resume the lines past the resumed iteration are dropped.

    Args:
        path: the log file (``<out>/train_log.jsonl``).
        resume_from: iteration the run continues from; lines with ``iter`` > it (written after the last
            checkpoint by a run that was then killed) are removed so the log equals an uninterrupted run's.
            None starts a fresh log.
    """

    def __init__(self, path: Union[str, Path], resume_from: Optional[int] = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is None:
            self.path.write_text("", encoding="utf-8")
        else:
            kept = [r for r in read_jsonl(self.path) if int(r.get("iter", 0)) <= resume_from]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: Dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_jsonl(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Records of a JSONL log (a missing file is an empty log; a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a killed process ends the usable log
    return out


def setup_run_logging(out_dir: Optional[Path], is_main: bool, level: int = logging.INFO) -> List[logging.Handler]:
    """Log ``hsst`` records to the console and to ``<out>/train.log`` (rank 0 only writes the file).

    Returns:
        The handlers added (removed again by :func:`teardown_run_logging`).
    """
    root = logging.getLogger("hsst")
    if not is_main:  # other ranks only report problems
        root.setLevel(logging.WARNING)
    elif root.level == logging.NOTSET:
        root.setLevel(level)
    handlers: List[logging.Handler] = []
    if not any(getattr(h, "_hsst_console", False) for h in root.handlers) and not logging.getLogger().handlers:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        console._hsst_console = True  # type: ignore[attr-defined]
        handlers.append(console)
    if is_main and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out_dir / TEXT_LOG_NAME, encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(fh)
    for h in handlers:
        root.addHandler(h)
    return handlers


def teardown_run_logging(handlers: List[logging.Handler]) -> None:
    root = logging.getLogger("hsst")
    for h in handlers:
        root.removeHandler(h)
        h.close()


class Progress:
    """tqdm bar over iterations with loss, lr and images/s; ETA comes from tqdm's rate."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str) -> None:
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="it",
                        dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int, record: Dict[str, Any]) -> None:
        self.bar.update(n)
        loss = record.get("loss", math.nan)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record.get('lr', 0):.2e}",
                             img_s=f"{record.get('images_per_s', 0):.1f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
