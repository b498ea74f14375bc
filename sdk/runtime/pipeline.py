"""The streaming gate: capture -> detect -> track -> align -> embed -> search -> decide.

Three threads joined by queues; they share no mutable state, only the values they pass::

    capture thread --frames--> detect/track/align thread --work--> embed/search/decide thread --> events
                                          ^------------- decisions (track id, decided) --------'

When a live source runs ahead of the pipeline the OLDEST queued item is dropped (latency first) and
counted. A bad frame (wrong shape or dtype, empty) or a failing stage is logged and counted, never fatal to
its thread. Detection runs boxes-only on every frame; landmarks (the face mesh) run only for the faces the
tracker schedules for embedding, so a person standing at the gate costs little. The tracker belongs to the
detect thread: the decisions that set a track's embedding rate come back to it as messages.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from hsst.core.errors import InputError
from hsst.core.image import check_frame, to_uint8
from hsst.face.cropper import FaceCropper
from hsst.face.finder import FaceFinder
from hsst.face.types import Face
from hsst.runtime.config import DetectorConfig, GateConfig
from hsst.runtime.decision import DecisionMaker, Verdict, resolve_threshold
from hsst.runtime.embedder import Embedder
from hsst.runtime.events import ACCEPT, SOURCE, Event, EventBus, JsonlEventLog
from hsst.runtime.gallery import Gallery, InMemoryGallery, open_store
from hsst.runtime.telemetry import Metrics
from hsst.runtime.quality import FaceQuality, QualityAssessor
from hsst.runtime.sources import FrameSource, ReconnectingSource, SourceError, make_source
from hsst.runtime.tracker import IoUTracker, Track

logger = logging.getLogger(__name__)

_END = object()


def display_available() -> bool:
    """Whether a window can be opened (Qt builds of OpenCV abort the process without a display)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


# ------------------------------------------------------------------------------------------- detection
def create_face_detector(config: DetectorConfig) -> Any:
    """The :class:`hsst.face.FaceDetector` a gate config describes (the gate's and hsst-eval's detector)."""
    from hsst.core.errors import ModelError
    from hsst.face import FaceDetector

    options = dict(config.options)
    if config.model_dir:
        options["model_dir"] = config.model_dir
    common = dict(det_thresh=config.det_thresh, nms_thresh=config.nms_thresh, min_face=config.min_face,
                  threads=config.threads, **options)
    variants = ("blazeface_full", "blazeface_short") if config.variant == "both" else config.variant
    if config.model in ("auto", "blazeface"):
        try:
            return FaceDetector("blazeface", models=variants, backend=config.backend, normalize=config.normalize,
                                retry_below=config.retry_below, **common)
        except ModelError:
            if config.model == "blazeface" or config.backend == "tensorrt":
                raise
            logger.warning("BlazeFace models unavailable; falling back to MTCNN")
    return FaceDetector("mtcnn", **common)


def create_face_finder(config: DetectorConfig) -> FaceFinder:
    """The gate's :class:`hsst.face.FaceFinder` (boxes every frame, landmarks on demand) for a detector config."""
    return FaceFinder(create_face_detector(config))


# --------------------------------------------------------------------------------------------- records
@dataclass
class FaceResult:
    """One tracked face in a processed frame.

    Attributes:
        track_id: tracker id.
        bbox: x1, y1, x2, y2.
        det_score: detector score.
        kps: landmarks when computed this frame.
        quality: quality when assessed this frame.
        embedded: an embedding was computed this frame.
        candidates: top-k (identity, score) when embedded.
        identity: identity accepted for this track so far (None: undecided or unknown).
    """

    track_id: int
    bbox: np.ndarray
    det_score: float
    kps: Optional[np.ndarray] = None
    quality: Optional[FaceQuality] = None
    embedded: bool = False
    candidates: List[Tuple[str, float]] = field(default_factory=list)
    identity: Optional[str] = None


@dataclass
class FrameResult:
    """What the pipeline made of one frame."""

    frame_index: int
    timestamp: float
    faces: List[FaceResult] = field(default_factory=list)
    events: List[Event] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    image: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass(frozen=True)
class _Chosen:
    """A face picked for embedding, as values: the detect thread moves its track on meanwhile."""

    track_id: int
    crop: np.ndarray
    first_time: float      # capture time of the track's first frame
    usable_time: float     # capture time of the track's first quality-passing face


@dataclass
class _Work:
    """Detect-stage output handed to the embed stage (which then owns it)."""

    result: FrameResult
    chosen: List[_Chosen]
    ended: List[int]


class DecisionMailbox:
    """Embed stage -> detect stage: whether a voted track holds a decision (it sets the track's embedding rate).

    The tracker belongs to the detect thread; the embed thread posts here instead of writing into its tracks.
    """

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[Tuple[int, bool]]" = queue.SimpleQueue()

    def post(self, track_id: int, decided: bool) -> None:
        self._queue.put((track_id, decided))

    def drain(self) -> Dict[int, bool]:
        """The latest state per track posted since the last drain."""
        latest: Dict[int, bool] = {}
        while True:
            try:
                track_id, decided = self._queue.get_nowait()
            except queue.Empty:
                return latest
            latest[track_id] = decided


class DropQueue:
    """Bounded FIFO; when full, ``put`` drops the OLDEST item (``drop_oldest``) or waits for room."""

    def __init__(self, maxsize: int, drop_oldest: bool) -> None:
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._drop = drop_oldest
        self._cond = threading.Condition()
        self.dropped = 0
        self._closed = False

    def put(self, item: Any) -> bool:
        """Queue ``item``; True when an older item was dropped to make room."""
        with self._cond:
            dropped = False
            while len(self._items) >= self._maxsize and not self._closed:
                if self._drop and self._items[0] is not _END:
                    self._items.popleft()
                    self.dropped += 1
                    dropped = True
                else:
                    self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float = 0.1) -> Any:
        """Next item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


# -------------------------------------------------------------------------------------------- pipeline
class GatePipeline:
    """The gate: owns detector, tracker, quality gate, embedder, gallery, decisions, events and metrics.

    Args:
        config: the gate configuration.
        embedder: embedding model (None: built from ``config.embedder``).
        finder: face detector (None: built from ``config.detector``).
        gallery: enrolled identities (None: the store of ``config.gallery.path``, opened with its keys and bound
            to the configured model, or an empty :class:`InMemoryGallery` when no path is set).

    Example:
        >>> gate = GatePipeline(load_config("firmware_configs/laptop-cpu.yaml"))
        >>> gate.enroll_dir("enrol/")
        >>> gate.events.subscribe(print)
        >>> gate.run(duration=60)
    """

    def __init__(self, config: GateConfig, embedder: Optional[Embedder] = None, finder: Optional[FaceFinder] = None,
                 gallery: Optional[Gallery] = None) -> None:
        self.config = config
        self._own_embedder = embedder is None
        self.embedder = embedder or Embedder.from_config(config.embedder)
        self.finder = finder or create_face_finder(config.detector)
        self._own_gallery = gallery is None
        try:
            self.gallery = gallery if gallery is not None else self._open_gallery()
        except BaseException:
            if self._own_embedder:
                self.embedder.close()
            raise
        self.threshold, self.threshold_origin = resolve_threshold(self.embedder.meta, config.decision)
        self.tracker = IoUTracker(config.tracker)
        self.quality = QualityAssessor(config.quality)
        self.cropper = FaceCropper.for_model(self.finder, self.embedder.meta.preprocess, self.quality)
        self.decider = DecisionMaker(config.decision, self.threshold)
        self._decisions = DecisionMailbox()
        #: embed stage only: capture time from which a withdrawn track is being decided again
        self._restarted: Dict[int, float] = {}
        self.metrics = Metrics()
        self.events = EventBus()
        self.events.subscribe(self._count_event)
        self._log: Optional[JsonlEventLog] = None
        if config.events.jsonl:
            self._log = JsonlEventLog(config.events.jsonl, with_crop=config.decision.include_crop)
            self.events.subscribe(self._log)
        self._stop = threading.Event()
        self._frame_index = 0
        self.latest: Optional[FrameResult] = None
        #: why the last :meth:`run` lost its source for good (None: it did not)
        self.source_error: Optional[str] = None
        logger.info("gate: model %s, threshold %.3f for FAR %g (%s), %d enrolled", self.embedder.meta.name,
                    self.threshold, config.decision.far, self.threshold_origin, len(self.gallery))

    def _open_gallery(self) -> Gallery:
        """The store of ``gallery.path`` (bound to the configured model's hash), else an in-memory gallery."""
        if not self.config.gallery.path:
            return InMemoryGallery(self.embedder.dim)
        from hsst.runtime.model_files import resolve_model

        model_path, _ = resolve_model(self.config.embedder.model)
        return open_store(self.config.gallery, model_path, self.embedder.dim)

    @property
    def persistent(self) -> bool:
        """Whether the gallery outlives the process (a store file, not memory)."""
        return not isinstance(self.gallery, InMemoryGallery)

    # -- enrolment ------------------------------------------------------------------------------------------
    def enroller(self):
        from hsst.runtime.enroll import Enroller

        return Enroller(self.finder, self.embedder, self.config.quality, self.config.gallery.min_enroll_quality)

    def enroll_dir(self, folder) -> list:
        """Enrol every identity of ``folder`` (see :meth:`hsst.runtime.enroll.Enroller.enroll_dir`); with a
        store, identities it already holds are skipped (a demo restarted does not enrol its photos twice)."""
        skip = set(self.gallery.identities) if self.persistent else set()
        return self.enroller().enroll_dir(self.gallery, folder, skip=skip)

    # -- stages ---------------------------------------------------------------------------------------------
    def _count_event(self, event: Event) -> None:
        self.metrics.count(f"events_{event.kind}")

    def detect_stage(self, image: Any, frame_index: int, timestamp: float) -> Optional[_Work]:
        """Validate, detect, track, pick faces to embed, landmark + align + quality them.

        Returns None (and counts ``bad_frames``) for an invalid frame.
        """
        t0 = time.perf_counter()
        if not self._valid(image, frame_index):
            return None
        self._take_decisions()
        result = FrameResult(frame_index, timestamp, image=image)
        tracks, aux_of = self._track(image, result, t0)
        ended = [t.track_id for t in self.tracker.pop_finished()]
        t1 = time.perf_counter()
        chosen = self._crop_tracks(image, tracks, aux_of, result)
        result.timings["align"] = time.perf_counter() - t1
        self.metrics.observe("detect", result.timings.get("detect", 0.0))
        self.metrics.observe("align", result.timings["align"])
        return _Work(result, chosen, ended)

    def _valid(self, image: Any, frame_index: int) -> bool:
        try:
            check_frame(image, f"frame {frame_index}")
            if min(image.shape[:2]) < 16:
                raise InputError(f"frame {frame_index} is {image.shape[1]}x{image.shape[0]} px; too small")
        except InputError as exc:
            self.metrics.count("bad_frames")
            logger.warning("skipping bad frame: %s", exc)
            return False
        return True

    def _take_decisions(self) -> None:
        """Apply the decisions the embed stage posted to the tracks (this thread's own objects)."""
        latest = self._decisions.drain()
        for track in self.tracker.tracks:
            track.decided = latest.get(track.track_id, track.decided)

    def _track(self, image: np.ndarray, result: FrameResult, t0: float) -> Tuple[List[Track], Dict[int, np.ndarray]]:
        """Tracks seen in this frame and their detector keypoints (none on a frame without detection)."""
        if result.frame_index % self.config.detector.every_n_frames:
            self.tracker.coast()
            return [], {}
        boxes, scores, aux = self.finder.boxes(image)
        result.timings["detect"] = time.perf_counter() - t0
        tracks = self.tracker.update(boxes, scores, None, result.frame_index, result.timestamp)
        return tracks, {t.track_id: aux[t.det_index] for t in tracks}

    def _crop_tracks(self, image: np.ndarray, tracks: List[Track], aux_of: Dict[int, np.ndarray],
                     result: FrameResult) -> List[_Chosen]:
        """Report every track; crop the ones the tracker schedules and the quality gate passes."""
        frame: Optional[np.ndarray] = None
        chosen = []
        for track in tracks:
            face = FaceResult(track.track_id, track.bbox.copy(), track.det_score)
            result.faces.append(face)
            box_quality = self._box_quality(track)
            if box_quality is None or not self.tracker.should_embed(track, box_quality, result.frame_index):
                continue
            frame = self.cropper.frame(image) if frame is None else frame
            found = self._crop(frame, track, aux_of, face, result.frame_index)
            if found is None:
                continue
            self.tracker.mark_embedded(track, box_quality, result.frame_index)
            if track.usable_time is None:
                track.usable_time = result.timestamp
            chosen.append(_Chosen(track.track_id, found.aligned, track.first_time, track.usable_time))
        return chosen

    def _box_quality(self, track: Track) -> Optional[float]:
        """A cheap score from the box alone (None: too weak or small to pay for landmarks)."""
        cfg = self.config.quality
        width = track.bbox[2] - track.bbox[0]
        if track.det_score < cfg.min_det_score or min(width, track.bbox[3] - track.bbox[1]) < cfg.min_face_px:
            return None
        return track.det_score * min(1.0, width / (2 * cfg.min_face_px))

    def _crop(self, frame: np.ndarray, track: Track, aux_of: Dict[int, np.ndarray], face: FaceResult,
              frame_index: int) -> Optional[Face]:
        """The track's face through the face path; None when it has no landmarks or fails the quality gate."""
        try:
            found = self.cropper.track_face(frame, track.bbox, track.det_score, aux_of[track.track_id])
        except (InputError, KeyError) as exc:
            logger.debug("no landmarks for track %d: %s", track.track_id, exc)
            return None
        face.kps, face.quality = found.kps, found.quality
        if not found.quality.passed:
            self.metrics.count("faces_rejected_quality")
            logger.debug("track %d frame %d not embedded: %s", track.track_id, frame_index,
                         "; ".join(found.quality.reasons))
            return None
        return found

    def embed_stage(self, work: _Work) -> FrameResult:
        """Embed all chosen faces of the frame as one batch, search, decide, emit events."""
        result = work.result
        for track_id in work.ended:
            self.decider.end_track(track_id)
            self._restarted.pop(track_id, None)
        if work.chosen:
            self._embed_and_decide(work)
        for face in result.faces:
            face.identity = self.decider.accepted(face.track_id)
        for event in result.events:
            self.events.emit(event)
        return result

    def _embed_and_decide(self, work: _Work) -> None:
        result = work.result
        t0 = time.perf_counter()
        emb = self.embedder.embed([c.crop for c in work.chosen])
        t1 = time.perf_counter()
        k = self.config.decision.top_k
        ids, scores = self.gallery.search(emb, k)
        t2 = time.perf_counter()
        result.timings.update(embed=t1 - t0, search=t2 - t1)
        self.metrics.observe("embed", t1 - t0)
        self.metrics.observe("search", t2 - t1)
        self.metrics.count("embeddings", len(emb))
        by_track = {f.track_id: f for f in result.faces}
        now = time.monotonic()
        for i, chosen in enumerate(work.chosen):
            face = by_track[chosen.track_id]
            face.embedded = True
            face.candidates = [(ids[i, j], float(scores[i, j])) for j in range(k) if ids[i, j] is not None]
            self._vote(result, chosen, face, now)
        result.timings["decide"] = time.perf_counter() - t2

    def _vote(self, result: FrameResult, chosen: _Chosen, face: FaceResult, now: float) -> None:
        """One embedding's vote: the decision goes back to the detect stage as a message, events to ``result``."""
        verdict = self.decider.update(chosen.track_id, face.candidates or [(None, float("-inf"))], now,
                                      result.frame_index)
        self._decisions.post(chosen.track_id, verdict.decided)
        if verdict.restarted:
            self._restarted[chosen.track_id] = result.timestamp
            self.metrics.count("decision_resets")
        if verdict.event is not None:
            result.events.append(self._timed(verdict, result, chosen, face, now))

    def _timed(self, verdict: Verdict, result: FrameResult, chosen: _Chosen, face: FaceResult, now: float) -> Event:
        """The verdict's event with this frame's box, the latencies and stage timings (and the crop if asked)."""
        event = verdict.event
        restart = self._restarted.get(chosen.track_id, float("-inf"))
        latency = now - max(chosen.first_time, restart)
        usable_latency = now - max(chosen.usable_time, restart)
        event.bbox = [round(float(v), 1) for v in face.bbox]
        event.timings = {"face_to_decision": round(latency * 1000.0, 2),
                         "usable_to_decision": round(usable_latency * 1000.0, 2),
                         **{name: round(v * 1000.0, 2) for name, v in result.timings.items()}}
        if self.config.decision.include_crop:
            event.crop = chosen.crop
        if event.kind == ACCEPT:
            self.metrics.observe("face_to_decision", latency)
            self.metrics.observe("usable_to_decision", usable_latency)
        return event

    def process(self, image: np.ndarray, timestamp: Optional[float] = None) -> Optional[FrameResult]:
        """Run one frame through every stage in this thread (tests, single-threaded use).

        Returns None for a bad frame (counted in ``bad_frames``).
        """
        index = self._frame_index
        self._frame_index += 1
        timestamp = time.monotonic() if timestamp is None else timestamp
        self.metrics.count("frames_in")
        work = self.detect_stage(image, index, timestamp)
        if work is None:
            return None
        result = self.embed_stage(work)
        self.metrics.observe("frame_latency", time.monotonic() - timestamp)
        self.metrics.frame_done()
        self.latest = result
        return result

    # -- threaded run ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running :meth:`run` to finish (from any thread or a callback)."""
        self._stop.set()

    def _refresh_gallery(self) -> None:
        """Apply bundles waiting in ``gallery.bundle_inbox``, then see what another process changed in the gallery
        store (the in-memory gallery has nothing to see)."""
        refresh = getattr(self.gallery, "refresh", None)
        if refresh is None:
            return
        try:
            if self.config.gallery.bundle_inbox:  # applied bundles update the index themselves
                from hsst.gallery.bundle import apply_inbox
                from hsst.runtime.gallery import gallery_keys

                for handled in apply_inbox(self.gallery, self.config.gallery.bundle_inbox,
                                           gallery_keys(self.config.gallery)):
                    self.metrics.count("bundles_applied" if handled.applied else "bundles_refused")
            if refresh():
                logger.info("the gallery store was changed by another process: search index rebuilt (%d identities)",
                            len(self.gallery))
        except Exception:  # the gate keeps serving with the index it has
            self.metrics.count("errors")
            logger.exception("refreshing the gallery store failed; keeping the current index")

    def run(self, source: Optional[FrameSource] = None, duration: Optional[float] = None,
            max_frames: Optional[int] = None, display: bool = False,
            on_frame: Optional[Callable[[FrameResult], None]] = None) -> Dict[str, Any]:
        """Run the threaded pipeline until the source ends, ``duration`` passes, or :meth:`stop`.

        Args:
            source: an opened source (None: ``config.source``, opened and reconnected by the capture thread).
            duration: seconds to run (None: until the source ends).
            max_frames: stop after this many captured frames.
            display: show frames with boxes and identities (needs a GUI build of OpenCV).
            on_frame: called with every :class:`FrameResult` (from the embed thread; keep it short).

        Returns:
            The final metrics snapshot.
        """
        self._stop.clear()
        self.source_error = None
        if display and not display_available():
            logger.error("--display needs a desktop session (DISPLAY or WAYLAND_DISPLAY is not set); running without")
            display = False
        own_source = source is None
        if source is None:
            # Opened by the capture thread: a camera that is absent at start is retried with backoff there,
            # while duration / stop() keep working.
            source = ReconnectingSource(lambda: make_source(self.config.source), self.config.source,
                                        on_event=self.events.emit)
        drop = self.config.pipeline.drop_frames
        if drop is None:
            drop = bool(getattr(source, "is_live", True))
        size = self.config.pipeline.queue_size
        frames, work_q = DropQueue(size, drop), DropQueue(size, drop)
        self.metrics.watch_queue("frames", frames.__len__)
        self.metrics.watch_queue("work", work_q.__len__)
        self.metrics.watch_counter("dropped_frames", lambda: frames.dropped)
        self.metrics.watch_counter("dropped_work", lambda: work_q.dropped)
        self.metrics.watch_counter("reconnects", lambda: getattr(source, "reconnects", 0))
        self.metrics.watch_counter("source_stalls", lambda: getattr(source, "stalls", 0))
        done = threading.Event()
        started = time.monotonic()

        def capture() -> None:
            try:
                if own_source:
                    try:
                        source.open()
                    except SourceError as exc:
                        logger.error("cannot open the source: %s", exc)
                        self.source_error = str(exc)
                        return
                while not self._stop.is_set():
                    if max_frames is not None and self._frame_index >= max_frames:
                        break
                    try:
                        image = source.read()
                    except SourceError as exc:
                        logger.error("source failed for good: %s", exc)
                        self.source_error = str(exc)
                        self.events.emit(Event(SOURCE, message=str(exc)))
                        break
                    if image is None:
                        break
                    ts = time.monotonic()
                    index = self._frame_index
                    self._frame_index += 1
                    self.metrics.count("frames_in")
                    frames.put((image, index, ts))
            except Exception:  # a bug in a source must end the run cleanly, not hang it
                logger.exception("capture thread failed")
                self.metrics.count("errors")
            finally:
                frames.put(_END)

        def detect_loop() -> None:
            while True:
                item = frames.get()
                if item is None:
                    continue
                if item is _END:
                    work_q.put(_END)
                    return
                image, index, ts = item
                try:
                    work = self.detect_stage(image, index, ts)
                except Exception:
                    self.metrics.count("errors")
                    logger.exception("detect stage failed on frame %d; continuing", index)
                    continue
                if work is not None:
                    work_q.put(work)

        def embed_loop() -> None:
            while True:
                work = work_q.get()
                if work is None:
                    continue
                if work is _END:
                    done.set()
                    return
                try:
                    result = self.embed_stage(work)
                except Exception:
                    self.metrics.count("errors")
                    logger.exception("embed stage failed on frame %d; continuing", work.result.frame_index)
                    continue
                self.metrics.observe("frame_latency", time.monotonic() - result.timestamp)
                self.metrics.frame_done()
                self.latest = result
                if on_frame is not None:
                    try:
                        on_frame(result)
                    except Exception:
                        self.metrics.count("errors")
                        logger.exception("on_frame callback failed")

        threads = [threading.Thread(target=fn, name=f"hsst-{fn.__name__}", daemon=True)
                   for fn in (capture, detect_loop, embed_loop)]
        for thread in threads:
            thread.start()
        last_log = last_refresh = time.monotonic()
        every = self.config.pipeline.metrics_every_s
        refresh_every = self.config.gallery.refresh_s
        try:
            while not done.is_set():
                if duration is not None and time.monotonic() - started >= duration:
                    break
                if self._stop.is_set():
                    break
                if display:
                    if not self._show():
                        display = False
                    elif cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                else:
                    done.wait(0.05)
                if refresh_every and time.monotonic() - last_refresh >= refresh_every:
                    last_refresh = time.monotonic()
                    self._refresh_gallery()
                if every and time.monotonic() - last_log >= every:
                    last_log = time.monotonic()
                    snap = self.metrics.snapshot()
                    logger.info("fps %.1f, frame p95 %.1f ms, drops %s, queues %s", snap["fps"],
                                snap["latency"].get("frame_latency", {}).get("p95_ms", 0.0),
                                snap["counters"].get("dropped_frames", 0), snap["queues"])
        finally:
            self._stop.set()
            stop_source = getattr(source, "stop", None)
            if stop_source:
                stop_source()
            frames.close()
            work_q.close()
            for thread in threads:
                thread.join(timeout=5.0)
            if own_source:
                source.close()
            if display:
                try:
                    cv2.destroyAllWindows()
                except cv2.error:
                    pass
        return self.metrics.snapshot()

    def _show(self) -> bool:
        """Draw the latest frame; False when this OpenCV / session cannot open a window."""
        result = self.latest
        if result is None or result.image is None:
            return True
        canvas = cv2.cvtColor(to_uint8(result.image), cv2.COLOR_GRAY2BGR) if result.image.ndim == 2 else \
            to_uint8(result.image).copy()
        for face in result.faces:
            x1, y1, x2, y2 = [int(v) for v in face.bbox]
            color = (0, 200, 0) if face.identity else (0, 165, 255)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
            cv2.putText(canvas, f"#{face.track_id} {face.identity or '?'}", (x1, max(12, y1 - 6)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
        try:
            cv2.imshow("hsst-gate", canvas)
        except cv2.error as exc:
            logger.error("--display needs a desktop session and a GUI build of OpenCV (not opencv-python-headless);"
                         " continuing without display: %s", str(exc).strip().splitlines()[-1])
            return False
        return True

    # -- single images ----------------------------------------------------------------------------------------
    def identify(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """Identify every face of one image (no tracking): top-k candidates and the gate's decision policy on
        this one answer (:meth:`DecisionMaker.decide_once`)."""
        faces = self.cropper.faces(image)
        if not faces:
            return []
        k = self.config.decision.top_k
        ids, sims = self.gallery.search(self.embedder.embed([f.aligned for f in faces]), k)
        return [self._identified(face, [(ids[i, j], float(sims[i, j])) for j in range(k) if ids[i, j] is not None])
                for i, face in enumerate(faces)]

    def _identified(self, face: Face, candidates: List[Tuple[str, float]]) -> Dict[str, Any]:
        """One face's record: box, candidates, the decision and the quality verdict."""
        identity = self.decider.decide_once(candidates)
        return {"bbox": [round(float(v), 1) for v in face.bbox], "det_score": round(face.det_score, 4),
                "identity": identity, "score": round(candidates[0][1], 4) if candidates else None,
                "accepted": identity is not None, "threshold": round(self.decider.threshold, 4),
                "far": self.config.decision.far, "candidates": [[c, round(s, 4)] for c, s in candidates],
                "quality": face.quality.to_dict()}

    def close(self) -> None:
        """Release the event log, the model and the gallery store (those the pipeline created)."""
        if self._own_embedder:
            self.embedder.close()
        if self._own_gallery and hasattr(self.gallery, "close"):  # a store file; memory needs no closing
            self.gallery.close()
        if self._log is not None:
            self._log.close()
