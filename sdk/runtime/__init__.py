"""The streaming gate runtime (torch-free): sources, backends, tracking, quality, gallery, decisions.

Firmware uses :class:`Gate` (``hsst.Gate``, docs/API.md). The pipeline underneath::

    from hsst.runtime import GatePipeline, load_config
    gate = GatePipeline(load_config("firmware_configs/laptop-cpu.yaml"))
    gate.enroll_dir("enrol/")
    gate.events.subscribe(lambda e: print(e.kind, e.identity, e.score))
    gate.run(duration=60)
"""
from hsst.face.finder import FaceFinder
from hsst.runtime.config import GateConfig, load_config
from hsst.runtime.decision import DecisionMaker, resolve_threshold
from hsst.runtime.embedder import Embedder
from hsst.runtime.enroll import Enroller, EnrollReport, EnrollResult
from hsst.runtime.events import Event, EventBus, JsonlEventLog, read_events
from hsst.runtime.gallery import Gallery, InMemoryGallery, open_store
from hsst.runtime.gate import Gate, Match
from hsst.runtime.telemetry import Metrics
from hsst.runtime.model_files import default_embedding_model, resolve_model
from hsst.runtime.pipeline import FrameResult, GatePipeline, create_face_finder
from hsst.runtime.quality import FaceQuality, QualityAssessor
from hsst.runtime.sources import (FrameSource, ImageFolderSource, OpenCVSource, ReconnectingSource, SourceError,
                                  make_source, open_source, parse_uri)
from hsst.runtime.tracker import IoUTracker, Track

__all__ = [
    "Gate", "Match", "EnrollReport", "open_store",
    "GateConfig", "load_config", "DecisionMaker", "resolve_threshold", "Embedder", "Enroller", "EnrollResult",
    "Event", "EventBus", "JsonlEventLog", "read_events", "Gallery", "InMemoryGallery", "Metrics",
    "default_embedding_model", "resolve_model", "FaceFinder", "create_face_finder", "FrameResult", "GatePipeline",
    "FaceQuality", "QualityAssessor", "FrameSource", "ImageFolderSource", "OpenCVSource", "ReconnectingSource",
    "SourceError", "make_source", "open_source", "parse_uri", "IoUTracker", "Track",
]
