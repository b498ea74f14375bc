"""Gate configuration: one dataclass tree, loaded from YAML and validated with clear errors.

Every section has working defaults (a laptop with a USB camera); a device file in ``firmware_configs/`` only
states what differs. Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming
the file and the dotted key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from hsst.core.config import from_dict, read_mapping
from hsst.core.errors import ConfigError

BACKENDS = ("onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
COLORS = ("auto", "gray", "bgr")
#: hsst.face.detector.NORMALIZE_MODES (kept here so that loading a config imports no model code)
NORMALIZE_MODES = ("off", "retry", "always")
#: ``detector.model`` and ``detector.variant`` choices (hsst-eval offers the same ones)
DETECTOR_MODELS = ("auto", "blazeface", "mtcnn")
DETECTOR_VARIANTS = ("blazeface_short", "blazeface_full", "both")
#: DetectorConfig fields that say where and how often the detector runs, not which faces it finds in an image
DETECTOR_RUN_FIELDS = ("threads", "model_dir", "backend", "every_n_frames")
#: hsst.gallery.IndexOptions storages (kept here so that loading a config imports no gallery code)
INDEX_STORAGES = ("float32", "float16", "int8")


@dataclass
class SourceConfig:
    """Where frames come from.

    Attributes:
        uri: ``csi://0``, ``v4l2:///dev/video0``, ``/dev/video0``, ``0`` (camera index), ``rtsp://...``,
            ``file://video.mp4``, ``file://dir/``, a plain path, or ``gst://<pipeline>`` (raw GStreamer).
        width: requested frame width (cameras) or resize target (None keeps the native size).
        height: requested frame height.
        fps: requested camera frame rate (files and folders are read as fast as the pipeline goes).
        color: ``gray`` keeps/turns frames single-channel (NIR), ``bgr`` gives colour, ``auto`` keeps what
            the source delivers.
        fourcc: V4L2 pixel format to request (``GREY`` / ``Y16 `` for mono NIR sensors, ``MJPG``, ``YUYV``);
            mono formats are delivered as single-channel 8/16-bit frames, not converted to BGR.
        csi_flip: ``nvvidconv flip-method`` for CSI cameras.
        reconnect: reopen a camera that disconnects or stalls.
        reconnect_initial_s: first backoff delay; it doubles up to ``reconnect_max_s``.
        reconnect_max_s: longest delay between attempts.
        reconnect_attempts: attempts before giving up (None: forever, the right choice on a gate).
        read_timeout_s: a live source that delivers no frame for this long is stalled and is reopened
            (0: never time out).
        loop: restart video files and folders at their end (demos, soak tests).
    """

    uri: str = "0"
    width: Optional[int] = 640
    height: Optional[int] = 480
    fps: Optional[float] = 30.0
    color: str = "auto"
    fourcc: Optional[str] = None
    csi_flip: int = 0
    reconnect: bool = True
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    reconnect_attempts: Optional[int] = None
    read_timeout_s: float = 5.0
    loop: bool = False

    def validate(self, where: str) -> None:
        _one_of(self.color, COLORS, f"{where}.color")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{where}.{name} must be positive or null, got {value}")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"{where}.fps must be positive or null, got {self.fps}")
        if self.read_timeout_s < 0:
            raise ConfigError(f"{where}.read_timeout_s must be >= 0, got {self.read_timeout_s}")
        if self.reconnect_initial_s <= 0 or self.reconnect_max_s < self.reconnect_initial_s:
            raise ConfigError(f"{where}: need 0 < reconnect_initial_s <= reconnect_max_s, got "
                              f"{self.reconnect_initial_s} and {self.reconnect_max_s}")
        if self.fourcc is not None and len(self.fourcc) > 4:
            raise ConfigError(f"{where}.fourcc must be a 4-character code like GREY, got {self.fourcc!r}")
        if self.reconnect_attempts is not None and self.reconnect_attempts < 1:
            raise ConfigError(f"{where}.reconnect_attempts must be >= 1 or null, got {self.reconnect_attempts}")


@dataclass
class DetectorConfig:
    """Face detector (:class:`hsst.face.FaceDetector`).

    Attributes:
        model: ``auto`` (BlazeFace + mesh landmarks, MTCNN when only that is installed), ``blazeface`` or ``mtcnn``.
        variant: BlazeFace model: ``blazeface_short`` (faces within ~2 m: a gate; 3x faster),
            ``blazeface_full`` (whole rooms) or ``both``.
        det_thresh: minimum detector score for a face to exist at all (masked faces in NIR score lower than
            bare VIS faces; 0.35 keeps them).
        nms_thresh: IoU of non-maximum suppression.
        min_face: smallest face side in pixels the detector reports.
        threads: onnxruntime intra-op threads of the detector (0: onnxruntime's default).
        model_dir: folder of exported detector ONNX files (None: the package cache / ``$HSST_MODEL_DIR``), or of
            their TensorRT engines with ``backend: tensorrt``.
        backend: ``onnxruntime`` or ``tensorrt`` (BlazeFace + mesh engines from ``hsst-export --detector --trt``).
        every_n_frames: run detection on every n-th frame; in between, tracks are carried by motion.
        normalize: hard-light handling of the BlazeFace detector: ``retry`` (a second pass on a
            contrast-normalised frame when the first finds no confident face; frames with one pay nothing),
            ``always`` or ``off`` (see docs/DETECTION.md, "Hard light"). The MTCNN baseline ignores it.
        retry_below: with ``retry``, the best first-pass score below which the second pass runs (at or below
            ``det_thresh``: only when the first pass finds no face).
        options: further keyword arguments passed to ``FaceDetector`` unchanged.
    """

    model: str = "auto"
    variant: str = "blazeface_short"
    det_thresh: float = 0.35
    nms_thresh: float = 0.4
    min_face: int = 40
    threads: int = 0
    model_dir: Optional[str] = None
    backend: str = "onnxruntime"
    every_n_frames: int = 1
    normalize: str = "retry"
    retry_below: float = 0.5
    options: Dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        _one_of(self.model, DETECTOR_MODELS, f"{where}.model")
        _one_of(self.backend, ("onnxruntime", "tensorrt"), f"{where}.backend")
        if self.backend == "tensorrt" and self.model == "mtcnn":
            raise ConfigError(f"{where}: the MTCNN baseline runs on onnxruntime only; use model: blazeface")
        _one_of(self.variant, DETECTOR_VARIANTS, f"{where}.variant")
        _in_range(self.det_thresh, 0.0, 1.0, f"{where}.det_thresh")
        _in_range(self.nms_thresh, 0.0, 1.0, f"{where}.nms_thresh")
        if self.min_face < 1 or self.threads < 0:
            raise ConfigError(f"{where}: min_face >= 1 and threads >= 0 required")
        if self.every_n_frames < 1:
            raise ConfigError(f"{where}.every_n_frames must be >= 1, got {self.every_n_frames}")
        _one_of(self.normalize, NORMALIZE_MODES, f"{where}.normalize")
        _in_range(self.retry_below, 0.0, 1.0, f"{where}.retry_below")


@dataclass
class EmbedderConfig:
    """Embedding model and inference backend.

    Attributes:
        model: ``.onnx`` file or TensorRT ``.engine`` with its JSON sidecar (None: the shipped default model).
        backend: ``onnxruntime`` or ``tensorrt``.
        precision: engine precision the gate expects (TensorRT; checked against the engine's sidecar).
        device: GPU index (CUDA EP / TensorRT).
        providers: onnxruntime execution providers in order (None: CUDA when present, then CPU).
        threads: onnxruntime intra-op threads (0: onnxruntime's choice).
        max_batch: largest batch sent at once (faces of one frame are one batch up to this).
    """

    model: Optional[str] = None
    backend: str = "onnxruntime"
    precision: str = "fp32"
    device: int = 0
    providers: Optional[List[str]] = None
    threads: int = 0
    max_batch: int = 8

    def validate(self, where: str) -> None:
        _one_of(self.backend, BACKENDS, f"{where}.backend")
        _one_of(self.precision, PRECISIONS, f"{where}.precision")
        if self.max_batch < 1 or self.threads < 0 or self.device < 0:
            raise ConfigError(f"{where}: max_batch >= 1, threads >= 0 and device >= 0 required")


@dataclass
class QualityConfig:
    """Face quality gate applied before embedding.

    Attributes:
        min_face_px: smallest inter-ocular-scaled face size (bounding-box short side) in pixels.
        min_blur: smallest variance of the Laplacian on the aligned crop (sharpness).
        max_yaw_deg: largest estimated yaw (left/right turn) from the landmarks.
        max_pitch_deg: largest estimated pitch (up/down).
        max_roll_deg: largest in-plane rotation.
        min_det_score: smallest detector score.
        min_landmark_score: smallest face-presence score of the landmark model (face mesh).
    """

    min_face_px: float = 48.0
    min_blur: float = 20.0
    max_yaw_deg: float = 40.0
    max_pitch_deg: float = 35.0
    max_roll_deg: float = 40.0
    min_det_score: float = 0.35
    min_landmark_score: float = 0.5

    def validate(self, where: str) -> None:
        _in_range(self.min_landmark_score, 0.0, 1.0, f"{where}.min_landmark_score")
        if self.min_face_px < 0 or self.min_blur < 0:
            raise ConfigError(f"{where}: min_face_px and min_blur must be >= 0")
        for name in ("max_yaw_deg", "max_pitch_deg", "max_roll_deg"):
            _in_range(getattr(self, name), 0.0, 180.0, f"{where}.{name}")
        _in_range(self.min_det_score, 0.0, 1.0, f"{where}.min_det_score")


@dataclass
class TrackerConfig:
    """IoU / motion tracker and the embedding schedule.

    Attributes:
        iou_threshold: smallest IoU between a predicted track box and a detection to match them.
        max_center_shift: second matching pass for fast motion: a detection whose centre is within this many
            box sizes of a track's predicted centre (and of similar size) continues the track.
        max_missed: frames a track survives without a detection.
        min_hits: detections before a track is reported (filters one-frame false detections).
        reembed_every: embed a decided track again every K frames.
        pending_every: embed an undecided track every K frames (small: decide fast).
        quality_gain: embed again when the quality score improves by this fraction over the best so far.
    """

    iou_threshold: float = 0.3
    max_center_shift: float = 1.0
    max_missed: int = 10
    min_hits: int = 1
    reembed_every: int = 15
    pending_every: int = 1
    quality_gain: float = 0.1

    def validate(self, where: str) -> None:
        _in_range(self.iou_threshold, 0.0, 1.0, f"{where}.iou_threshold")
        if self.max_center_shift < 0:
            raise ConfigError(f"{where}.max_center_shift must be >= 0, got {self.max_center_shift}")
        if self.max_missed < 0 or self.min_hits < 1 or self.reembed_every < 1 or self.pending_every < 1:
            raise ConfigError(f"{where}: max_missed >= 0, min_hits >= 1, reembed_every >= 1, pending_every >= 1")
        if self.quality_gain < 0:
            raise ConfigError(f"{where}.quality_gain must be >= 0, got {self.quality_gain}")


@dataclass
class DecisionConfig:
    """Per-track decision.

    Attributes:
        far: false-accept rate whose cosine threshold is read from the model's threshold table.
        threshold: cosine threshold used when the model has no entry for ``far`` (None: then it is an error).
        n: accept when ``n`` of the last ``m`` embeddings match the same identity above the threshold.
        m: window length.
        cooldown_s: after an identity is accepted, further accepts of it are suppressed this long.
        top_k: gallery candidates kept per embedding (reported in events).
        emit_unknown: emit an ``unknown`` event when a track fills its window without an accept.
        include_crop: attach the aligned face crop to events (base64 JPEG in the JSONL log).
    """

    far: float = 1e-3
    threshold: Optional[float] = None
    n: int = 2
    m: int = 3
    cooldown_s: float = 5.0
    top_k: int = 3
    emit_unknown: bool = True
    include_crop: bool = False

    def validate(self, where: str) -> None:
        _in_range(self.far, 0.0, 1.0, f"{where}.far")
        if self.threshold is not None:
            _in_range(self.threshold, -1.0, 1.0, f"{where}.threshold")
        if not 1 <= self.n <= self.m:
            raise ConfigError(f"{where}: need 1 <= n <= m, got n={self.n}, m={self.m}")
        if self.cooldown_s < 0 or self.top_k < 1:
            raise ConfigError(f"{where}: cooldown_s >= 0 and top_k >= 1 required")


@dataclass
class PipelineConfig:
    """Threads and queues.

    Attributes:
        queue_size: capacity of each bounded queue between stages; when full the OLDEST item is dropped.
        drop_frames: drop when behind (live cameras); None: drop for live sources, block for files/folders.
        metrics_every_s: period of the metrics log line (0: never).
    """

    queue_size: int = 2
    drop_frames: Optional[bool] = None
    metrics_every_s: float = 10.0

    def validate(self, where: str) -> None:
        if self.queue_size < 1 or self.metrics_every_s < 0:
            raise ConfigError(f"{where}: queue_size >= 1 and metrics_every_s >= 0 required")


@dataclass
class EventsConfig:
    """Event output.

    Attributes:
        jsonl: path of the JSONL event log (None: no log file).
    """

    jsonl: Optional[str] = None

    def validate(self, where: str) -> None:
        pass


@dataclass
class GalleryConfig:
    """Enrolled identities: the encrypted store of :mod:`hsst.gallery` (or, without ``path``, memory only).

    Attributes:
        path: the gallery file (SQLite, AES-GCM templates; created at the first start). None: an in-memory
            gallery that is gone when the process ends (demos, tests).
        keys_dir: folder of ``data.key`` (0600) and ``verify.pem`` made by ``hsst-gallery keygen``.
        key_env: environment variable holding the data key (64 hex characters) when ``keys_dir`` is not set.
        index_storage: search matrix precision: ``float32`` (exact), ``float16`` or ``int8`` (4x smaller).
        enroll_dir: folder of VIS photos enrolled at start (``<dir>/<identity>/*.jpg`` or ``<dir>/<identity>.jpg``);
            for demos: with ``path`` set, they are enrolled into the store only when not enrolled yet.
        min_enroll_quality: reject enrolment photos whose quality score is below this (0..1).
        duplicate_check: warn when an enrolment photo already matches another identity above the decision
            threshold (the same person enrolled twice, or a mix-up of photos).
        refresh_s: a running gate looks for changes another process made to the store (``hsst-enroll``,
            ``hsst-gallery remove`` / ``import``) this often, in seconds, and rebuilds its search index when
            there are any (0: never; then only a restart or ``gate.gallery.refresh()`` sees them).
        on_tampered: a stored template that fails authentication (a damaged or altered row): ``refuse`` to start
            (the default: someone may have altered the file), or ``skip``: serve everyone else and leave that
            identity out of the search, logged as an error and listed in ``gate.gallery.quarantined``, until it
            is re-enrolled or removed.
        bundle_inbox: a folder the running gate watches (every ``refresh_s``) for signed bundles of the site's
            enrolment station (``*.hgb``, dropped by a sync job or from a USB stick; write ``*.part`` and rename):
            each is verified with ``keys_dir/verify.pem`` and applied atomically, oldest version first, then moved
            to ``applied/`` or, refused, to ``refused/`` with the reason beside it. None: no inbox (bundles are
            imported with ``hsst-gallery import`` or ``Gate.import_bundle``).
    """

    path: Optional[str] = None
    keys_dir: Optional[str] = None
    key_env: str = "HSST_GALLERY_KEY"
    index_storage: str = "float32"
    enroll_dir: Optional[str] = None
    min_enroll_quality: float = 0.3
    duplicate_check: bool = True
    refresh_s: float = 5.0
    on_tampered: str = "refuse"
    bundle_inbox: Optional[str] = None

    def validate(self, where: str) -> None:
        _in_range(self.min_enroll_quality, 0.0, 1.0, f"{where}.min_enroll_quality")
        if self.refresh_s < 0:
            raise ConfigError(f"{where}.refresh_s must be >= 0 (0: never), got {self.refresh_s}")
        _one_of(self.index_storage, INDEX_STORAGES, f"{where}.index_storage")
        _one_of(self.on_tampered, ("refuse", "skip"), f"{where}.on_tampered")
        if self.bundle_inbox and not self.path:
            raise ConfigError(f"{where}.bundle_inbox needs {where}.path: bundles are applied to the encrypted store")
        if not self.key_env:
            raise ConfigError(f"{where}.key_env must name an environment variable, e.g. HSST_GALLERY_KEY")


@dataclass
class GateConfig:
    """The whole gate. ``device`` names the hardware profile the file was written for."""

    device: str = "laptop-cpu"
    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)

    def validate(self, where: str = "config") -> "GateConfig":
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate(f"{where}.{f.name}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _one_of(value: Any, choices: tuple, key: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def _in_range(value: float, lo: float, hi: float, key: str) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{key} must be in [{lo}, {hi}], got {value}")


def load_config(path: Union[str, Path, None] = None, overrides: Optional[Dict[str, Any]] = None) -> GateConfig:
    """Load and validate a gate configuration.

    Args:
        path: YAML file (None: all defaults).
        overrides: dotted keys applied after the file, e.g. ``{"source.uri": "file://clip.avi"}``.

    Raises:
        ConfigError: missing file, YAML syntax error, unknown key, wrong type or invalid value.
    """
    data: Dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}; see firmware_configs/ for examples")
        data = read_mapping(path)
    for dotted, value in (overrides or {}).items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted}: {part} is not a section")
        node[parts[-1]] = value
    config = from_dict(GateConfig, data, where)
    return config.validate(where)
