"""Stress: the threaded gate with many short tracks while decisions race new frames (the packaged BlazeFace +
mesh detector, the shipped model, LFW people in a simulated NIR scene, 3 at a time).

The threads share no mutable state: the detect thread owns the tracker, the embed thread the decisions, and a
decision goes back to the detect thread as a message. Python's thread switch interval is cut to 10 us so the
threads interleave far more often than in a normal run. What a race would break, and is checked:

* the detect thread's tracker: its tracks are exactly those of a one-thread replay of the detector;
* the hand-off of frames: each processed once, in order, no errors, every embedding counted once;
* the events: each names a face embedded in its own frame, with that frame's box and ordered latencies;
* the decision messages: once a track is accepted for good, the detect thread re-embeds it only at the slow
  rate, at the latest from the first frame it detects after the embed thread decided.
"""
import sys
from typing import Dict, List

import cv2
import numpy as np
import pytest

from hsst.runtime.config import GateConfig
from hsst.runtime.embedder import Embedder
from hsst.runtime.pipeline import FrameResult, GatePipeline
from hsst.runtime.tracker import IoUTracker
from hsst.synth.scene import Appearance, SceneBuilder, identity_photos as lfw_people

from list_source import ListSource

LANES, PEOPLE, APPEARANCES, CYCLE = 3, 12, 24, 16   # each person twice, 12 frames in view, 4 empty
QUEUE, REEMBED = 2, 3
#: frames the detect thread may run ahead of a decision: the work queue, plus one waiting to be queued
LAG = QUEUE + 2


@pytest.fixture(scope="module")
def scene(lfw_dir, tmp_path_factory):
    """~130 gray frames, a short track every few frames; half of the people enrolled (from their own face in
    the scene: accepts come fast), the others strangers (unknowns)."""
    people = lfw_people(lfw_dir, 4, PEOPLE)
    apps = [Appearance(name, files[0], start=(i // LANES) * CYCLE + 3 * (i % LANES), enter=2, stand=8, leave=2,
                       lane=i % LANES) for i, (name, files) in enumerate(people * (APPEARANCES // PEOPLE))]
    rendered = SceneBuilder(seed=5, photo_px=200, masks=False).render(apps, tmp_path_factory.mktemp("s") / "s.avi")
    cap = cv2.VideoCapture(str(rendered.path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    gallery = {app.identity: _face_area(frames, app) for app in apps[:PEOPLE:2]}
    return frames, gallery


def _face_area(frames: List[np.ndarray], app: Appearance) -> np.ndarray:
    """The region around a person's face in the middle of their stand (an enrolment photo from the scene)."""
    mid = app.start + app.enter + app.stand // 2
    x1, y1, x2, y2 = (int(v) for v in app.boxes[mid])
    w, h = x2 - x1, y2 - y1
    return cv2.copyMakeBorder(frames[mid][max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w], 40, 40, 40, 40,
                              cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def model(default_model):
    embedder = Embedder.from_file(default_model, threads=1)
    yield embedder
    embedder.close()


def _gate(model, finder, gallery) -> GatePipeline:
    cfg = GateConfig()
    cfg.decision.n, cfg.decision.m, cfg.decision.cooldown_s = 1, 2, 0.0   # a decision on almost every embedding
    cfg.tracker.pending_every, cfg.tracker.reembed_every = 1, REEMBED
    cfg.tracker.quality_gain = 1e6        # only the decided / undecided schedule picks the frames to embed
    cfg.tracker.max_missed = 1
    cfg.pipeline.queue_size, cfg.pipeline.drop_frames, cfg.pipeline.metrics_every_s = QUEUE, False, 0
    gate = GatePipeline(cfg, embedder=model, finder=finder)
    for name, photo in gallery.items():
        faces = gate.cropper.faces(photo)
        assert faces, f"no face in the enrolment crop of {name}"
        gate.gallery.add(name, model.embed([faces[0].aligned]))
    return gate


def _replay_tracks(finder, gate: GatePipeline, frames: List[np.ndarray]) -> List[list]:
    """Track ids and boxes per frame from the detector and a tracker in one thread, nothing else running."""
    tracker, out = IoUTracker(gate.config.tracker), []
    for index, frame in enumerate(frames):
        boxes, scores, _ = finder.boxes(frame)
        out.append([(t.track_id, t.bbox.tolist()) for t in tracker.update(boxes, scores, None, index, 0.0)])
    return out


def _check_events(result: FrameResult) -> List[str]:
    faces = {f.track_id: f for f in result.faces}
    kinds = []
    for event in result.events:
        face = faces[event.track_id]
        assert face.embedded and event.frame_index == result.frame_index
        assert event.bbox == [round(float(v), 1) for v in face.bbox]
        assert 0 <= event.timings["usable_to_decision"] <= event.timings["face_to_decision"]
        kinds.append(event.kind)
    return kinds


def _check_slow_rate_after_accept(results: List[FrameResult]) -> int:
    """Every track accepted for good is re-embedded at most every REEMBED frames from LAG frames after the
    accept on; returns how many tracks were checked."""
    timeline: Dict[int, list] = {}
    for result in results:
        for face in result.faces:
            timeline.setdefault(face.track_id, []).append((result.frame_index, face.embedded, face.identity))
    checked = 0
    for track_id, seen in timeline.items():
        undecided = [i for i, (_, _, identity) in enumerate(seen) if identity is None]
        start = undecided[-1] + 1 if undecided else 0
        if start >= len(seen):
            continue
        accepted_at = seen[start][0]
        embedded = [frame for frame, done, _ in seen if done]
        gaps = [(a, b) for a, b in zip(embedded, embedded[1:]) if b >= accepted_at + LAG]
        assert all(b - a >= REEMBED for a, b in gaps), (track_id, accepted_at, embedded)
        checked += 1
    return checked


def test_threaded_gate_with_decisions_racing_new_frames(scene, model, finder):
    frames, gallery = scene
    gate = _gate(model, finder, gallery)
    results: List[FrameResult] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        snap = gate.run(ListSource(frames), on_frame=results.append)
    finally:
        sys.setswitchinterval(interval)
    counters = snap["counters"]
    assert counters["frames_processed"] == len(frames) and counters.get("errors", 0) == 0
    assert [r.frame_index for r in results] == list(range(len(frames)))
    assert counters["embeddings"] == sum(f.embedded for r in results for f in r.faces)
    tracks = [[(f.track_id, f.bbox.tolist()) for f in r.faces] for r in results]
    assert tracks == _replay_tracks(finder, gate, frames)
    assert len({t for frame in tracks for t, _ in frame}) >= APPEARANCES // 2     # many short tracks
    kinds = [kind for r in results for kind in _check_events(r)]
    assert kinds.count("accept") >= 4 and kinds.count("unknown") >= 4, kinds
    assert _check_slow_rate_after_accept(results) >= 4
