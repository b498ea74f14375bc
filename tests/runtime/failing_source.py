"""A real video file as a live camera that fails once mid-stream (a USB camera replugged)."""
from hsst.runtime.sources import FrameSource, OpenCVSource, SourceError


class FailingOnceVideo(FrameSource):
    """A real video file that fails once after ``fail_after`` frames and then continues (camera replugged)."""

    is_live = True

    def __init__(self, path, fail_after):
        super().__init__("flaky-video")
        self.inner, self.fail_after, self.count, self.failed = OpenCVSource("file", str(path)), fail_after, 0, False

    def open(self):
        if self.inner._cap is None:
            self.inner.open()

    def read(self):
        if self.count == self.fail_after and not self.failed:
            self.failed = True
            raise SourceError("USB camera disconnected")
        frame = self.inner.read()
        self.count += frame is not None
        return frame
