"""Frames from a list as a source (real images and deliberately broken arrays), live or not."""
from hsst.runtime.sources import FrameSource


class ListSource(FrameSource):
    """Frames from a list; ``live`` makes the pipeline drop the oldest frames when it falls behind."""

    def __init__(self, frames, live=False):
        super().__init__("list")
        self.frames, self.is_live, self.pos = list(frames), live, 0

    def open(self):
        self.pos = 0

    def read(self):
        if self.pos >= len(self.frames):
            return None
        self.pos += 1
        return self.frames[self.pos - 1]
