"""IoU / constant-velocity tracker: stable track ids for faces across frames, and when to embed them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from hsst.core.boxes import iou_matrix
from hsst.runtime.config import TrackerConfig


@dataclass
class Track:
    """One face followed over frames.

    Attributes:
        track_id: unique, increasing id.
        bbox: current box (detected, or predicted while missed).
        kps: last detected landmarks (5, 2).
        det_score: last detector score.
        first_frame: frame index where the track started.
        first_time: capture timestamp (monotonic s) of that frame: the start of "face appears -> decision".
        usable_time: capture timestamp of the first frame whose face passed the quality gate (None before):
            the start of "usable face -> decision" (a face walking in at the frame edge is not usable yet).
        last_frame: last frame with a matching detection.
        det_index: index of the matching detection in the last :meth:`IoUTracker.update` (-1: none).
        hits: frames with a detection.
        missed: consecutive frames without one.
        velocity: box centre motion per frame (dx, dy).
        best_quality: best quality score embedded so far (-1 before the first embedding).
        last_embed_frame: frame index of the last embedding (-1: never).
        embeddings: number of embeddings computed.
        decided: an accept or unknown decision was made for this track (embeddings slow down to
            ``reembed_every``).
        state: free per-track data for other stages.
    """

    track_id: int
    bbox: np.ndarray
    kps: Optional[np.ndarray]
    det_score: float
    first_frame: int
    first_time: float
    last_frame: int
    hits: int = 1
    missed: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    best_quality: float = -1.0
    last_embed_frame: int = -1
    embeddings: int = 0
    decided: bool = False
    usable_time: Optional[float] = None
    det_index: int = -1
    state: Dict[str, object] = field(default_factory=dict)

    def predicted(self) -> np.ndarray:
        shift = np.array([*self.velocity, *self.velocity], np.float32)
        return self.bbox + shift


class IoUTracker:
    """Greedy IoU matching of detections to motion-predicted tracks, then centre distance for fast motion.

    Args:
        config: thresholds and the embedding schedule.
    """

    def __init__(self, config: Optional[TrackerConfig] = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: List[Track] = []
        self._next_id = 1
        self.finished: List[Track] = []

    def update(self, boxes: np.ndarray, scores: np.ndarray, kps: Optional[np.ndarray], frame_index: int,
               timestamp: float) -> List[Track]:
        """Advance one frame with this frame's detections.

        Args:
            boxes: (N, 4) x1y1x2y2.
            scores: (N,) detector scores.
            kps: (N, 5, 2) landmarks or None.
            frame_index: index of the frame.
            timestamp: capture time of the frame (monotonic seconds).

        Returns:
            Tracks matched to a detection in this frame (``missed == 0``) that have at least ``min_hits``
            hits; the detection's data is in ``track.bbox`` / ``kps`` / ``det_score``.
            Tracks dropped this frame are appended to :attr:`finished`.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        cfg = self.config
        for track in self.tracks:
            track.det_index = -1
        predicted = np.array([t.predicted() for t in self.tracks], np.float32).reshape(-1, 4)
        iou = iou_matrix(predicted, boxes)
        matched_t, matched_d = set(), set()

        def claim(ti: int, di: int) -> None:
            """Give detection ``di`` to track ``ti`` unless either is already matched (greedy, best first)."""
            if ti in matched_t or di in matched_d:
                return
            matched_t.add(ti)
            matched_d.add(di)
            self._assign(self.tracks[ti], boxes[di], scores[di], None if kps is None else kps[di], frame_index)
            self.tracks[ti].det_index = int(di)

        if iou.size:
            order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
            for ti, di in order:
                if iou[ti, di] < cfg.iou_threshold:
                    break
                claim(ti, di)
        if cfg.max_center_shift > 0 and len(matched_t) < len(self.tracks) and len(matched_d) < len(boxes):
            # Fast motion: IoU of a moving face with its prediction can be 0; fall back to centre distance.
            free_t = [t for t in range(len(self.tracks)) if t not in matched_t]
            free_d = [d for d in range(len(boxes)) if d not in matched_d]
            pc = (predicted[free_t, :2] + predicted[free_t, 2:]) / 2
            dc = (boxes[free_d, :2] + boxes[free_d, 2:]) / 2
            psize = np.maximum(predicted[free_t, 2] - predicted[free_t, 0], 1.0)
            dsize = np.maximum(boxes[free_d, 2] - boxes[free_d, 0], 1.0)
            dist = np.linalg.norm(pc[:, None] - dc[None], axis=2) / psize[:, None]
            ratio = dsize[None, :] / psize[:, None]
            dist[(ratio < 0.67) | (ratio > 1.5)] = np.inf
            for flat in np.argsort(dist, axis=None):
                i, j = np.unravel_index(flat, dist.shape)
                if dist[i, j] > cfg.max_center_shift:
                    break
                claim(free_t[i], free_d[j])
        for ti, track in enumerate(self.tracks):
            if ti not in matched_t:
                track.missed += 1
                track.bbox = track.predicted()
        for di in range(len(boxes)):
            if di not in matched_d:
                self.tracks.append(Track(self._next_id, boxes[di].copy(), None if kps is None else kps[di].copy(),
                                         float(scores[di]), frame_index, timestamp, frame_index, det_index=di))
                self._next_id += 1
        alive = []
        for track in self.tracks:
            (alive if track.missed <= cfg.max_missed else self.finished).append(track)
        self.tracks = alive
        return [t for t in self.tracks if t.missed == 0 and t.hits >= cfg.min_hits]

    def coast(self) -> None:
        """Advance one frame without detection (``detector.every_n_frames``): tracks move by their velocity."""
        for track in self.tracks:
            track.bbox = track.predicted()

    @staticmethod
    def _assign(track: Track, box: np.ndarray, score: float, kps: Optional[np.ndarray], frame_index: int) -> None:
        gap = max(1, frame_index - track.last_frame)
        new_c = (box[:2] + box[2:]) / 2
        # Smoothed velocity from the last detected box (not the prediction) over the gap.
        last_box = track.bbox - np.array([*track.velocity, *track.velocity], np.float32) * track.missed
        old_c = (last_box[:2] + last_box[2:]) / 2
        track.velocity = (0.5 * track.velocity + 0.5 * (new_c - old_c) / gap).astype(np.float32)
        track.bbox = box.copy()
        track.kps = None if kps is None else kps.copy()
        track.det_score = float(score)
        track.last_frame = frame_index
        track.hits += 1
        track.missed = 0

    def pop_finished(self) -> List[Track]:
        """Tracks that ended since the last call."""
        done, self.finished = self.finished, []
        return done

    def should_embed(self, track: Track, quality_score: float, frame_index: int) -> bool:
        """Embed when the track is new, when its face got clearly better, or on its periodic schedule."""
        cfg = self.config
        if track.last_embed_frame < 0:
            return True
        if quality_score > track.best_quality * (1.0 + cfg.quality_gain) and quality_score > 0:
            return True
        period = cfg.reembed_every if track.decided else cfg.pending_every
        return frame_index - track.last_embed_frame >= period

    @staticmethod
    def mark_embedded(track: Track, quality_score: float, frame_index: int) -> None:
        track.last_embed_frame = frame_index
        track.best_quality = max(track.best_quality, quality_score)
        track.embeddings += 1
