"""``hsst.Gate``: the Python API for gate firmware, in one class.

Everything a firmware author needs: build from a config file, start and stop the streaming gate (a context
manager), receive decisions on a callback, identify a single image, enrol people, manage the gallery::

    with Gate.from_config("firmware_configs/laptop-cpu.yaml") as gate:
        gate.on_decision(lambda event: open_door() if event.kind == "accept" else None)
        gate.enroll("E1042", ["ada_1.jpg", "ada_2.jpg"], name="Ada Lovelace")
        time.sleep(60)

Threads: the pipeline runs on its own threads; callbacks run on one dispatcher thread fed by a queue, never on
the capture or pipeline threads (a slow callback delays later callbacks, not frames), and a callback that
raises is logged and the gate goes on. :meth:`identify` and :meth:`enroll` may be called from any number of
threads while the gate runs; a template enrolled is searched by the next frame.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hsst.core.errors import InputError
from hsst.core.image import read_image
from hsst.runtime.config import GateConfig, load_config
from hsst.runtime.enroll import EnrollReport
from hsst.runtime.events import Event
from hsst.runtime.gallery import Gallery
from hsst.runtime.pipeline import GatePipeline
from hsst.runtime.sources import FrameSource

logger = logging.getLogger(__name__)

DecisionCallback = Callable[[Event], None]
_STOP = object()


@dataclass(frozen=True)
class Match:
    """One face of an identified image.

    Attributes:
        identity: the accepted identity, or None (unknown, or the face failed the quality gate).
        score: cosine of the best candidate (None: empty gallery).
        accepted: ``identity`` is set: the best candidate is at or above the threshold.
        threshold: the cosine threshold of the configured FAR.
        bbox: face box x1, y1, x2, y2 in image pixels.
        candidates: top-k ``(identity, cosine)``, best first.
        quality: the face's quality verdict (``passed``, ``reasons``, measures).
    """

    identity: Optional[str]
    score: Optional[float]
    accepted: bool
    threshold: float
    bbox: Tuple[float, float, float, float]
    candidates: List[Tuple[str, float]] = field(default_factory=list)
    quality: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> "Match":
        """From one face record of :meth:`GatePipeline.identify` (the gate's one decision path)."""
        return cls(record["identity"], record["score"], record["accepted"], record["threshold"],
                   tuple(record["bbox"]), [(c, s) for c, s in record["candidates"]], record["quality"])

    def to_dict(self) -> Dict[str, Any]:
        return {"identity": self.identity, "score": self.score, "accepted": self.accepted,
                "threshold": self.threshold, "bbox": list(self.bbox),
                "candidates": [list(c) for c in self.candidates], "quality": self.quality}


class CallbackDispatcher:
    """Runs decision callbacks on its own thread, from a queue: the pipeline only enqueues.

    A callback that raises is logged (with its traceback) and counted in ``errors``; the others still run.
    """

    def __init__(self) -> None:
        self._callbacks: List[DecisionCallback] = []
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.errors = 0

    def add(self, callback: DecisionCallback) -> None:
        if not callable(callback):
            raise InputError(f"on_decision needs a callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks = self._callbacks + [callback]  # copy on write: the dispatcher reads without a lock

    def submit(self, event: Event) -> None:
        """Called on the pipeline's thread: enqueue, never run the callbacks here."""
        self._queue.put(event)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="hsst-callbacks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, then end the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            for callback in self._callbacks:
                try:
                    callback(event)
                except Exception:
                    self.errors += 1
                    logger.exception("decision callback %r failed on a %s event; the gate goes on",
                                     getattr(callback, "__name__", callback), event.kind)


class Gate:
    """The gate as firmware sees it: a streaming pipeline, its gallery, decisions on callbacks.

    Args:
        config: the gate configuration (``gallery.path`` set: the encrypted store; else memory only).
        source: frames for :meth:`start` (None: ``config.source``, opened and reconnected by the gate).
        pipeline_options: passed to :class:`GatePipeline` (``embedder``, ``finder``, ``gallery``).

    Raises:
        ConfigError, ModelError, ModelMismatch, WrongKey...: what the configuration, model or store refuse.
    """

    def __init__(self, config: GateConfig, source: Optional[FrameSource] = None, **pipeline_options: Any) -> None:
        self.config = config
        self.pipeline = GatePipeline(config, **pipeline_options)
        self._source = source
        self._dispatcher = CallbackDispatcher()
        self.pipeline.events.subscribe(self._on_event)
        self._run_thread: Optional[threading.Thread] = None
        self._api_lock = threading.Lock()  # API face-path calls one at a time (the pipeline has its own threads)
        self.metrics: Dict[str, Any] = {}
        if config.gallery.enroll_dir:
            self.pipeline.enroll_dir(config.gallery.enroll_dir)

    @classmethod
    def from_config(cls, path: Union[str, Path, None], overrides: Optional[Dict[str, Any]] = None,
                    source: Optional[FrameSource] = None, **pipeline_options: Any) -> "Gate":
        """A gate from a YAML config file (``overrides``: dotted keys, e.g. ``{"gallery.path": "g.db"}``)."""
        return cls(load_config(path, overrides), source=source, **pipeline_options)

    # -- running -------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._run_thread is not None and self._run_thread.is_alive()

    def start(self) -> "Gate":
        """Start the streaming gate on background threads; returns at once."""
        if self.running:
            raise InputError("the gate is already running; call stop() first")
        self._dispatcher.start()
        self._run_thread = threading.Thread(target=self._run, name="hsst-gate", daemon=True)
        self._run_thread.start()
        return self

    def _run(self) -> None:
        try:
            self.metrics = self.pipeline.run(source=self._source)
        except Exception:
            logger.exception("the gate stopped on an error")

    def stop(self, timeout: float = 10.0) -> Dict[str, Any]:
        """Stop the pipeline, deliver the queued decisions, and return the final metrics."""
        self.pipeline.stop()
        if self._run_thread is not None:
            self._run_thread.join(timeout)
            self._run_thread = None
        self._dispatcher.stop()
        return self.metrics

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the source ends (files, folders) or :meth:`stop`; True when the gate has stopped."""
        if self._run_thread is not None:
            self._run_thread.join(timeout)
        return not self.running

    def close(self) -> None:
        """Stop if running, then release the models and the gallery store."""
        self.stop()
        self.pipeline.close()

    def __enter__(self) -> "Gate":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions -----------------------------------------------------------------------------------------
    def on_decision(self, callback: DecisionCallback) -> DecisionCallback:
        """Call ``callback(event)`` for every decision (``event.kind``: ``accept`` / ``unknown`` / ``source``).

        Runs on the gate's dispatcher thread, never the capture thread; an exception is logged and ignored.
        Usable as a decorator.
        """
        self._dispatcher.add(callback)
        return callback

    @property
    def callback_errors(self) -> int:
        """Callbacks that raised so far."""
        return self._dispatcher.errors

    def _on_event(self, event: Event) -> None:
        self._dispatcher.submit(event)

    # -- single images and enrolment ----------------------------------------------------------------------
    def identify(self, image: Union[np.ndarray, str, Path]) -> List[Match]:
        """Every face of one image (array or file) with the gate's decision at the configured FAR."""
        if not isinstance(image, np.ndarray):
            image = read_image(image)
        with self._api_lock:
            return [Match.from_record(r) for r in self.pipeline.identify(image)]

    def enroll(self, identity: str, photos: Sequence[Union[str, Path, np.ndarray]], *, name: Optional[str] = None,
               attributes: Optional[Dict[str, Any]] = None) -> EnrollReport:
        """Enrol ``identity`` from VIS photos (one face each; size, blur, pose, exposure and no-mask checks).

        Returns:
            The report: per-photo verdicts with reasons, templates stored, and ``duplicates`` (other identities
            the face already matches above the threshold; logged as a warning). Searchable by the next frame.
        """
        if isinstance(photos, (str, Path, np.ndarray)):
            photos = [photos]
        threshold = self.pipeline.threshold if self.config.gallery.duplicate_check else None
        with self._api_lock:
            return self.pipeline.enroller().enroll(self.gallery, identity, photos, name=name, attributes=attributes,
                                                   threshold=threshold)

    # -- gallery --------------------------------------------------------------------------------------------
    @property
    def gallery(self) -> Gallery:
        """The gallery (a :class:`hsst.gallery.GalleryStore` when ``gallery.path`` is set)."""
        return self.pipeline.gallery

    def identities(self) -> List[str]:
        """Enrolled identity ids."""
        return list(self.gallery.identities)

    def remove(self, identity: str) -> bool:
        """Remove an identity and its templates (the next frame no longer finds it); False when absent."""
        return self.gallery.remove(identity)

    def import_bundle(self, path: Union[str, Path], *, new_source: bool = False) -> Dict[str, Any]:
        """Apply a signed gallery bundle from the enrolment station (``hsst-gallery export``), atomically.

        The signature is checked against the public key in ``gallery.keys_dir``; bundles for another model, older
        than the gallery's version, or (without ``new_source``) from another station are refused and nothing
        changes. A full bundle replaces the gallery, people enrolled at this gate included; an incremental one
        adds and removes what changed. Searchable by the next frame, also while the gate runs.

        Returns:
            ``{"bundle": header, "upserted": n, "removed": n, "templates": n}``.

        Raises:
            InputError: the gate has no encrypted store (``gallery.path`` unset).
            BundleError, ModelMismatch, WrongKey: see :func:`hsst.gallery.bundle.import_bundle`.
        """
        from hsst.gallery import GalleryStore
        from hsst.gallery.bundle import import_bundle
        from hsst.runtime.gallery import gallery_keys

        if not isinstance(self.gallery, GalleryStore):
            raise InputError("import_bundle needs the encrypted gallery store: set gallery.path (and gallery.keys_dir "
                             "holding the station's public key) in the gate config")
        return import_bundle(self.gallery, path, gallery_keys(self.config.gallery), new_source=new_source,
                             actor="hsst.Gate.import_bundle")

    def __contains__(self, identity: object) -> bool:
        return identity in self.gallery

    def __len__(self) -> int:
        return len(self.gallery)
