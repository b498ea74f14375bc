"""Per-track decisions: N of the last M embeddings agree on an identity above the FAR threshold."""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from hsst.core.errors import ConfigError
from hsst.core.metadata import ModelMeta
from hsst.runtime.config import DecisionConfig
from hsst.runtime.events import ACCEPT, UNKNOWN, Event

logger = logging.getLogger(__name__)


def resolve_threshold(meta: Optional[ModelMeta], config: DecisionConfig) -> Tuple[float, str]:
    """Cosine threshold for ``config.far``: the model's threshold table first, then ``config.threshold``.

    Returns:
        ``(threshold, origin)`` with origin ``"model"`` or ``"config"``.

    Raises:
        ConfigError: neither the model nor the configuration gives a threshold.
    """
    if meta is not None:
        value = meta.threshold_for_far(config.far)
        if value is not None:
            return value, "model"
    if config.threshold is not None:
        return float(config.threshold), "config"
    table = sorted(meta.thresholds) if meta is not None else []
    raise ConfigError(f"no cosine threshold for FAR {config.far:g}: the model's table has {table or 'no entries'}; "
                      "set decision.far to one of them or give decision.threshold")


@dataclass
class _Vote:
    identity: Optional[str]
    score: float
    frame_index: int


class DecisionMaker:
    """Keeps the last M gallery answers per track and turns them into accept / unknown events.

    An accepted track keeps being checked (every ``tracker.reembed_every`` frames): when ``n`` of its last
    ``m`` embeddings no longer match the accepted identity, the accept is withdrawn and the track is decided
    again (another person took the spot without a gap the tracker could see).

    Args:
        config: N, M, cooldown, FAR.
        threshold: cosine threshold for the FAR (see :func:`resolve_threshold`).
    """

    def __init__(self, config: DecisionConfig, threshold: float) -> None:
        self.config = config
        self.threshold = float(threshold)
        self._windows: Dict[int, Deque[_Vote]] = {}
        self._accepted: Dict[int, str] = {}
        self._unknown_sent: set = set()
        self._last_accept: Dict[str, float] = {}
        self.suppressed = 0
        self.resets = 0
        #: track id whose accept was withdrawn by the last :meth:`update` (None: none)
        self.last_reset: Optional[int] = None

    def update(self, track_id: int, candidates: Sequence[Tuple[Optional[str], float]], now: float,
               frame_index: int) -> Optional[Event]:
        """Add one embedding's gallery answer for a track.

        Args:
            track_id: the track.
            candidates: top-k ``(identity, score)`` best first (identity None when the gallery is empty).
            now: current time (monotonic seconds; used for the cooldown).
            frame_index: frame of the embedding.

        Returns:
            An ``accept`` or ``unknown`` event (without timings), or None.
        """
        cfg = self.config
        identity, score = candidates[0] if candidates else (None, float("-inf"))
        window = self._windows.setdefault(track_id, collections.deque(maxlen=cfg.m))
        window.append(_Vote(identity, float(score), frame_index))
        self.last_reset = None
        if track_id in self._accepted:
            who = self._accepted[track_id]
            disagree = sum(1 for v in window if v.identity != who or v.score < self.threshold)
            if disagree < cfg.n:
                return None
            # Someone else now stands where the accepted person stood (the tracker cannot tell two people
            # apart at the same spot): forget the accept and decide again from the newest vote.
            logger.info("track %d no longer matches %s (%d of the last %d embeddings); deciding again",
                        track_id, who, disagree, len(window))
            del self._accepted[track_id]
            self._unknown_sent.discard(track_id)
            last = window[-1]
            window.clear()
            window.append(last)
            self.resets += 1
            self.last_reset = track_id
        counts: Dict[str, List[float]] = collections.defaultdict(list)
        for vote in window:
            if vote.identity is not None and vote.score >= self.threshold:
                counts[vote.identity].append(vote.score)
        best = max(counts.items(), key=lambda kv: (len(kv[1]), sum(kv[1])), default=None)
        cands = [[c, round(float(s), 4)] for c, s in candidates if c is not None]
        if best is not None and len(best[1]) >= cfg.n:
            who, scores = best
            self._accepted[track_id] = who
            last = self._last_accept.get(who)
            if last is not None and now - last < cfg.cooldown_s:
                self.suppressed += 1
                logger.debug("accept of %s on track %d suppressed by cooldown", who, track_id)
                return None
            self._last_accept[who] = now
            return Event(ACCEPT, track_id=track_id, identity=who, score=round(sum(scores) / len(scores), 4),
                         far=cfg.far, threshold=self.threshold, frame_index=frame_index,
                         votes={"n": cfg.n, "m": cfg.m, "matches": len(scores)}, candidates=cands)
        if cfg.emit_unknown and len(window) == cfg.m and track_id not in self._unknown_sent:
            self._unknown_sent.add(track_id)
            top = max(window, key=lambda v: v.score)
            return Event(UNKNOWN, track_id=track_id, identity=None,
                         score=round(top.score, 4) if top.score > float("-inf") else None, far=cfg.far,
                         threshold=self.threshold, frame_index=frame_index,
                         votes={"n": cfg.n, "m": cfg.m, "matches": len(best[1]) if best else 0}, candidates=cands)
        return None

    def accepted(self, track_id: int) -> Optional[str]:
        """Identity accepted for a track (also when the event was suppressed by the cooldown)."""
        return self._accepted.get(track_id)

    def end_track(self, track_id: int) -> None:
        """Forget a finished track (its identity's cooldown stays)."""
        self._windows.pop(track_id, None)
        self._accepted.pop(track_id, None)
        self._unknown_sent.discard(track_id)
