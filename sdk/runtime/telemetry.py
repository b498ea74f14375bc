"""Pipeline telemetry: fps, per-stage latency percentiles, queue depths, drops, bad frames, reconnects.

The gate's operational counters, not biometric metrics (those are :mod:`hsst.eval.metrics`).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Deque, Dict, Optional

import numpy as np


class Metrics:
    """Thread-safe counters and latency reservoirs (the last ``window`` samples per stage).

    Args:
        window: samples kept per latency series.
        fps_window_s: horizon of the frames-per-second estimate.
    """

    def __init__(self, window: int = 2000, fps_window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._fps_window_s = fps_window_s
        self.counters: Dict[str, int] = collections.defaultdict(int)
        self._latency: Dict[str, Deque[float]] = {}
        self._frame_times: Deque[float] = collections.deque()
        self._queues: Dict[str, Callable[[], int]] = {}
        self._gauges: Dict[str, Callable[[], int]] = {}
        self.started = time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def observe(self, stage: str, seconds: float) -> None:
        """Record one latency sample of ``stage``."""
        with self._lock:
            series = self._latency.get(stage)
            if series is None:
                series = self._latency[stage] = collections.deque(maxlen=self._window)
            series.append(seconds)

    def frame_done(self, now: Optional[float] = None) -> None:
        """A frame left the pipeline (fps counts these)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.counters["frames_processed"] += 1
            self._frame_times.append(now)
            while self._frame_times and now - self._frame_times[0] > self._fps_window_s:
                self._frame_times.popleft()

    def watch_queue(self, name: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the depth of queue ``name`` in snapshots."""
        self._queues[name] = depth

    def watch_counter(self, name: str, value: Callable[[], int]) -> None:
        """Report ``value()`` as counter ``name`` (counts kept by another object, e.g. queue drops)."""
        self._gauges[name] = value

    def fps(self) -> float:
        with self._lock:
            times = list(self._frame_times)
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def percentiles(self, stage: str) -> Dict[str, float]:
        """p50 / p95 / max in milliseconds and the sample count of ``stage``."""
        with self._lock:
            values = np.array(self._latency.get(stage, ()), dtype=np.float64)
        if values.size == 0:
            return {"p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0, "n": 0}
        p50, p95 = np.percentile(values, (50, 95)) * 1000.0
        return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
                "max_ms": round(float(values.max() * 1000.0), 2), "n": int(values.size)}

    def snapshot(self) -> Dict[str, object]:
        """Everything, JSON-ready."""
        with self._lock:
            stages = list(self._latency)
            counters = dict(self.counters)
        counters.update({name: value() for name, value in self._gauges.items()})
        return {
            "uptime_s": round(time.monotonic() - self.started, 2),
            "fps": round(self.fps(), 2),
            "counters": counters,
            "latency": {s: self.percentiles(s) for s in stages},
            "queues": {name: depth() for name, depth in self._queues.items()},
        }
