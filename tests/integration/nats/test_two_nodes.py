"""Two `python -m app serve` processes on one nats-server share the bid requests; kill -9 one, the other answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections import Counter, defaultdict

import nats

from bench.server import ServerProcess
from tests.integration.bidding.helpers import banner_request


def _start_both(servers: list[ServerProcess]) -> None:
    errors: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start(timeout=30)
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def _ask_all(nc, subject: str, key: str, first: int, count: int, then=None) -> dict[str, list[str]]:
    """Publish `count` requests, each with a reply subject of its own under one inbox, and collect every reply
    (a request answered twice would show up twice); `then()` runs once they are all with the server."""
    inbox = nc.new_inbox()
    replies: dict[str, list[str]] = defaultdict(list)
    done = asyncio.Event()

    async def on_reply(msg) -> None:
        replies[msg.subject.rsplit(".", 1)[1]].append(json.loads(msg.data)["ext"]["agent_id"])
        if len(replies) == count:
            done.set()
    sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
    for i in range(first, first + count):
        await nc.publish(subject, json.dumps(banner_request(f"b{i}", user_id=f"u{i % 50}")).encode(),
                         reply=f"{inbox}.b{i}", headers={"x-api-key": key})
    if then is not None:
        await nc.flush()
        then()
    await asyncio.wait_for(done.wait(), 15)
    await asyncio.sleep(0.2)  # time for a duplicate, were there one
    await sub.unsubscribe()
    return replies


async def test_two_nodes_share_the_stream_and_survive_a_kill(tmp_path, nats_server, bid_subject):
    env = {"CONTRAIL__NATS__URL": nats_server.url, "CONTRAIL__NATS__SUBJECT": bid_subject,
           "CONTRAIL__NATS__AGENTS": "2", "CONTRAIL__SERVER__LOG_LEVEL": "WARNING"}
    a = ServerProcess(tmp_path / "a" / "var", CONTRAIL__SERVER__NODE_ID="node-a", **env)
    # One exchange key both nodes know: made in A's store, which B starts from as a copy (a shared store's part).
    made = a.cli("create-api-key", "--name", "exchange", "--role", "exchange")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = ServerProcess(tmp_path / "b" / "var", CONTRAIL__SERVER__NODE_ID="node-b", **env)
    nc = await nats.connect(nats_server.url)
    try:
        await asyncio.to_thread(_start_both, [a, b])
        replies = await _ask_all(nc, bid_subject, key, 0, 1200)
        assert len(replies) == 1200 and all(len(r) == 1 for r in replies.values())  # each answered exactly once
        by_agent = Counter(r[0] for r in replies.values())
        assert set(by_agent) == {"node-a-nats", "node-b-nats"} and min(by_agent.values()) > 100, by_agent

        # Mid-stream: 32 requests in flight at a time, an exchange's retry after 1 s without an answer.
        answered: dict[int, str] = {}
        killed_at: list[int] = []

        async def one(i: int) -> None:
            data = json.dumps(banner_request(f"k{i}")).encode()
            for _ in range(3):
                try:
                    msg = await nc.request(bid_subject, data, timeout=1, headers={"x-api-key": key})
                except nats.errors.TimeoutError:
                    continue
                answered[i] = json.loads(msg.data)["ext"]["agent_id"]
                if len(answered) == 200 and not killed_at:
                    a.proc.kill()  # kill -9
                    killed_at.append(i)
                return
        slots = asyncio.Semaphore(32)

        async def bounded(i: int) -> None:
            async with slots:
                await one(i)
        await asyncio.gather(*(bounded(i) for i in range(800)))
        assert a.proc.wait(5) == -9
        assert len(answered) == 800  # every request answered, a few after a retry
        after = [agent for i, agent in answered.items() if i > killed_at[0] + 64]
        assert len(after) > 400 and set(after) == {"node-b-nats"}
        # And B alone still answers a fresh burst, exactly once each.
        replies = await _ask_all(nc, bid_subject, key, 5000, 300)
        assert all(r == ["node-b-nats"] for r in replies.values()) and len(replies) == 300
        # SIGTERM drains: what B was handed before it stopped taking messages is still answered.
        replies = await _ask_all(nc, bid_subject, key, 6000, 300, then=lambda: b.proc.terminate())
        assert len(replies) == 300 and all(r == ["node-b-nats"] for r in replies.values())
        assert await asyncio.to_thread(b.proc.wait, 20) == 0
    finally:
        await nc.close()
        a.stop()
        b.stop()
