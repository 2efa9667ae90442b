"""The DSPs' own win and billing notices are queued with the win they follow (an outbox): a DSP that fails is called
again with backoff until it answers, a 4xx is not retried, a repeated notice calls nothing again, and a notice not
yet delivered when the process is killed -9 is delivered after the restart. Against local DSP servers."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from app.dsp.wins import MAX_ATTEMPTS
from app.main import PLATFORM
from bench.server import ServerProcess
from tests.conftest import ADMIN, bearer
from tests.integration.dsp.conftest import SIMPLE_BANNER, platforms, post_bid, router_client, until


def _path(url: str, price: str) -> str:
    url = url.replace("${AUCTION_PRICE}", price)
    return url[url.index("/v1/"):]


async def _forwarded(client) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("contrail_dsp_notices_forwarded_total{"):
            result = line.split('result="')[1].split('"')[0]
            out[result] = float(line.split()[-1])
    return out


async def _queued(client) -> list[tuple]:
    return await client.app[PLATFORM].records_db.fetchall(
        "SELECT kind, due_at, attempts FROM dsp_forwards ORDER BY kind")


async def test_a_failing_dsp_is_called_again_with_backoff_until_it_answers(aiohttp_client, tmp_path, clock,
                                                                          fake_dsps):
    dsp = await fake_dsps("bid", price=2.0, notice_statuses=[503, 502])
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=dsp))
    relay = client.app[PLATFORM].dsp.wins.relay_once
    bid = (await (await post_bid(client, SIMPLE_BANNER)).json())["seatbid"][0]["bid"][0]
    resp = await client.get(_path(bid["burl"], "1.5"))
    assert resp.status == 200 and (await resp.json())["recorded"] is True
    await until(lambda: dsp.answered == [503])  # called at once
    for _ in range(100):  # until the failure is written back: due again in 1 s
        [(kind, due_at, attempts)] = await _queued(client)
        if due_at == clock.now() + 1:
            break
        await asyncio.sleep(0.02)
    assert (kind, attempts, due_at) == ("burl", 1, clock.now() + 1)
    assert await relay() == 0  # not due yet
    admin = await bearer(client, *ADMIN, "admin")
    status = await (await client.get("/v1/dsp/status", headers=admin)).json()
    assert [p["notices_queued"] for p in status["platforms"]] == [1]  # waiting for its retry
    clock.advance(1)
    assert await relay() == 1
    assert dsp.answered == [503, 502]
    clock.advance(1)
    assert await relay() == 0  # the second wait is 2 s
    clock.advance(1)
    assert await relay() == 1
    assert dsp.answered == [503, 502, 200]
    assert [n["kind"] for n in dsp.notices] == ["burl"] * 3 and dsp.notices[-1]["price"] == "1.5"
    [(_, due_at, attempts)] = await _queued(client)
    assert due_at is None and attempts == 3  # finished, kept so that a repeat calls nothing
    assert (await _forwarded(client)) == {"retried": 2, "ok": 1}
    status = await (await client.get("/v1/dsp/status", headers=admin)).json()
    assert [p["notices_queued"] for p in status["platforms"]] == [0]

    # The same billing notice again (an exchange's retry) records nothing and calls the DSP no more.
    again = await client.get(_path(bid["burl"], "1.5"))
    assert again.status == 200 and (await again.json())["recorded"] is False
    clock.advance(3600)
    assert await relay() == 0
    await asyncio.sleep(0.05)
    assert len(dsp.notices) == 3


async def test_a_refusal_is_not_retried_and_a_dead_dsp_is_given_up_on(aiohttp_client, tmp_path, clock, fake_dsps):
    dsp = await fake_dsps("bid", price=2.0, notice_statuses=[404])
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=dsp))
    relay = client.app[PLATFORM].dsp.wins.relay_once

    async def win() -> None:
        bid = (await (await post_bid(client, SIMPLE_BANNER)).json())["seatbid"][0]["bid"][0]
        resp = await client.post("/v1/dsp/win", json={"platform": "acme", "bid_id": bid["id"], "win_price": 0.5},
                                 headers=client.headers)
        assert resp.status == 200, await resp.text()

    async def run_out() -> None:
        for _ in range(MAX_ATTEMPTS + 2):
            await asyncio.sleep(0.05)
            clock.advance(3600)
            await relay()

    await win()  # its nurl and its burl, each called at once: one refused (404), one delivered
    await until(lambda: len(dsp.answered) == 2)
    await run_out()
    assert sorted(dsp.answered) == [200, 404]  # the refused one was not called again
    dsp.notice_status = 500  # the DSP goes down for good
    await win()
    await until(lambda: len(dsp.answered) == 4)
    await run_out()
    assert dsp.answered[2:] == [500] * (2 * MAX_ATTEMPTS)  # each of the two notices, then given up
    assert await _forwarded(client) == {"ok": 1, "refused": 1, "retried": 2 * (MAX_ATTEMPTS - 1), "failed": 2}
    assert all(due_at is None for _, due_at, _ in await _queued(client))


async def test_an_unusable_notice_url_records_the_win_and_stops_no_relay(aiohttp_client, tmp_path, clock, fake_dsps):
    """A DSP's nurl/burl that cannot be called or stored (a host that does not encode, a NUL, another scheme) is
    not queued: the win is recorded, the notice counted failed. One queued before (by an older version) is given up
    on its first call, and the relay goes on; a row for a DSP this node does not know is left, then deleted."""
    dsp = await fake_dsps("bid", price=2.0)
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=dsp))
    platform = client.app[PLATFORM]
    relay = platform.dsp.wins.relay_once
    for bad in ("http://a..b/x", "http://dsp.test/n?x=\x00", "ftp://dsp.test/n"):
        dsp.notice_url = bad
        bid = (await (await post_bid(client, SIMPLE_BANNER)).json())["seatbid"][0]["bid"][0]
        resp = await client.get(_path(bid["burl"], "1.5"))
        assert resp.status == 200 and (await resp.json())["recorded"] is True
    assert await _queued(client) == []
    assert (await _forwarded(client)) == {"failed": 3}
    now = clock.now()
    await platform.records_db.write([(
        "INSERT INTO dsp_forwards(platform, bid_id, kind, url, queued_at, due_at) VALUES (?,?,?,?,?,?)", row)
        for row in (("acme", "old", "burl", "http://a..b/x", now, now), ("gone", "b1", "burl", dsp.url, now, now))])
    assert await relay() == 1  # only acme's: no node here is configured with "gone"
    assert (await _forwarded(client))["failed"] == 4 and dsp.notices == []
    assert await relay() == 0
    clock.advance(86_401)
    await relay()
    assert await _queued(client) == []  # finished rows after the bids' life; a forgotten DSP's after a day


async def test_a_notice_not_delivered_before_a_kill_9_is_delivered_after_the_restart(tmp_path, fake_dsps):
    dsp = await fake_dsps("bid", price=2.0, notice_status=503)
    server = ServerProcess(tmp_path / "var", CONTRAIL__DSP__PLATFORMS=platforms(acme=dsp),
                           CONTRAIL__DSP__INCLUDE_OWN_BIDDER="false")
    key = server.cli("create-api-key", "--name", "exchange", "--role", "exchange").stdout.strip().splitlines()[-1]
    exchange = {"X-Api-Key": key}
    try:
        await asyncio.to_thread(server.start)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.url}/v1/dsp/bid", data=SIMPLE_BANNER, headers=exchange) as resp:
                assert resp.status == 200, await resp.text()
                bid = (await resp.json())["seatbid"][0]["bid"][0]
            async with session.get(server.url + _path(bid["burl"], "1.25")) as resp:
                assert resp.status == 200 and (await resp.json())["recorded"] is True
            os.kill(server.proc.pid, signal.SIGKILL)  # right after the acknowledgement
        await asyncio.to_thread(server.proc.wait)
        failed_before = len(dsp.answered)  # 0 or 1: the DSP was failing
        assert set(dsp.answered) <= {503}
        dsp.notice_status = 200
        await asyncio.to_thread(server.start)
        await until(lambda: 200 in dsp.answered, timeout_s=10)
        await asyncio.sleep(2.5)  # no second successful call
        assert dsp.answered[failed_before:].count(200) == 1 and dsp.answered[-1] == 200
        call = dsp.notices[-1]
        assert (call["kind"], call["price"], call["bid"]) == ("burl", "1.25", "b0")
    finally:
        server.stop()
