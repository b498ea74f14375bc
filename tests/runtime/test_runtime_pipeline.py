"""The threaded pipeline on real faces with real models (UNTRAINED embedder: mechanics, not accuracy):
bad frames are counted skips, a failing source is recovered with the pipeline state kept, live sources drop
the oldest frames, 16-bit NIR frames work, events reach callbacks and the JSONL log."""
import cv2
import numpy as np
import pytest

from hsst.core.image import read_image
from hsst.runtime.config import GateConfig, SourceConfig
from hsst.runtime.events import read_events
from hsst.runtime.pipeline import DropQueue, GatePipeline
from hsst.runtime.sources import OpenCVSource, open_source

from failing_source import FailingOnceVideo
from list_source import ListSource
from hsst.synth.scene import Appearance, identity_photos as lfw_people


def _config(**decision) -> GateConfig:
    cfg = GateConfig()
    cfg.decision.threshold = 0.5       # the untrained test model has no FAR table
    cfg.decision.cooldown_s = 0.0
    cfg.pipeline.metrics_every_s = 0
    for k, v in decision.items():
        setattr(cfg.decision, k, v)
    return cfg


@pytest.fixture(scope="module")
def scene(lfw_dir, tmp_path_factory):
    from hsst.synth.scene import SceneBuilder

    people = lfw_people(lfw_dir, 4, 3)
    apps = [Appearance(name, files[0], start=i * 22, lane=i) for i, (name, files) in enumerate(people)]
    scene = SceneBuilder(seed=1, masks=False).render(apps, tmp_path_factory.mktemp("scene") / "scene.avi")
    return scene, people


def test_bad_frames_are_counted_skips(embedder, finder, lfw_dir):
    gate = GatePipeline(_config(), embedder=embedder, finder=finder)
    good = cv2.copyMakeBorder(read_image(sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[0]), 115, 115, 195, 195,
                              cv2.BORDER_CONSTANT, value=(60, 60, 60))
    bad = [np.zeros((0, 0), np.uint8), np.zeros((480, 640), np.int32), np.zeros((480, 640, 5), np.uint8),
           np.zeros(10, np.uint8), "not an array", np.zeros((8, 8), np.uint8)]
    frames = [good] + bad + [good, good]
    snap = gate.run(ListSource(frames))
    assert snap["counters"]["bad_frames"] == len(bad) and snap["counters"]["source_stalls"] == 0
    assert snap["counters"]["frames_processed"] == 3
    assert snap["counters"].get("errors", 0) == 0
    assert gate.latest.faces and gate.latest.faces[0].track_id == 1


def test_uint16_nir_frames(embedder, finder, lfw_dir):
    gate = GatePipeline(_config(), embedder=embedder, finder=finder)
    gray = cv2.cvtColor(read_image(sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[0]), cv2.COLOR_BGR2GRAY)
    frame16 = cv2.copyMakeBorder(gray, 115, 115, 195, 195, cv2.BORDER_CONSTANT, value=40).astype(np.uint16) * 64
    result = gate.process(frame16)
    assert len(result.faces) == 1 and result.faces[0].embedded


def test_failing_source_recovered_with_state_kept(scene, embedder, finder, tmp_path):
    scene, people = scene
    cfg = _config()
    cfg.pipeline.drop_frames = False                             # process every frame: exact counts
    cfg.events.jsonl = str(tmp_path / "events.jsonl")
    gate = GatePipeline(cfg, embedder=embedder, finder=finder)
    for name, files in people[:2]:
        assert gate.enroller().enroll_file(gate.gallery, name, files[1]).accepted
    seen = []
    gate.events.subscribe(seen.append)
    fail_at = scene.appearances[0].start + 20                    # while the first person stands at the gate
    flaky = FailingOnceVideo(scene.path, fail_after=fail_at)
    source = open_source(SourceConfig(reconnect_initial_s=0.01), on_event=gate.events.emit, factory=lambda: flaky)
    tracks_at = {}
    snap = gate.run(source, on_frame=lambda r: tracks_at.setdefault(r.frame_index, {f.track_id for f in r.faces}))
    gate.close()
    counters = snap["counters"]
    assert counters["reconnects"] == 1 and counters["frames_processed"] == scene.frames
    assert counters.get("errors", 0) == 0 and counters.get("bad_frames", 0) == 0
    kinds = [e.kind for e in seen]
    assert kinds.count("source") == 2                            # lost + reconnected
    # the track of the person standing at the gate continues across the reconnect
    assert tracks_at[fail_at - 1] & tracks_at[fail_at] & tracks_at[fail_at + 1]
    decisions = [e for e in seen if e.kind in ("accept", "unknown")]
    assert decisions and len({e.track_id for e in decisions}) <= len(scene.appearances)
    logged = read_events(cfg.events.jsonl)
    assert [e["kind"] for e in logged] == kinds
    assert all("timings" in e and "face_to_decision" in e["timings"] for e in logged if e["kind"] == "accept")
    assert all(0 <= e["timings"]["usable_to_decision"] <= e["timings"]["face_to_decision"]
               for e in logged if e["kind"] == "accept")
    assert set(snap["latency"]) >= {"detect", "align", "embed", "search", "frame_latency"}


def test_live_source_drops_oldest_frames(scene, embedder, finder):
    scene, _ = scene
    frames = list(OpenCVSource("file", str(scene.path)).__enter__()) * 2
    gate = GatePipeline(_config(), embedder=embedder, finder=finder)
    snap = gate.run(ListSource(frames, live=True))               # a "camera" far faster than the pipeline
    c = snap["counters"]
    assert c["dropped_frames"] + c.get("dropped_work", 0) > 0
    assert c["frames_processed"] + c["dropped_frames"] + c.get("dropped_work", 0) == len(frames)


def test_drop_queue_drops_oldest():
    q = DropQueue(2, drop_oldest=True)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and [q.get(), q.get(), q.get(0.01)] == [3, 4, None]


def test_identify_single_image(embedder, finder, lfw_dir):
    gate = GatePipeline(_config(), embedder=embedder, finder=finder)
    files = sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))
    gate.enroller().enroll_file(gate.gallery, "Aaron_Peirsol", files[0])
    (face,) = gate.identify(read_image(files[0]))
    assert face["identity"] == "Aaron_Peirsol" and face["accepted"] and face["score"] == pytest.approx(1.0, abs=1e-3)
    assert gate.identify(np.full((200, 200), 90, np.uint8)) == []


def test_detection_every_other_frame_keeps_the_track(embedder, finder, lfw_dir):
    cfg = _config()
    cfg.detector.every_n_frames = 2
    gate = GatePipeline(cfg, embedder=embedder, finder=finder)
    face = read_image(sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[0])
    results = []
    for shift in range(6):
        frame = np.full((480, 640, 3), 70, np.uint8)
        frame[115:365, 180 + 4 * shift:430 + 4 * shift] = face
        results.append(gate.process(frame))
    assert [len(r.faces) for r in results] == [1, 0, 1, 0, 1, 0]
    assert len({r.faces[0].track_id for r in results[::2]}) == 1
    assert "detect" not in results[1].timings


def test_absent_camera_is_retried_until_stopped(embedder, finder):
    cfg = _config()
    cfg.source.uri = "97"                       # no such camera; retried forever (reconnect_attempts: null)
    cfg.source.reconnect_initial_s = 0.05
    gate = GatePipeline(cfg, embedder=embedder, finder=finder)
    seen = []
    gate.events.subscribe(seen.append)
    snap = gate.run(duration=0.6)
    assert snap["counters"].get("frames_processed", 0) == 0
    assert len(seen) >= 2 and all(e.kind == "source" and "retrying" in e.message for e in seen)


def test_camera_that_never_opens_ends_the_run(embedder, finder):
    cfg = _config()
    cfg.source.uri = "v4l2:///dev/video96"
    cfg.source.reconnect_attempts = 2
    cfg.source.reconnect_initial_s = 0.01
    gate = GatePipeline(cfg, embedder=embedder, finder=finder)
    seen = []
    gate.events.subscribe(seen.append)
    gate.run(duration=10)
    assert gate.source_error and "gave up after 2" in seen[-1].message and "does not exist" in seen[-1].message
