"""Events reach callbacks (a failing callback is contained) and the JSONL log, crops included on request;
metrics give percentiles, fps and watched counters."""
import json

import numpy as np
import pytest

from hsst.core.errors import ConfigError

from hsst.runtime.events import Event, EventBus, JsonlEventLog, read_events
from hsst.runtime.telemetry import Metrics


def test_bus_contains_failing_callbacks():
    bus, seen = EventBus(), []

    def broken(event):
        raise RuntimeError("display crashed")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.emit(Event("accept", track_id=3, identity="ann", score=0.61))
    assert bus.errors == 1 and seen[0].identity == "ann"


def test_jsonl_log_with_crop(tmp_path):
    log = JsonlEventLog(tmp_path / "logs" / "events.jsonl")
    crop = np.tile(np.arange(112, dtype=np.uint8), (112, 1))
    log(Event("accept", track_id=1, identity="ann", score=np.float32(0.5), crop=crop,
              timings={"face_to_decision": 80.0}))
    log(Event("source", message="camera lost"))
    log.close()
    log(Event("unknown"))  # after close: ignored, no exception
    events = read_events(tmp_path / "logs" / "events.jsonl")
    assert [e["kind"] for e in events] == ["accept", "source"]
    assert events[0]["score"] == 0.5 and len(events[0]["crop_jpeg_b64"]) > 100
    assert "crop_jpeg_b64" not in events[1] and events[1]["message"] == "camera lost"
    assert json.dumps(Event("unknown").to_dict())


def test_unwritable_log_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open the event log"):
        JsonlEventLog(blocker / "events.jsonl")


def test_metrics_snapshot():
    m = Metrics()
    for i in range(100):
        m.observe("embed", (i + 1) / 1000.0)
    for t in np.arange(0, 1.0, 0.1):
        m.frame_done(now=float(t))
    m.count("bad_frames", 2)
    m.watch_queue("frames", lambda: 1)
    m.watch_counter("reconnects", lambda: 4)
    snap = m.snapshot()
    assert snap["latency"]["embed"]["p50_ms"] == 50.5 and snap["latency"]["embed"]["p95_ms"] == 95.05
    assert abs(snap["fps"] - 10.0) < 1e-6
    assert snap["counters"] == {"bad_frames": 2, "frames_processed": 10, "reconnects": 4}
    assert snap["queues"] == {"frames": 1}
