"""A canary's routing, its measurements and the verdict on it; the bid scorer's batches split between two models."""

import asyncio
import dataclasses
import random

import numpy as np
import pytest

from app.bidding.models import ModelHolder
from app.config import CanaryConfig
from app.learning.canary import PROMOTED, ROLLED_BACK, verdict
from app.runtime.canary import Arm, Split
from app.runtime.metrics import Metrics
from ml import features
from ml.batcher import Batcher
from ml.model import make_default
from ml.providers import build_providers

LIMITS = CanaryConfig(share=0.1, duration_s=3600, max_p95_ms=2.0, max_error_rate=0.01, min_calls=100)


def test_one_traveller_always_lands_on_the_same_side_and_about_the_share_land_on_the_canary():
    split = Split("canary", "v2", 0.1, 100)
    keys = [f"traveller-{n}" for n in range(20_000)]
    taken = [split.takes(k) for k in keys]
    assert 0.09 < sum(taken) / len(keys) < 0.11
    assert taken == [split.takes(k) for k in keys]
    drawn = Split("canary", "v2", 0.25, 100, random.Random(1))
    assert 0.23 < sum(drawn.draws() for _ in range(20_000)) / 20_000 < 0.27


def test_p95_and_error_rate_of_an_arm():
    arm = Arm(window=1000)
    for ms in range(1, 101):      # 1..100 ms: the 95th is 95 ms
        arm.observe(ms / 1000)
    arm.failed(2)
    assert arm.p95_s == pytest.approx(0.095) and arm.calls == 102 and arm.error_rate == pytest.approx(2 / 102)
    recent = Arm(window=10)       # only the newest scoring times count
    for s in [1.0] * 50 + [0.001] * 10:
        recent.observe(s)
    assert recent.p95_s == 0.001


def _split(canary_ms: float, calls: int, errors: int = 0) -> Split:
    split = Split(None, "v2", 0.1, 1000)
    for _ in range(calls - errors):
        split.canary.observe(canary_ms / 1000)
        split.live.observe(0.0005)
    split.canary.failed(errors)
    return split


def test_a_canary_that_holds_is_promoted_at_the_end_of_its_period_not_before():
    held = _split(0.3, 500)
    assert verdict(held, LIMITS, now=1000, ends_at=3600) is None
    decision, reason = verdict(held, LIMITS, now=3600, ends_at=3600)
    assert decision == PROMOTED and "500 calls" in reason and "live 0.500 ms" in reason


def test_a_limit_crossed_rolls_the_canary_back_at_once_but_only_after_min_calls():
    assert verdict(_split(5.0, 99), LIMITS, now=10, ends_at=3600) is None   # one slow start does not decide
    decision, reason = verdict(_split(5.0, 100), LIMITS, now=10, ends_at=3600)
    assert decision == ROLLED_BACK and "max_p95_ms" in reason
    decision, reason = verdict(_split(0.3, 200, errors=3), LIMITS, now=10, ends_at=3600)
    assert decision == ROLLED_BACK and "max_error_rate" in reason
    assert verdict(_split(0.3, 200, errors=2), LIMITS, now=10, ends_at=3600) is None   # 1% is within the limit


def test_a_canary_with_too_few_calls_by_its_end_is_not_promoted():
    decision, reason = verdict(_split(0.3, 40), LIMITS, now=3600, ends_at=3600)
    assert decision == ROLLED_BACK and "too few" in reason


def _holder(batcher_provider: str, tmp_path) -> tuple[ModelHolder, Batcher]:
    live = make_default()
    path = tmp_path / "live.npz"
    live.save(path)
    holder = ModelHolder(str(path), Metrics())
    batcher = Batcher(build_providers()[batcher_provider], holder, max_batch=1)
    holder.scores_through(batcher)
    return holder, batcher


def _request(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    user = rng.random(features.DIM).astype(np.float32)
    return user, rng.random((3, len(features.CANDIDATE_COLUMNS))).astype(np.float32)


async def test_the_canary_scores_its_share_of_batches_with_its_own_weights(tmp_path):
    holder, batcher = _holder("cpu", tmp_path)
    live = holder.current
    canary = make_default("canary-v2", seed=7)
    split = Split(canary, "canary-v2", 0.2, 10_000, random.Random(3))
    holder.split(split)
    provider = build_providers()["cpu"]
    on_canary = 0
    for n in range(1000):
        user, cand = _request(n)
        score = (await batcher.score(user, cand))[0]
        if np.allclose(score, provider.score(canary, user[None, :], [cand])[0], atol=1e-5):
            on_canary += 1
        else:
            assert np.allclose(score, provider.score(live, user[None, :], [cand])[0], atol=1e-5)
    assert split.canary.calls == on_canary and split.live.calls == 1000 - on_canary
    assert 150 < on_canary < 250 and split.canary.p95_s > 0 and split.live.p95_s > 0

    holder.split(None)   # no canary: the batcher's plain path again, the live model only
    assert batcher.scorer is None
    await batcher.score(*_request(1))
    assert split.live.calls == 1000 - on_canary


async def test_batches_a_failing_canary_takes_are_scored_by_the_live_model(tmp_path):
    holder, batcher = _holder("ampere", tmp_path)   # a numpy provider: a misshapen model raises, as a bug would
    good = make_default("canary-v3", seed=7)
    broken = dataclasses.replace(good, w2=good.w2[:, :2].copy())
    split = Split(broken, "canary-v3", 0.5, 1000, random.Random(5))
    holder.split(split)
    results = await asyncio.gather(*(batcher.score(*_request(n)) for n in range(200)))
    assert len(results) == 200 and all(len(r[0]) == 3 for r in results)
    assert 60 < split.canary.errors == split.canary.calls < 140 and split.live.errors == 0
    assert split.live.calls == 200   # the failed canary batches were scored again by the live model


def test_a_call_the_canary_fails_counts_as_its_error_and_is_left_to_the_live_version():
    split = Split("canary", "v2", 0.5, 100)
    assert split.by_canary(lambda: 1 / 0, calls=3) is None   # the caller then asks the live version
    assert split.by_live(lambda: "live answer", calls=3) == "live answer"
    assert (split.canary.calls, split.canary.errors, split.live.calls, split.live.errors) == (3, 3, 3, 0)
    assert split.by_canary(lambda: "canary answer") == "canary answer"
    assert (split.canary.calls, split.canary.errors, len(split.canary.summary())) == (4, 3, 5)
    with pytest.raises(ZeroDivisionError):   # the live version's own failure is the caller's, and counted
        split.by_live(lambda: 1 / 0)
    assert (split.live.calls, split.live.errors) == (4, 1)
