"""A features checkpoint restored and the rest of the events applied equals applying every event."""

import numpy as np
import pytest

from app.reco.features import LiveFeatures, encode_checkpoint
from ml.reco.strategies import RecoConfig
from tests.unit.app.reco.test_features import history

CONFIG = RecoConfig(coview_window=10, coview_ttl_s=86_400.0, popularity_half_life_s=2 * 86_400.0,
                    trending_window_s=2 * 86_400.0)


def users_of(f: LiveFeatures) -> list[tuple]:
    return [(u, s.item.tolist(), s.at.tolist(), s.weight.tolist(), s.purchase.tolist(), s.seen.tolist(),
             s.final.tolist()) for u, s in f.users.items()]


def test_a_checkpoint_and_the_events_after_it_equal_every_event_applied():
    rows = history(seed=3, users=40, items=30, events=3_000)
    live = LiveFeatures(CONFIG, 0.0, 1_000)
    live.rebuild(rows[:1_700])
    live.model()  # a list asked: the co-view counts merged
    body = encode_checkpoint(live.capture(1_700).copy(chunk=7))
    restored = LiveFeatures(CONFIG, 0.0, 1_000)
    restored.restore(body, 1_700)
    restored.rebuild(rows[1_700:])
    replay = LiveFeatures(CONFIG, 0.0, 1_000)
    replay.rebuild(rows)
    a, b = restored.model(), replay.model()
    assert restored.items.ids == replay.items.ids and a.now == b.now and restored.sequence == replay.sequence
    for name in ("popularity", "decayed_popularity", "trending", "last_seen", "created_at"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # Counts merged into float32 at the checkpoint, and once at the end in the replay: within one float32 step.
    np.testing.assert_allclose(a.coview.toarray(), b.coview.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(a.coview.toarray() > 0, b.coview.toarray() > 0)
    np.testing.assert_allclose(a.bought_together.toarray(), b.bought_together.toarray(), rtol=1e-6)
    assert list(restored._trending) == list(replay._trending)
    assert users_of(restored) == users_of(replay)


def test_fewer_users_held_now_keeps_the_most_recent_and_a_restore_needs_empty_features():
    live = LiveFeatures(CONFIG, 0.0, 1_000)
    live.rebuild(history(seed=4, users=30, events=500))
    body = encode_checkpoint(live.capture(500).copy())
    small = LiveFeatures(CONFIG, 0.0, 10)
    small.restore(body, 500)
    assert users_of(small) == users_of(live)[-10:]
    with pytest.raises(RuntimeError):
        small.restore(body, 500)
    with pytest.raises(ValueError):
        LiveFeatures(CONFIG, 0.0, 10).restore(body, 499)  # not what the row says it covers
    other = LiveFeatures(RecoConfig(coview_window=3), 0.0, 10)
    with pytest.raises(ValueError, match="other settings"):
        other.restore(body, 500)
    assert len(other.items) == 0 and other.sequence == 0
