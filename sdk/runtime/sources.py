"""Frame sources: USB/V4L2 cameras, CSI cameras (GStreamer), RTSP, video files, image folders.

Sources are named by URI (the jetson-inference convention)::

    csi://0                 CSI camera 0 through nvarguscamerasrc (Jetson; needs OpenCV with GStreamer)
    v4l2:///dev/video0      V4L2 device (also plain /dev/video0 or a camera index such as 0)
    rtsp://host:554/path    RTSP stream
    file://clip.mp4         video file (also a plain path)
    file://frames/          folder of images, read in name order
    gst://<pipeline>        a raw GStreamer pipeline ending in appsink

Mono NIR frames stay single-channel (8 or 16 bit) end to end. Live sources that fail are reopened by
:class:`ReconnectingSource` with exponential backoff; the pipeline behind it keeps its state. Finite sources
(video files, image folders) are never retried: one that cannot be opened, or that ends before its first frame,
is an error at once (waiting does not repair a file).
"""
from __future__ import annotations

import abc
import logging
import threading
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import cv2
import numpy as np

from hsst.core.errors import HsstError, ImageReadError
from hsst.core.image import IMAGE_SUFFIXES, read_image, squeeze_single_channel, to_uint8
from hsst.runtime.config import SourceConfig
from hsst.runtime.events import SOURCE, Event

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".mjpg", ".h264", ".h265", ".ts")

GSTREAMER_HINT = ("this OpenCV build has no GStreamer support (PyPI's opencv-python never has it), so CSI cameras "
                  "and gst:// pipelines cannot be opened. On a Jetson use JetPack's OpenCV: `pip uninstall "
                  "opencv-python opencv-python-headless` in a venv created with --system-site-packages (JetPack's "
                  "python3-opencv is built with GStreamer); elsewhere build OpenCV with -DWITH_GSTREAMER=ON. "
                  "USB cameras also work without GStreamer as v4l2:///dev/videoN")


class SourceError(HsstError):
    """A frame source cannot be opened or failed while reading."""


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (read from ``cv2.getBuildInformation()``)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30.0, flip: int = 0,
                 gray: bool = True) -> str:
    """GStreamer pipeline for a Jetson CSI camera; ``gray`` asks nvvidconv for GRAY8 (mono NIR) instead of BGR."""
    tail = ("video/x-raw, format=GRAY8 ! appsink drop=true max-buffers=1 sync=false" if gray else
            "video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 "
            "sync=false")
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={int(round(fps))}/1, format=NV12 ! nvvidconv flip-method={flip} ! {tail}")


def parse_uri(uri: str) -> Tuple[str, Union[str, int]]:
    """Kind and target of a source URI: ``("csi", 0)``, ``("v4l2", "/dev/video0")``, ``("index", 0)``,
    ``("rtsp", url)``, ``("file", path)``, ``("folder", path)``, ``("gst", pipeline)``.

    Raises:
        SourceError: an unsupported scheme or an empty URI.
    """
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty source URI; use e.g. 0, v4l2:///dev/video0, csi://0, rtsp://..., file://clip.mp4")
    if uri.isdigit():
        return "index", int(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    scheme = scheme.lower()
    if scheme == "csi":
        if not rest.isdigit():
            raise SourceError(f"CSI source {uri!r} must be csi://<sensor-id>, e.g. csi://0")
        return "csi", int(rest)
    if scheme == "v4l2":
        return ("index", int(rest)) if rest.isdigit() else ("v4l2", rest)
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https"):
        return "rtsp", uri
    if scheme == "gst":
        return "gst", rest
    if scheme in ("file", ""):
        if rest.startswith("/dev/video"):
            return "v4l2", rest
        path = Path(rest).expanduser()
        if path.is_dir() or rest.endswith("/"):
            return "folder", str(path)
        return "file", str(path)
    raise SourceError(f"unsupported source scheme {scheme!r} in {uri!r}; use csi://, v4l2://, rtsp://, file:// "
                      "or gst://")


def _shape_frame(frame: np.ndarray, color: str) -> np.ndarray:
    """Squeeze (H, W, 1) and honour the configured colour mode without touching 16-bit depth needlessly."""
    frame = squeeze_single_channel(frame)
    if color == "gray" and frame.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        frame = cv2.cvtColor(frame, code)
    elif color == "bgr" and frame.ndim == 2:
        frame = cv2.cvtColor(to_uint8(frame), cv2.COLOR_GRAY2BGR)
    return frame


class FrameSource(abc.ABC):
    """A stream of frames.

    ``read`` returns the next frame, None at the genuine end of a finite source, and raises
    :class:`SourceError` when the source fails (a live camera that stops delivering).
    """

    #: a camera or stream (frames are dropped when behind, failures are reconnected)
    is_live: bool = True

    def __init__(self, name: str) -> None:
        self.name = name

    def empty_hint(self) -> str:
        """Why a finite source may have ended before its first frame (for the error that says so)."""
        return "it holds no frame"

    @abc.abstractmethod
    def open(self) -> None:
        """Open the device / file; raises :class:`SourceError` with what to check."""

    @abc.abstractmethod
    def read(self) -> Optional[np.ndarray]:
        """Next frame, None at the end, :class:`SourceError` on failure."""

    def close(self) -> None:
        """Release the source (idempotent)."""

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame


class OpenCVSource(FrameSource):
    """Cameras, streams and video files through ``cv2.VideoCapture``.

    Args:
        kind: ``index``, ``v4l2``, ``csi``, ``rtsp``, ``file`` or ``gst`` (see :func:`parse_uri`).
        target: camera index, device path, URL, file path or pipeline.
        config: resolution, fps, colour mode, pixel format, read timeout.
    """

    def __init__(self, kind: str, target: Union[str, int], config: Optional[SourceConfig] = None) -> None:
        super().__init__(f"{kind}:{target}")
        self.kind, self.target = kind, target
        self.config = config or SourceConfig()
        self.is_live = kind != "file"
        self._cap: Optional[cv2.VideoCapture] = None

    def _capture(self) -> cv2.VideoCapture:
        cfg = self.config
        if self.kind in ("csi", "gst"):
            if not gstreamer_available():
                raise SourceError(f"cannot open {self.name}: {GSTREAMER_HINT}")
            pipeline = self.target if self.kind == "gst" else csi_pipeline(
                int(self.target), cfg.width or 1280, cfg.height or 720, cfg.fps or 30.0, cfg.csi_flip,
                gray=cfg.color != "bgr")
            logger.info("GStreamer pipeline: %s", pipeline)
            return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if self.kind == "rtsp":
            ms = int(cfg.read_timeout_s * 1000)
            return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if self.kind == "file":
            path = Path(self.target)
            if not path.is_file():
                raise SourceError(f"video file not found: {path}; check --source (source.uri)")
            return cv2.VideoCapture(str(path))
        if self.kind == "v4l2" and not Path(str(self.target)).exists():
            raise SourceError(f"camera device {self.target} does not exist; check the cable and `ls /dev/video*`")
        api = cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") and Path("/dev").is_dir() else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.target, api)
        if cap.isOpened():
            if cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc.ljust(4)))
                if cfg.fourcc.strip().upper() in ("GREY", "Y8", "Y16", "Y10", "Y12"):
                    cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)  # keep mono frames mono (and 16-bit)
            if cfg.width and cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            if cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, cfg.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a stale backlog
        return cap

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            hint = {"index": "no camera with this index (see `v4l2-ctl --list-devices`)",
                    "v4l2": "the device exists but cannot be opened (in use, or no permission: add the user to "
                            "the video group)",
                    "rtsp": "stream unreachable (address, credentials, network)",
                    "file": "unsupported codec or corrupt file",
                    "csi": "nvargus-daemon not running or sensor not connected",
                    "gst": "pipeline does not start (test it with gst-launch-1.0)"}[self.kind]
            raise SourceError(f"cannot open source {self.name}: {hint}")
        self._cap = cap
        if self.is_live:
            w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            logger.info("opened %s at %dx%d, %.1f fps", self.name, w, h, cap.get(cv2.CAP_PROP_FPS))

    def empty_hint(self) -> str:
        return "OpenCV decodes no video frame from it (corrupt, not a video, or a codec this OpenCV lacks)"

    def read(self) -> Optional[np.ndarray]:
        if self._cap is None:
            raise SourceError(f"source {self.name} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if not self.is_live:
                return None
            raise SourceError(f"source {self.name} delivered no frame (disconnected or stalled)")
        return _shape_frame(frame, self.config.color)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(FrameSource):
    """Images of a folder in name order (8/16-bit gray kept as is). Unreadable files are logged and skipped.

    Args:
        folder: the folder.
        color: ``gray``, ``bgr`` or ``auto``.
    """

    is_live = False

    def __init__(self, folder: Union[str, Path], color: str = "auto") -> None:
        super().__init__(f"folder:{folder}")
        self.folder = Path(folder)
        self.color = color
        self.files: List[Path] = []
        self._pos = 0
        self.skipped = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"image folder {self.folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self._pos = 0

    def empty_hint(self) -> str:
        return f"none of its {len(self.files)} image file(s) could be read (see the warnings above)"

    def read(self) -> Optional[np.ndarray]:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            try:
                return _shape_frame(read_image(path), self.color)
            except ImageReadError as exc:
                self.skipped += 1
                logger.warning("skipping %s", exc)
        return None


class _Reader:
    """Reads one live source in its own thread so a read that hangs (a stalled camera) can be timed out.

    Frames are handed over one at a time (the thread waits while the consumer has not taken the last one),
    so no frame is lost here; dropping when behind is the pipeline's job, where it is counted.
    """

    _EOF = object()

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._slot: List[object] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"hsst-reader-{source.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item: object = self.source.read()
            except SourceError as exc:
                item = exc
            except Exception as exc:  # a driver bug must surface as a source failure, not kill the gate
                item = SourceError(f"source {self.source.name} raised {type(exc).__name__}: {exc}")
            if item is None:
                item = self._EOF
            with self._cond:
                while self._slot and not self._stop.is_set():
                    self._cond.wait(0.1)
                self._slot.append(item)
                self._cond.notify_all()
            if item is self._EOF or isinstance(item, SourceError):
                return

    def get(self, timeout: float) -> object:
        """The next frame, :data:`_EOF`, a :class:`SourceError`, or None when nothing came within ``timeout``."""
        with self._cond:
            if not self._slot:
                self._cond.wait(timeout)
            if not self._slot:
                return None
            item = self._slot.pop()
            self._cond.notify_all()
            return item

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()


class ReconnectingSource(FrameSource):
    """Reopens a failing or stalled source with exponential backoff; reports every loss and recovery.

    Live sources are read in a helper thread so that a camera that stops delivering without an error (a
    stalled USB or CSI pipeline whose read blocks) is detected after ``config.read_timeout_s`` and reopened.
    Finite sources (files, folders) are read directly.

    Args:
        factory: makes a fresh (unopened) inner source.
        config: backoff settings, ``read_timeout_s``, ``loop``.
        on_event: receives ``source`` events (lost, stalled, reconnected, gave up).
    """

    def __init__(self, factory: Callable[[], FrameSource], config: Optional[SourceConfig] = None,
                 on_event: Optional[Callable[[Event], None]] = None) -> None:
        self._factory = factory
        self._inner = factory()
        super().__init__(self._inner.name)
        self.is_live = self._inner.is_live
        self.config = config or SourceConfig()
        self.on_event = on_event
        self._open = False
        self._stop = threading.Event()
        self._reader: Optional[_Reader] = None
        self.reconnects = 0
        self.failures = 0
        self.stalls = 0
        #: frames delivered so far (a finite source that ends at 0 is an error, not an empty run)
        self.frames = 0

    def _report(self, message: str, level: int = logging.WARNING) -> None:
        logger.log(level, "%s", message)
        if self.on_event is not None:
            self.on_event(Event(SOURCE, message=message))

    def open(self) -> None:
        self._connect(first=True)

    def _connect(self, first: bool = False) -> None:
        cfg = self.config
        delay = cfg.reconnect_initial_s
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                if not first or attempt > 1:
                    self._release_inner()
                    self._inner = self._factory()
                self._inner.open()
                self._open = True
                if self.is_live and cfg.read_timeout_s > 0:
                    self._reader = _Reader(self._inner)
                if not first or attempt > 1:
                    self.reconnects += 1
                    self._report(f"source {self.name} reconnected after {attempt} attempt(s)", logging.INFO)
                return
            except SourceError as exc:
                self.failures += 1
                if not self.is_live:  # a missing or undecodable file does not appear by waiting
                    self._report(f"source {self.name} cannot be opened: {exc}", logging.ERROR)
                    raise
                if not cfg.reconnect or (cfg.reconnect_attempts is not None and attempt >= cfg.reconnect_attempts):
                    self._report(f"source {self.name} gave up after {attempt} attempt(s): {exc}", logging.ERROR)
                    raise
                self._report(f"source {self.name} unavailable (attempt {attempt}): {exc}; retrying in {delay:.1f} s")
                self._stop.wait(delay)
                delay = min(delay * 2.0, cfg.reconnect_max_s)
        raise SourceError(f"source {self.name} stopped while reconnecting")

    def _release_inner(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        try:
            self._inner.close()  # also unblocks a read hanging in the reader thread, for OpenCV captures
        except Exception:
            logger.exception("closing source %s failed", self.name)

    def _read_inner(self) -> Optional[np.ndarray]:
        if self._reader is None:
            return self._inner.read()
        item = self._reader.get(self.config.read_timeout_s)
        if item is None:
            self.stalls += 1
            raise SourceError(f"source {self.name} stalled: no frame for {self.config.read_timeout_s:g} s")
        if item is _Reader._EOF:
            return None
        if isinstance(item, SourceError):
            raise item
        return item  # type: ignore[return-value]

    def read(self) -> Optional[np.ndarray]:
        while not self._stop.is_set():
            if not self._open:
                self._connect()
            try:
                frame = self._read_inner()
            except SourceError as exc:
                self._open = False
                self._report(f"source {self.name} lost: {exc}")
                if not self.config.reconnect or not self.is_live:
                    raise
                continue
            if frame is None and not self.is_live and self.frames == 0:
                raise SourceError(f"source {self.name} ended before its first frame: {self._inner.empty_hint()}")
            if frame is None and self.config.loop:
                self._release_inner()
                self._inner = self._factory()
                self._inner.open()
                if self.is_live and self.config.read_timeout_s > 0:
                    self._reader = _Reader(self._inner)
                frame = self._read_inner()
            self.frames += frame is not None
            return frame
        return None

    def stop(self) -> None:
        """Interrupt a backoff wait (from another thread); subsequent reads return None."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._release_inner()
        self._open = False


def make_source(config: SourceConfig) -> FrameSource:
    """The plain (non-reconnecting) source for ``config.uri``."""
    kind, target = parse_uri(config.uri)
    if kind == "folder":
        return ImageFolderSource(target, config.color)
    return OpenCVSource(kind, target, config)


def open_source(config: SourceConfig, on_event: Optional[Callable[[Event], None]] = None,
                factory: Optional[Callable[[], FrameSource]] = None) -> ReconnectingSource:
    """Open the configured source wrapped in a :class:`ReconnectingSource`.

    Args:
        config: the source section.
        on_event: receives source events.
        factory: custom inner-source factory (default: :func:`make_source` of ``config``).

    Raises:
        SourceError: the source cannot be opened within ``reconnect_attempts`` (or at all, with reconnect off).
    """
    source = ReconnectingSource(factory or (lambda: make_source(config)), config, on_event)
    source.open()
    return source
