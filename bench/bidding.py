"""Bidding benchmarks: REST /v1/bid, gRPC, streams, scoring alone, the batcher window, providers, memory."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
import urllib.request
from pathlib import Path

from bench.load import Scenario
from bench.server import ServerProcess

CONFORMANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "openrtb"
CANDIDATES = 64


def setup_server(server: ServerProcess) -> tuple[str, str]:
    """Admin and exchange keys, and 64 campaigns that all fit a 300x250 banner."""
    admin = server.cli("create-api-key", "--name", "bench-admin", "--role", "admin").stdout.strip().splitlines()[-1]
    exchange = server.cli("create-api-key", "--name", "bench-exchange", "--role", "exchange"
                          ).stdout.strip().splitlines()[-1]
    return admin, exchange


def seed_campaigns(server: ServerProcess, admin_key: str) -> None:
    """64 live campaigns, through the workflow as a marketing team would take them there: created and submitted by
    one admin, approved by two others (their budget needs two), scheduled to start now. Created but never approved,
    they would stay drafts, and every bid request would be a no-bid."""
    approvers = [server.cli("create-api-key", "--name", f"bench-approver-{n}", "--role", "admin"
                            ).stdout.strip().splitlines()[-1] for n in (1, 2)]

    def post(path: str, key: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body or {}).encode(),
                                     headers={"X-Api-Key": key, "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    for i in range(CANDIDATES):
        body = {"id": f"bench-{i}", "name": f"bench {i}", "advertiser_domain": "contrail.example",
                "bid_cap_micros": 2_000_000 + i * 50_000, "daily_budget_micros": 10**12,
                "creatives": [{"id": f"c{i}", "format": "banner", "markup": "<a>ad</a>", "w": 300, "h": 250}]}
        post("/v1/admin/campaigns", admin_key, body)
        post(f"/v1/admin/campaigns/bench-{i}/submit", admin_key)
        for approver in approvers:
            post(f"/v1/admin/campaigns/bench-{i}/approve", approver)
        state = post(f"/v1/admin/campaigns/bench-{i}/schedule", admin_key)["state"]
        if state != "live":
            raise RuntimeError(f"bench campaign bench-{i} is {state}, not live: bids would all be no-bids")


def bid_bodies(n: int = 200) -> list[bytes]:
    """The conformance requests plus generated 300x250 requests from many users."""
    bodies = [p.read_bytes() for p in sorted(CONFORMANCE.glob("ortb26_req_*.json"))]
    rng = random.Random(7)
    for i in range(n):
        bodies.append(json.dumps({
            "id": f"gen-{i}", "tmax": 100,
            "imp": [{"id": "1", "bidfloor": round(rng.uniform(0.1, 1.5), 2), "banner": {"w": 300, "h": 250}}],
            "site": {"id": "s1", "domain": "news.example", "page": "https://news.example/a"},
            "device": {"devicetype": rng.choice([1, 2, 4]), "geo": {"country": "PRT"}},
            "user": {"id": f"user-{rng.randrange(100_000)}"}}).encode())
    return bodies


def rest_scenarios(exchange_key: str) -> list[Scenario]:
    headers = {"X-Api-Key": exchange_key, "Content-Type": "application/json"}
    return [Scenario("REST /v1/bid (64 candidates)", "/v1/bid", "POST", bid_bodies(), headers)]


# ---- gRPC and stream load, each in a child process so the server has its own core ----

def _grpc_child(port: int, key: str, mode: str, seconds: float, queue) -> None:
    from grpclib.client import Channel

    from handlers.rpc import bidding_grpc, bidding_pb2, platform_grpc, platform_pb2

    async def main() -> tuple[int, float]:
        channel = Channel("127.0.0.1", port)
        md = {"x-api-key": key}
        bodies = [b.decode() for b in bid_bodies()]
        done = 0
        stop = time.perf_counter() + seconds
        started = time.perf_counter()
        if mode == "stream":
            stub = bidding_grpc.BiddingServiceStub(channel)
            # Like an exchange's buffered gRPC client (grpc-core, grpc-go), 32 requests go out in one
            # HTTP/2 DATA frame: each message keeps its own 5-byte gRPC prefix. Python grpclib would
            # otherwise spend a frame and a socket write per message, on the cores the server uses.
            from handlers.rpc.bidding import framed
            messages = [framed(bidding_pb2.BidRequestProto(openrtb_json=body)) for body in bodies]
            async with stub.StreamBids.open(metadata=md) as stream:
                await stream.send_request()

                async def reader():
                    nonlocal done
                    async for _ in stream:
                        done += 1
                sent = 0
                task = asyncio.create_task(reader())
                while time.perf_counter() < stop:
                    while sent - done < 512:
                        await stream._stream.send_data(b"".join(messages[(sent + k) % len(messages)]
                                                                for k in range(32)))
                        sent += 32
                    await asyncio.sleep(0)
                await stream.end()
                await task
        else:
            bid_stub = bidding_grpc.BiddingServiceStub(channel)
            echo_stub = platform_grpc.PlatformServiceStub(channel)

            async def worker(offset: int) -> None:
                nonlocal done
                i = offset
                while time.perf_counter() < stop:
                    if mode == "echo":
                        await echo_stub.Echo(platform_pb2.EchoRequest(message="x"), metadata=md)
                    else:
                        await bid_stub.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=bodies[i % len(bodies)]),
                                                  metadata=md)
                    i += 1
                    done += 1
            await asyncio.gather(*(worker(n) for n in range(64)))
        channel.close()
        return done, time.perf_counter() - started

    queue.put(asyncio.run(main()))


def _ws_child(url: str, key: str, seconds: float, queue) -> None:
    import aiohttp
    import msgspec
    answers = msgspec.json.Decoder(list[msgspec.Raw])

    async def main() -> tuple[int, float]:
        bodies = bid_bodies()
        done = 0
        stop = time.perf_counter() + seconds
        started = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url.replace('http', 'ws')}/v1/stream/bids?api_key={key}") as ws:
                async def reader():
                    nonlocal done
                    async for msg in ws:
                        done += len(answers.decode(msg.data))  # one array of answers per array sent
                        if done >= sent and time.perf_counter() > stop:
                            return
                sent = 0
                task = asyncio.create_task(reader())
                while time.perf_counter() < stop:
                    while sent - done < 512:
                        batch = [json.loads(bodies[(sent + k) % len(bodies)]) for k in range(32)]
                        await ws.send_str(json.dumps(batch))
                        sent += 32
                    await asyncio.sleep(0)
                await asyncio.wait_for(task, 10)
        return done, time.perf_counter() - started

    queue.put(asyncio.run(main()))


def run_child(target, *args) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=target, args=(*args, queue))
    child.start()
    done, elapsed = queue.get(timeout=60)
    child.join()
    return done / elapsed


def protocol_rates(server: ServerProcess, key: str, seconds: float) -> list[tuple[str, float]]:
    return [
        ("gRPC Echo (baseline)", run_child(_grpc_child, server.grpc_port, key, "echo", seconds)),
        ("gRPC ProcessBid", run_child(_grpc_child, server.grpc_port, key, "unary", seconds)),
        ("gRPC StreamBids", run_child(_grpc_child, server.grpc_port, key, "stream", seconds)),
        ("websocket /v1/stream/bids", run_child(_ws_child, server.url, key, seconds)),
    ]


# ---- in-process measurements ----

def _scoring_child(queue) -> None:
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    from ml.model import DEFAULT_MODEL, SpikingNet, outputs
    from ml.providers import build_providers
    net = SpikingNet.load(DEFAULT_MODEL)
    rng = np.random.default_rng(1)
    x = rng.random((16 * CANDIDATES, 256), dtype=np.float32)
    # The bidder's batches: 16 requests' user blocks, 64 candidates each differing in two columns, which
    # each request has of its own (a frequency cap in use) or all share (the usual case).
    users = rng.random((16, 256), dtype=np.float32)
    own = list(rng.random((16, CANDIDATES, 2), dtype=np.float32))
    shared = [own[0]] * 16

    def rate(score) -> float:
        score()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            score()
            n += len(x)
        return n / (time.perf_counter() - started)
    rows = []
    for name, provider in build_providers().items():
        rows.append((name, provider.precision, provider.max_batch,
                     rate(lambda p=provider: outputs(p.run(net, x))),
                     rate(lambda p=provider: p.score(net, users, own)),
                     rate(lambda p=provider: p.score(net, users, shared)),
                     provider.modeled_latency_us(len(x))))
    queue.put(rows)


def scoring_rates() -> list[tuple]:
    """Candidate scores/s per provider on one core (1,024-row batches: 16 calls x 64 candidates)."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_scoring_child, args=(queue,))
    child.start()
    rows = queue.get(timeout=120)
    child.join()
    return rows


def batcher_window(max_wait_us: int = 500) -> dict[str, float]:
    """Lone calls on an otherwise idle loop: how long the window really is."""
    import numpy as np

    from ml.batcher import Batcher
    from ml.model import DEFAULT_MODEL, SpikingNet
    from ml.providers import build_providers
    net = SpikingNet.load(DEFAULT_MODEL)

    async def main():
        b = Batcher(build_providers()["cpu"], lambda: net, max_batch=16, max_wait_us=max_wait_us)
        x = (np.zeros(256, dtype=np.float32), np.zeros((CANDIDATES, 2), dtype=np.float32))
        for _ in range(300):
            await b.score(*x, timeout=1)
        waits = sorted(w for _, _, w in b.recent)
        burst = Batcher(build_providers()["cpu"], lambda: net, max_batch=16, max_wait_us=max_wait_us)
        for _ in range(50):
            await asyncio.gather(*(burst.score(*x, timeout=1) for _ in range(40)))
        sizes = [c for c, _, _ in burst.recent]
        return {"p50_us": waits[len(waits) // 2] * 1e6, "p99_us": waits[int(len(waits) * 0.99)] * 1e6,
                "max_us": waits[-1] * 1e6, "burst_mean_calls": sum(sizes) / len(sizes),
                "burst_full_share": sum(1 for s in sizes if s == 16) / len(sizes)}
    return asyncio.run(main())


def profile_memory(n: int = 100_000) -> float:
    """Resident memory in MiB added by n L1-cached profiles (64 interests, 4 segments, 8 loyalty), measured
    in a fresh interpreter: in one that has already freed memory, the profiles reuse it and look smaller."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_profile_memory_child, args=(n, queue))
    child.start()
    used = queue.get(timeout=120)
    child.join()
    return used


def _profile_memory_child(n: int, queue) -> None:
    queue.put(_profile_memory(n))


def _profile_memory(n: int) -> float:
    import gc

    from app.bidding.profiles import CachedProfile
    from state.profiles import Profile

    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    gc.collect()
    before = rss()
    rng = random.Random(3)
    cache = {}
    for i in range(n):
        cache[f"user-{i}"] = (0.0, CachedProfile.of(Profile(f"user-{i}", [round(rng.random(), 3) for _ in range(64)],
                                                         [rng.randrange(64) for _ in range(4)], [0.5] * 8, 0.0)))
    gc.collect()
    used = rss() - before
    assert len(cache) == n
    return used
