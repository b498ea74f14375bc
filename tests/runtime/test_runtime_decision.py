"""DecisionMaker: N of the last M, unknowns, cooldown per identity, withdrawn accepts, the single-image decision,
thresholds from the model table."""
import pytest

from hsst.core.errors import ConfigError
from hsst.core.metadata import ModelMeta
from hsst.runtime.config import DecisionConfig
from hsst.runtime.decision import DecisionMaker, Verdict, resolve_threshold


def test_n_of_m_accepts_only_with_enough_matching_votes():
    dm = DecisionMaker(DecisionConfig(n=2, m=3, cooldown_s=0), threshold=0.4)
    assert dm.update(1, [("ann", 0.5)], 0.0, 0).event is None     # 1 of 1
    assert dm.update(1, [("bob", 0.6)], 0.1, 1).event is None     # ann 1, bob 1
    event = dm.update(1, [("ann", 0.45)], 0.2, 2).event            # ann 2 of 3
    assert event.kind == "accept" and event.identity == "ann" and event.track_id == 1
    assert event.score == pytest.approx(0.475) and event.votes == {"n": 2, "m": 3, "matches": 2}
    assert event.threshold == 0.4 and event.far == 1e-3
    assert dm.update(1, [("ann", 0.9)], 0.3, 3) == Verdict(None, decided=True)   # decided tracks stay quiet
    assert dm.accepted(1) == "ann"


def test_below_threshold_is_unknown_once():
    dm = DecisionMaker(DecisionConfig(n=2, m=3), threshold=0.4)
    verdicts = [dm.update(7, [("ann", 0.39)], i * 0.1, i) for i in range(6)]
    events = [v.event for v in verdicts]
    kinds = [e.kind for e in events if e is not None]
    assert kinds == ["unknown"] and [v.decided for v in verdicts] == [False, False] + [True] * 4
    assert events[2].kind == "unknown" and events[2].identity is None and events[2].score == pytest.approx(0.39)


def test_old_votes_leave_the_window():
    dm = DecisionMaker(DecisionConfig(n=2, m=3, emit_unknown=False), threshold=0.4)
    seq = [("ann", 0.5), (None, -1.0), (None, -1.0), ("ann", 0.5), (None, -1.0)]
    assert all(dm.update(1, [c], i, i) == Verdict() for i, c in enumerate(seq))


def test_cooldown_per_identity_across_tracks():
    dm = DecisionMaker(DecisionConfig(n=1, m=1, cooldown_s=5.0), threshold=0.4)
    assert dm.update(1, [("ann", 0.8)], 10.0, 0).event.identity == "ann"
    assert dm.update(2, [("ann", 0.8)], 12.0, 1) == Verdict(None, decided=True)   # same person, inside cooldown
    assert dm.suppressed == 1 and dm.accepted(2) == "ann"
    assert dm.update(3, [("bob", 0.8)], 12.5, 2).event.identity == "bob"  # other identities are not blocked
    assert dm.update(4, [("ann", 0.8)], 15.5, 3).event.identity == "ann"  # cooldown over


def test_end_track_forgets_state():
    dm = DecisionMaker(DecisionConfig(n=1, m=1, cooldown_s=0), threshold=0.4)
    dm.update(1, [("ann", 0.8)], 0.0, 0)
    dm.end_track(1)
    assert dm.accepted(1) is None and not dm.decided(1)


def test_threshold_from_model_table_then_config():
    meta = ModelMeta(thresholds={"1e-3": 0.41, "1e-4": 0.52})
    assert resolve_threshold(meta, DecisionConfig(far=1e-4)) == (0.52, "model")
    assert resolve_threshold(meta, DecisionConfig(far=1e-5, threshold=0.6)) == (0.6, "config")
    with pytest.raises(ConfigError, match="no cosine threshold for FAR 1e-05"):
        resolve_threshold(meta, DecisionConfig(far=1e-5))


def test_accept_withdrawn_when_someone_else_takes_the_spot():
    dm = DecisionMaker(DecisionConfig(n=2, m=3, cooldown_s=0), threshold=0.4)
    dm.update(1, [("ann", 0.8)], 0.0, 0)
    assert dm.update(1, [("ann", 0.8)], 0.1, 1).event.identity == "ann"
    assert dm.update(1, [("bob", 0.7)], 0.2, 2) == Verdict(None, decided=True)        # one odd vote: kept
    assert dm.update(1, [("bob", 0.7)], 0.3, 3) == Verdict(None, decided=False, restarted=True)  # two: withdrawn
    assert dm.resets == 1 and dm.accepted(1) is None
    event = dm.update(1, [("bob", 0.75)], 0.4, 4).event
    assert event.kind == "accept" and event.identity == "bob"


def test_single_image_decision_uses_the_same_threshold():
    dm = DecisionMaker(DecisionConfig(n=2, m=3), threshold=0.4)
    assert dm.decide_once([("ann", 0.4), ("bob", 0.3)]) == "ann"          # at the threshold: accepted
    assert dm.decide_once([("ann", 0.3999)]) is None and dm.decide_once([]) is None
    assert not dm.decided(1)                                               # no track state touched
