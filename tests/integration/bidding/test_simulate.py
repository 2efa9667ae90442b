"""The traffic simulator (app/simulate.py) against the real app: profiles, bids, notices and clicks."""

import io
import json

import pytest

from app.main import PLATFORM
from app.simulate import NotLoopback, Simulator, check_loopback
from ml.sim import Oracle
from tests.integration.bidding.helpers import _client


async def test_the_simulator_drives_the_server_through_its_interfaces(aiohttp_client, tmp_path):
    from app.runtime.clock import SystemClock
    client = await _client(aiohttp_client, tmp_path, SystemClock())
    platform = client.app[PLATFORM]
    _, admin = await platform.api_keys.create("sim", "admin")
    log = io.StringIO()
    sim = Simulator(3, f"http://127.0.0.1:{client.port}", admin, log=log)
    summary = await sim.run(rate=60, seconds=2)
    assert summary.requests == 120 and summary.errors == 0
    assert summary.bids > 0 and summary.wins > 0 and summary.losses > 0
    assert summary.bids == summary.wins + summary.losses
    assert 0 < summary.profiles <= summary.requests
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    assert [x["request_id"] for x in lines] == [f"sim3-r{n}" for n in range(120)]  # in request order
    assert sum(x["won"] for x in lines) == summary.wins and sum(x["clicked"] for x in lines) == summary.clicks
    assert all(0.002 <= x["true_ctr"] <= 0.05 for x in lines)
    assert all(x["price"] <= x["bid"] for x in lines if x["won"])
    # The profiles were written once each, with what the population says.
    written = {x["user_id"] for x in lines}
    assert summary.profiles == len(written)
    some = sim.population.by_id[next(iter(written))]
    cached = await platform.profiles.get(some.user_id)
    assert list(cached.segments) == list(some.segments)
    # The oracle answers the log's impressions from the seed alone.
    oracle = Oracle(3)
    oracle.load(lines)
    assert all(abs(oracle.ctr_of(x["request_id"]) - x["true_ctr"]) < 1e-6 for x in lines)
    # What the server recorded: the wins, losses and clicks the simulator reported.
    await platform.event_log.flush()
    kinds = [e.type for e in await platform.event_log.query(None, None, 0, 100_000)]
    assert kinds.count("Win") == summary.wins and kinds.count("Loss") == summary.losses
    assert kinds.count("Click") == summary.clicks


async def test_the_same_seed_sends_the_same_requests(aiohttp_client, tmp_path):
    from app.simulate import Draws, bid_request
    from ml.sim import population
    pop = population(5)
    a, b = Draws(pop, 5), Draws(pop, 5)
    first = [bid_request(pop, a.next(), 5) for _ in range(50)]
    assert first == [bid_request(pop, b.next(), 5) for _ in range(50)]
    other = population(6)
    assert first != [bid_request(other, d, 6) for d in (Draws(other, 6).next() for _ in range(50))]


def test_only_loopback_servers_are_driven():
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80/"):
        assert check_loopback(url)
    for url in ("http://example.com", "http://10.0.0.1:8080", "ftp://127.0.0.1", "127.0.0.1:8080"):
        with pytest.raises(NotLoopback):
            check_loopback(url)


async def test_clicks_drawn_from_the_truth_reach_the_click_notice(aiohttp_client, tmp_path):
    """Real click rates are about 1 %: a truth that clicks 90 % of the time shows the clicks' path in a second."""
    from app.bidding.events import BidClicked
    from app.runtime.clock import SystemClock
    client = await _client(aiohttp_client, tmp_path, SystemClock())
    platform = client.app[PLATFORM]
    heard: list[BidClicked] = []
    platform.bus.subscribe(BidClicked, heard.append)
    _, admin = await platform.api_keys.create("sim", "admin")
    _, partner = await platform.api_keys.create("partner", "partner")
    log = io.StringIO()
    sim = Simulator(4, f"http://localhost:{client.port}", admin, profile_key=partner, log=log)
    sim.truth.p_click = lambda traveller, device, recency: 0.9  # type: ignore[method-assign]
    summary = await sim.run(rate=40, seconds=1)
    assert summary.errors == 0 and summary.wins > 0 and 0 < summary.clicks <= summary.wins
    clicked = [json.loads(x) for x in log.getvalue().splitlines() if json.loads(x)["clicked"]]
    assert sorted(e.bid_id for e in heard) == sorted(x["bid_id"] for x in clicked)
    assert {e.user_id for e in heard} == {x["user_id"] for x in clicked}


def test_the_command_refuses_other_hosts_and_bad_rates(capsys):
    from app.__main__ import main
    assert main(["simulate", "--api-key", "k", "--url", "http://example.com:8080"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["simulate", "--api-key", "k", "--rate", "0"]) == 2
    assert main(["simulate", "--api-key", "k", "--seconds", "nan"]) == 2


def test_the_command_fails_when_no_request_got_through(capsys):
    from app.__main__ import main
    from bench.server import free_port
    # Nobody listens there: every request fails, and the exit code says so (a script must not read it as a run).
    assert main(["simulate", "--api-key", "k", "--url", f"http://127.0.0.1:{free_port()}", "--rate", "20",
                 "--seconds", "0.3"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["requests"] == 0
    assert captured.err.startswith("error: every request failed")


async def test_a_profile_write_the_server_refused_is_tried_again_and_its_error_never_left_unread(aiohttp_client,
                                                                                                 tmp_path):
    import asyncio
    import gc
    import time

    import aiohttp

    from app.runtime.clock import SystemClock
    client = await _client(aiohttp_client, tmp_path, SystemClock())
    _, admin = await client.app[PLATFORM].api_keys.create("sim", "admin")
    unread: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unread.append(context["message"]))
    sim = Simulator(5, "http://127.0.0.1:9", admin)   # nothing listens there: every write is refused
    sim._start = time.time()   # as run() sets it: profiles are written relative to the run's start
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await sim._profile(session, 0)
        # A request that stops waiting (the run ending) leaves its write to fail with nobody reading it.
        waiter = asyncio.ensure_future(sim._profile(session, 1))
        await asyncio.sleep(0)
        waiter.cancel()
        for _ in range(100):
            if 1 not in sim._profiles:
                break
            await asyncio.sleep(0.01)
        assert not sim._profiles   # both failed writes are forgotten, to be tried again
        del waiter
        gc.collect()
        assert not [m for m in unread if "never retrieved" in m], unread
        sim.base = f"http://127.0.0.1:{client.port}"   # the server is back: the next request writes the profile
        await sim._profile(session, 0)
    assert sim.summary.profiles == 1 and 0 in sim._profiles
