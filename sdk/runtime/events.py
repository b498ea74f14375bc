"""Gate events: what happened (accept, unknown, source faults), delivered to callbacks and a JSONL log."""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import cv2
import numpy as np

from hsst.core.errors import ConfigError

logger = logging.getLogger(__name__)

ACCEPT = "accept"
UNKNOWN = "unknown"
SOURCE = "source"


@dataclass
class Event:
    """One gate event.

    Attributes:
        kind: ``accept``, ``unknown`` or ``source`` (camera lost / reconnected / gave up).
        time: wall-clock time (UNIX seconds).
        track_id: the face track (None for source events).
        identity: accepted identity (None for unknown / source events).
        score: cosine similarity behind the decision (mean of the matching votes; best score for unknown).
        far: configured false-accept rate.
        threshold: cosine threshold in force.
        frame_index: frame of the deciding embedding.
        bbox: face box (x1, y1, x2, y2) in that frame.
        votes: matching votes and window, e.g. ``{"n": 2, "m": 3, "matches": 2}``.
        candidates: top-k (identity, score) of the deciding embedding.
        timings: milliseconds: ``face_to_decision`` (track start -> decision) and per-stage timings.
        message: human-readable text (source events).
        crop: aligned face crop when ``decision.include_crop`` is on (JPEG/base64 in the JSONL log).
    """

    kind: str
    time: float = field(default_factory=time.time)
    track_id: Optional[int] = None
    identity: Optional[str] = None
    score: Optional[float] = None
    far: Optional[float] = None
    threshold: Optional[float] = None
    frame_index: Optional[int] = None
    bbox: Optional[List[float]] = None
    votes: Dict[str, int] = field(default_factory=dict)
    candidates: List[List[Any]] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    message: str = ""
    crop: Optional[np.ndarray] = None

    def to_dict(self, with_crop: bool = True) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "crop"}
        if with_crop and self.crop is not None:
            ok, buf = cv2.imencode(".jpg", self.crop)
            if ok:
                out["crop_jpeg_b64"] = base64.b64encode(buf.tobytes()).decode("ascii")
        return out


EventCallback = Callable[[Event], None]


class EventBus:
    """Fan-out of events to callbacks; a failing callback is logged and never stops the pipeline."""

    def __init__(self) -> None:
        self._callbacks: List[EventCallback] = []
        self._lock = threading.Lock()
        self.errors = 0

    def subscribe(self, callback: EventCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def unsubscribe(self, callback: EventCallback) -> None:
        with self._lock:
            self._callbacks.remove(callback)

    def emit(self, event: Event) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                self.errors += 1
                logger.exception("event callback %r failed on a %s event", callback, event.kind)


class JsonlEventLog:
    """Appends events as one JSON object per line (flushed per event, so a crash loses nothing).

    Args:
        path: log file (parent folders are created).
        with_crop: embed event crops as base64 JPEG.
    """

    def __init__(self, path: Union[str, Path], with_crop: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the event log {self.path}: {exc}; set events.jsonl to a writable "
                              "path (or null)") from exc
        self._lock = threading.Lock()
        self.with_crop = with_crop

    def __call__(self, event: Event) -> None:
        line = json.dumps(event.to_dict(self.with_crop), default=_json_default)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_events(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Events of a JSONL log, in order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
