"""Decisions: per track, N of the last M embeddings agree on an identity above the FAR threshold; for a single
image, its best candidate at or above the same threshold. One policy object, :class:`DecisionMaker`, makes both."""
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


@dataclass(frozen=True)
class Verdict:
    """What one embedding's vote did to its track.

    Attributes:
        event: ``accept`` or ``unknown`` event to emit (without timings), or None.
        decided: the track holds a decision now (accepted, or reported unknown): it is re-checked at the slow
            rate (``tracker.reembed_every``).
        restarted: this vote withdrew the track's accept; it is being decided again from this frame.
    """

    event: Optional[Event] = None
    decided: bool = False
    restarted: bool = False


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

    def matches(self, identity: Optional[str], score: float) -> bool:
        """Whether one gallery answer counts as ``identity``: a name at or above the threshold."""
        return identity is not None and score >= self.threshold

    def decide_once(self, candidates: Sequence[Tuple[Optional[str], float]]) -> Optional[str]:
        """The identity a single image's gallery answer accepts (no track: no window, no cooldown), or None.

        Args:
            candidates: top-k ``(identity, score)`` best first.
        """
        identity, score = candidates[0] if candidates else (None, float("-inf"))
        return identity if self.matches(identity, float(score)) else None

    def update(self, track_id: int, candidates: Sequence[Tuple[Optional[str], float]], now: float,
               frame_index: int) -> Verdict:
        """Add one embedding's gallery answer for a track.

        Args:
            track_id: the track.
            candidates: top-k ``(identity, score)`` best first (identity None when the gallery is empty).
            now: current time (monotonic seconds; used for the cooldown).
            frame_index: frame of the embedding.

        Returns:
            The event to emit (if any) and the track's decision state.
        """
        identity, score = candidates[0] if candidates else (None, float("-inf"))
        window = self._windows.setdefault(track_id, collections.deque(maxlen=self.config.m))
        window.append(_Vote(identity, float(score), frame_index))
        restarted = False
        if track_id in self._accepted:
            if not self._withdrawn(track_id, window):
                return Verdict(None, True)
            restarted = True
        event = self._decide(track_id, window, candidates, now, frame_index)
        return Verdict(event, self.decided(track_id), restarted)

    def _withdrawn(self, track_id: int, window: Deque[_Vote]) -> bool:
        """Withdraw the track's accept when ``n`` of its window no longer match it; True when withdrawn."""
        who = self._accepted[track_id]
        disagree = sum(1 for v in window if v.identity != who or not self.matches(v.identity, v.score))
        if disagree < self.config.n:
            return False
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
        return True

    def _decide(self, track_id: int, window: Deque[_Vote], candidates: Sequence[Tuple[Optional[str], float]],
                now: float, frame_index: int) -> Optional[Event]:
        """Accept when ``n`` votes of the window match one identity; ``unknown`` once when the window fills."""
        cfg = self.config
        counts: Dict[str, List[float]] = collections.defaultdict(list)
        for vote in window:
            if self.matches(vote.identity, vote.score):
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

    def decided(self, track_id: int) -> bool:
        """Whether a track holds a decision: accepted, or reported unknown (and not withdrawn since)."""
        return track_id in self._accepted or track_id in self._unknown_sent

    def end_track(self, track_id: int) -> None:
        """Forget a finished track (its identity's cooldown stays)."""
        self._windows.pop(track_id, None)
        self._accepted.pop(track_id, None)
        self._unknown_sent.discard(track_id)
