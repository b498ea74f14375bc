"""IoUTracker on synthetic moving boxes: stable ids, fast motion, crossing-free lanes, expiry, embed schedule."""
import numpy as np

from hsst.runtime.config import TrackerConfig
from hsst.core.boxes import iou_matrix
from hsst.runtime.tracker import IoUTracker


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]], rtol=1e-6)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_two_people_moving_keep_their_ids():
    tracker = IoUTracker(TrackerConfig(max_missed=2))
    ids_a, ids_b = set(), set()
    for f in range(40):
        a = [20 + 6 * f, 100, 100 + 6 * f, 180]          # walks right, 6 px/frame
        b = [500 - 25 * f, 200, 580 - 25 * f, 280]       # walks left fast: IoU with last box ~0.5
        tracks = tracker.update(np.array([a, b], np.float32), np.array([0.9, 0.8]), None, f, f / 30)
        by_x = sorted(tracks, key=lambda t: t.bbox[0]) if f < 15 else tracks
        if f < 15:
            ids_a.add(by_x[0].track_id if by_x[0].bbox[1] == 100 else by_x[1].track_id)
        for t in tracks:
            (ids_a if t.bbox[1] == 100 else ids_b).add(t.track_id)
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_very_fast_motion_uses_centre_distance():
    tracker = IoUTracker(TrackerConfig())
    ids = set()
    for f in range(10):
        box = [50 * f, 100, 50 * f + 80, 180]          # 50 px/frame with an 80 px face: IoU < 0.3 at first
        (track,) = tracker.update(np.array([box], np.float32), np.array([0.9]), None, f, 0.0)
        ids.add(track.track_id)
    assert len(ids) == 1
    assert abs(track.velocity[0] - 50) < 10


def test_tracks_expire_and_new_ids_are_fresh():
    tracker = IoUTracker(TrackerConfig(max_missed=3))
    (t1,) = tracker.update(np.array([[0, 0, 50, 50]], np.float32), np.array([0.9]), None, 0, 0.0)
    for f in range(1, 5):
        assert tracker.update(np.zeros((0, 4)), np.zeros(0), None, f, 0.0) == []
    finished = tracker.pop_finished()
    assert [t.track_id for t in finished] == [t1.track_id] and tracker.tracks == []
    (t2,) = tracker.update(np.array([[0, 0, 50, 50]], np.float32), np.array([0.9]), None, 5, 0.0)
    assert t2.track_id != t1.track_id


def test_short_gap_is_bridged():
    tracker = IoUTracker(TrackerConfig(max_missed=5))
    (t1,) = tracker.update(np.array([[100, 100, 180, 180]], np.float32), np.array([0.9]), None, 0, 0.0)
    tracker.update(np.zeros((0, 4)), np.zeros(0), None, 1, 0.0)
    (t2,) = tracker.update(np.array([[102, 100, 182, 180]], np.float32), np.array([0.9]), None, 2, 0.0)
    assert t2.track_id == t1.track_id and t2.hits == 2


def test_embed_schedule():
    cfg = TrackerConfig(reembed_every=10, pending_every=2, quality_gain=0.1)
    tracker = IoUTracker(cfg)
    (t,) = tracker.update(np.array([[0, 0, 80, 80]], np.float32), np.array([0.9]), None, 0, 0.0)
    assert tracker.should_embed(t, 0.5, 0)                 # new track
    tracker.mark_embedded(t, 0.5, 0)
    assert not tracker.should_embed(t, 0.5, 1)
    assert tracker.should_embed(t, 0.5, 2)                 # undecided: every 2 frames
    assert tracker.should_embed(t, 0.6, 1)                 # quality improved by > 10 %
    t.decided = True
    tracker.mark_embedded(t, 0.6, 2)
    assert not tracker.should_embed(t, 0.6, 11)
    assert tracker.should_embed(t, 0.6, 12)                # decided: every 10 frames
