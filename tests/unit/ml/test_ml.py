"""Scoring: the model, the providers against the CPU reference, the batcher."""

import asyncio

import numpy as np
import pytest

from ml import features
from ml.batcher import Batcher, Overloaded, ScoringTimeout
from ml.model import DEFAULT_MODEL, SpikingNet, forward, make_default, outputs
from ml.providers import build_providers, to_bf16, to_bfp8


@pytest.fixture(scope="module")
def net():
    return SpikingNet.load(DEFAULT_MODEL)


def _requests(n=8, per=64, seed=1) -> list[tuple[np.ndarray, np.ndarray]]:
    """n requests from random users, each with `per` candidates: (user block, candidate columns)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        user = features.user_block(rng.random(64).astype(np.float32), list(rng.integers(0, 64, 4)),
                                   rng.random(8).astype(np.float32), float(rng.random()), int(rng.integers(1, 8)))
        out.append((user, features.candidate_columns(rng.random(per), np.linspace(0, 1, per, dtype=np.float32))))
    return out


def _full_rows(requests) -> np.ndarray:
    return np.concatenate([features.candidate_matrix(user, cand) for user, cand in requests])


def _inputs(n=512, seed=1) -> np.ndarray:
    return _full_rows(_requests(n, 1, seed))


def test_shipped_model_is_the_default_and_fits_the_layout(net):
    fresh = make_default()
    assert net.version == "default-v1"
    assert np.array_equal(net.w1, fresh.w1) and net.w1.shape == (features.DIM, 64)


def test_scores_are_bounded_and_depend_on_the_user(net):
    x = _inputs(64)
    score, ctr, bid = outputs(forward(net, x))
    assert np.all(np.abs(score) <= 1) and np.all((ctr >= 0) & (ctr <= 0.05)) and np.all((bid >= 0) & (bid <= 1))
    assert np.std(score) > 0.01


def test_bad_model_file_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, version=np.array("x"), w1=np.zeros((10, 4)), b1=np.zeros(4), w2=np.zeros((4, 3)),
             b2=np.zeros(3), theta=np.array(0.1))
    with pytest.raises(ValueError, match="layout"):
        SpikingNet.load(path)
    with pytest.raises(ValueError):
        SpikingNet.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("name", sorted(build_providers()))
def test_provider_matches_cpu_within_its_precision(net, name):
    provider = build_providers()[name]
    x = _inputs(700)
    reference = np.stack(outputs(forward(net, x)), axis=1)
    got = np.stack(outputs(provider.run(net, x)), axis=1)
    error = np.abs(got - reference)
    assert error.mean() < provider.tolerance, f"{name}: mean error {error.mean():.4f}"
    if provider.precision == "fp32":
        assert error.max() < 1e-6
    assert provider.stats.device_batches == -(-700 // provider.max_batch)  # honours its batch limit
    assert provider.stats.modeled_us == pytest.approx(provider.modeled_latency_us(700))


@pytest.mark.parametrize("name", sorted(build_providers()))
def test_factored_scoring_matches_the_full_rows(net, name):
    """Scoring each request's user block once plus the candidate columns gives the full-row answer."""
    provider = build_providers()[name]
    requests = _requests(11, 64, seed=5)
    users = np.stack([u for u, _ in requests])
    owner = np.repeat(np.arange(len(requests)), 64)
    cand = np.concatenate([c for _, c in requests])
    reference = np.stack(outputs(forward(net, _full_rows(requests))), axis=1)
    got = np.stack(outputs(provider.run_factored(net, users, owner, cand)), axis=1)
    error = np.abs(got - reference)
    assert error.mean() < provider.tolerance, f"{name}: mean error {error.mean():.4f}"
    if provider.precision == "fp32":
        assert error.max() < 1e-5
    assert provider.stats.device_batches == -(-len(cand) // provider.max_batch)


@pytest.mark.parametrize("name", sorted(build_providers()))
def test_batch_scores_match_the_full_rows(net, name):
    """score() on a batch as the batcher sends it: runs of requests that share one candidate array (no
    frequency cap in use), requests with their own columns, and requests with fewer candidates. The cpu
    provider answers with the compiled kernel, the others with their number formats in numpy."""
    provider = build_providers()[name]
    requests = _requests(12, 64, seed=9)
    shared = requests[0][1]
    requests = [(u, shared if k < 5 or k == 7 else c if k < 10 else c[:17]) for k, (u, c) in enumerate(requests)]
    reference = outputs(forward(net, _full_rows(requests)))
    for users, cands in (([u for u, _ in requests], [c for _, c in requests]),  # mixed
                         ([u for u, _ in requests[:5]], [shared] * 5),          # all share one array
                         ([requests[11][0]], [requests[11][1]])):              # a lone call
        users = np.array(users, dtype=np.float64 if len(users) == 5 else np.float32)  # float64: converted
        got = provider.score(net, users, cands)
        start = 0 if len(users) != 1 else sum(len(c) for _, c in requests[:11])
        for want, have in zip(reference, got, strict=True):
            want = want[start:start + len(have)]
            assert have.flags.c_contiguous and len(have) == sum(len(c) for c in cands)
            error = np.abs(have - want)
            assert error.mean() < provider.tolerance, f"{name}: mean error {error.mean():.4f}"
            if provider.precision == "fp32":
                assert error.max() < 1e-5


def test_number_formats():
    a = np.array([1.0, 1.00390625, 3.14159265, -2.5e-3], dtype=np.float32)
    assert to_bf16(a)[0] == 1.0 and to_bf16(a)[1] == 1.0  # 1+2^-8 rounds to even in bf16
    assert abs(to_bf16(a)[2] - 3.140625) < 1e-6
    b = to_bfp8(np.array([[100.0, 1.0, 0.01] + [0.0] * 13], dtype=np.float32))
    assert b[0, 0] == 100.0 and b[0, 1] == 1.0 and b[0, 2] == 0.0  # small values lose to the shared exponent


async def test_batcher_groups_calls_up_to_max_batch(net):
    provider = build_providers()["cpu"]
    batcher = Batcher(provider, lambda: net, max_batch=4, max_wait_us=50_000)
    requests = _requests(4, 3)
    results = await asyncio.gather(*(batcher.score(user, cand, timeout=1) for user, cand in requests))
    assert batcher.recent[0][:2] == (4, 12) and batcher.batches == 1
    expected = outputs(forward(net, _full_rows(requests)))[0]
    assert np.allclose(np.concatenate([r[0] for r in results]), expected, atol=1e-6)


async def test_batcher_flushes_a_lone_call_after_the_window(net):
    batcher = Batcher(build_providers()["cpu"], lambda: net, max_batch=16, max_wait_us=500)
    await batcher.score(*_requests(1, 1)[0], timeout=1)
    calls, rows, waited = batcher.recent[0]
    assert (calls, rows) == (1, 1) and waited >= 0.0005


async def test_batcher_refuses_when_full_and_times_out(net):
    batcher = Batcher(build_providers()["cpu"], lambda: net, max_batch=100, max_wait_us=10_000_000, max_queue=2)
    x = _requests(1, 1)[0]
    short = asyncio.ensure_future(batcher.score(*x, timeout=0.05))
    patient = asyncio.ensure_future(batcher.score(*x, timeout=5))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await batcher.score(*x)
    with pytest.raises(ScoringTimeout):
        await short
    # The short deadline cut the 10 s window: the patient call is scored at once, not after 10 s.
    score, _, _ = await asyncio.wait_for(patient, 1)
    assert len(score) == 1
    assert batcher.overloaded == 1 and batcher.timeouts == 1
