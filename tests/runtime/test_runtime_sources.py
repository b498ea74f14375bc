"""Frame sources on real files: an MJPG video of LFW faces, image folders (8/16-bit), a failing source that
recovers, an unreachable camera, CSI without GStreamer."""
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hsst.core.image import read_image
from hsst.runtime.config import SourceConfig
from hsst.runtime.sources import (FrameSource, ImageFolderSource, OpenCVSource, SourceError, gstreamer_available,
                                  make_source, open_source, parse_uri)

N_FRAMES = 12


@pytest.fixture(scope="module")
def lfw_video(lfw_dir, tmp_path_factory) -> Path:
    photos = [sorted(p.glob("*.jpg"))[0] for p in sorted(lfw_dir.iterdir()) if p.is_dir()][:N_FRAMES]
    path = tmp_path_factory.mktemp("video") / "faces.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    assert writer.isOpened()
    for photo in photos:
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:, 35:285] = cv2.resize(read_image(photo), (250, 240))
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("uri, expected", [
    ("0", ("index", 0)), ("v4l2:///dev/video2", ("v4l2", "/dev/video2")), ("/dev/video1", ("v4l2", "/dev/video1")),
    ("v4l2://3", ("index", 3)), ("csi://1", ("csi", 1)), ("rtsp://cam:554/live", ("rtsp", "rtsp://cam:554/live")),
    ("file://clip.mp4", ("file", "clip.mp4")), ("frames/", ("folder", "frames")),
    ("gst://videotestsrc ! appsink", ("gst", "videotestsrc ! appsink")),
])
def test_parse_uri(uri, expected):
    assert parse_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "csi://left", "ftp://x/y"])
def test_parse_uri_errors(uri):
    with pytest.raises(SourceError):
        parse_uri(uri)


def test_video_file_bgr_and_gray(lfw_video):
    with make_source(SourceConfig(uri=f"file://{lfw_video}")) as src:
        frames = list(src)
    assert len(frames) == N_FRAMES and frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    with make_source(SourceConfig(uri=str(lfw_video), color="gray")) as src:
        gray = list(src)
    assert len(gray) == N_FRAMES and gray[0].shape == (240, 320)


def test_missing_video_file(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        make_source(SourceConfig(uri=str(tmp_path / "none.avi"))).open()


def test_image_folder_keeps_native_formats(lfw_dir, tmp_path):
    photo = read_image(sorted((lfw_dir / sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())[0]).glob("*.jpg"))[0])
    gray16 = (cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "a_bgr.png"), photo)
    cv2.imwrite(str(tmp_path / "b_gray16.png"), gray16)
    cv2.imwrite(str(tmp_path / "c_gray8.pgm"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    (tmp_path / "d_corrupt.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    src = make_source(SourceConfig(uri=f"file://{tmp_path}/"))
    assert isinstance(src, ImageFolderSource)
    with src:
        frames = list(src)
    assert [f.shape for f in frames] == [photo.shape, gray16.shape, gray16.shape]
    assert frames[1].dtype == np.uint16 and np.array_equal(frames[1], gray16)
    assert src.skipped == 1


def test_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="has no images"):
        ImageFolderSource(tmp_path).open()


class FlakySource(FrameSource):
    """A real video file source that fails after ``fail_after`` frames, like a camera whose cable is pulled,
    and delivers the remaining frames once reopened."""

    is_live = True

    def __init__(self, path: Path, fail_after: int) -> None:
        super().__init__("flaky")
        self.inner = OpenCVSource("file", str(path))
        self.fail_after = fail_after
        self.count = 0
        self.failed = False
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.inner._cap is None:
            self.inner.open()

    def read(self):
        if self.count == self.fail_after and not self.failed:
            self.failed = True
            raise SourceError("flaky: cable pulled")
        frame = self.inner.read()
        if frame is not None:
            self.count += 1
        return frame

    def close(self) -> None:
        pass  # keep the file position: the "camera" continues where it was


def test_failing_source_is_reopened(lfw_video):
    events = []
    flaky = FlakySource(lfw_video, fail_after=5)
    cfg = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02)
    src = open_source(cfg, on_event=events.append, factory=lambda: flaky)
    frames = list(src)
    assert len(frames) == N_FRAMES
    assert src.reconnects == 1 and flaky.opens == 2
    messages = [e.message for e in events]
    assert any("lost" in m for m in messages) and any("reconnected" in m for m in messages)
    assert all(e.kind == "source" for e in events)


def test_unreachable_camera_backs_off_then_fails():
    events = []
    cfg = SourceConfig(uri="99", reconnect_attempts=3, reconnect_initial_s=0.01, reconnect_max_s=0.02)
    with pytest.raises(SourceError, match="cannot open source index:99"):
        open_source(cfg, on_event=events.append)
    assert len(events) == 3
    assert "retrying" in events[0].message and "gave up after 3" in events[-1].message


def test_missing_v4l2_device():
    with pytest.raises(SourceError, match="does not exist"):
        make_source(SourceConfig(uri="v4l2:///dev/video97")).open()


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_csi_without_gstreamer_says_what_to_install():
    with pytest.raises(SourceError, match="no GStreamer support.*JetPack"):
        make_source(SourceConfig(uri="csi://0")).open()


class StallingCamera(FrameSource):
    """Real video frames; once, after ``stall_after`` frames, ``read`` hangs (no error, no frame) until the
    source is closed: what a stalled USB/CSI pipeline does. A new instance continues where the last stopped."""

    is_live = True

    def __init__(self, frames, state):
        super().__init__("stalling-camera")
        self.frames, self.state = frames, state
        self.closed = threading.Event()

    def open(self):
        self.state["opens"] += 1

    def read(self):
        if self.state["pos"] == self.state["stall_after"] and not self.state["stalled"]:
            self.state["stalled"] = True
            self.closed.wait(10)                   # hangs until close()
            raise SourceError("read interrupted by close")
        if self.state["pos"] >= len(self.frames):
            return None
        self.state["pos"] += 1
        return self.frames[self.state["pos"] - 1]

    def close(self):
        self.closed.set()


def test_stalled_camera_is_detected_and_reopened(lfw_video):
    with make_source(SourceConfig(uri=str(lfw_video))) as src:
        frames = list(src)
    state = {"pos": 0, "stall_after": 4, "stalled": False, "opens": 0}
    events = []
    cfg = SourceConfig(read_timeout_s=0.3, reconnect_initial_s=0.01)
    start = time.monotonic()
    src = open_source(cfg, on_event=events.append, factory=lambda: StallingCamera(frames, state))
    got = list(src)
    src.close()
    assert len(got) == N_FRAMES and time.monotonic() - start < 5
    assert src.stalls == 1 and src.reconnects == 1 and state["opens"] == 2
    assert any("stalled: no frame for 0.3 s" in e.message for e in events)


# -- finite sources fail at once: a file that never opened is not a camera that dropped ----------------------
@pytest.mark.parametrize("make", [
    lambda tmp: f"file://{tmp / 'missing.avi'}",
    lambda tmp: f"file://{tmp}/",                                          # a folder without images
])
def test_finite_source_that_cannot_open_fails_without_retrying(tmp_path, make):
    events = []
    cfg = SourceConfig(uri=make(tmp_path), reconnect_initial_s=5.0, reconnect_attempts=2)  # a retry: >= 5 s
    start = time.monotonic()
    with pytest.raises(SourceError, match="not found|has no images"):
        open_source(cfg, on_event=events.append)
    assert time.monotonic() - start < 2 and len(events) == 1 and "retrying" not in events[0].message


def test_file_without_a_decodable_frame_is_an_error(lfw_video, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(bytes(range(256)) * 8)                    # OpenCV opens it, then decodes nothing
    src = open_source(SourceConfig(uri=f"file://{corrupt}", reconnect_initial_s=5.0))
    with pytest.raises(SourceError, match="ended before its first frame: OpenCV decodes no video frame"):
        src.read()
    src.close()


def test_folder_of_unreadable_images_is_an_error(lfw_dir, tmp_path):
    photo = sorted((lfw_dir / "AJ_Cook").glob("*.jpg"))[0]
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.jpg").write_bytes(photo.read_bytes()[:40])     # truncated inside the header
    src = open_source(SourceConfig(uri=f"file://{tmp_path}/"))
    with pytest.raises(SourceError, match="none of its 2 image file"):
        src.read()
    src.close()


def test_finite_source_ends_normally_after_frames(lfw_video):
    src = open_source(SourceConfig(uri=f"file://{lfw_video}"))
    assert len(list(src)) == N_FRAMES and src.frames == N_FRAMES
    assert src.read() is None                                    # the end stays the end, not an error
    src.close()
