"""Lifetime-value benchmark: gRPC PredictLTV against a trivial gRPC Echo in the same run, PredictLTVBatch of 1,000
customers, and the server's own latency histogram.

The server is a fresh one seeded with the demo data (`seed-demo`: 600 members' two years of purchases and the first
fit), so each prediction reads a real customer's history (held in the customer cache after the first read) and
explains itself, as `GET /v1/customers/{id}/ltv` does. Two rates: each call with a horizon no call asked for before
(the model runs every time), and the 600 customers asked again (the day's predictions are remembered).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path

from bench.bidding import run_child
from bench.server import ServerProcess

MEMBERS = 600
CONNECTIONS = 16
PACED_RATE = 1000  # the seed's target: p99 under 1 ms at 1,000 predictions a second


def _child(port: int, key: str, mode: str, seconds: float, queue) -> None:
    from grpclib.client import Channel

    from handlers.rpc import platform_grpc, platform_pb2, syncvalue_grpc
    from handlers.rpc import syncvalue_pb2 as pb

    async def main() -> tuple[int, float]:
        channel = Channel("127.0.0.1", port)
        md = {"x-api-key": key}
        echo, ltv = platform_grpc.PlatformServiceStub(channel), syncvalue_grpc.SyncValueServiceStub(channel)
        done = 0
        started = time.perf_counter()
        stop = started + seconds

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < stop:
                if mode == "echo":
                    await echo.Echo(platform_pb2.EchoRequest(message="x"), metadata=md)
                else:  # "fresh": a horizon no earlier call asked for, so nothing is remembered
                    horizon = 1 + i // MEMBERS if mode == "fresh" else 0
                    reply = await ltv.PredictLTV(pb.LTVPredictionRequest(
                        customer_id=f"member-{i % MEMBERS:04d}", platform="meta", horizon_days=horizon), metadata=md)
                    assert reply.status in (pb.SUCCESS, pb.NO_HISTORY), reply.message
                i += CONNECTIONS
                done += 1
        await asyncio.gather(*(worker(k) for k in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
        channel.close()
        return done, elapsed

    queue.put(asyncio.run(main()))


def _paced_child(port: int, key: str, rate: float, seconds: float, queue) -> None:
    """Fresh predictions (a horizon no earlier call asked for) at a fixed rate, spread over CONNECTIONS calls."""
    from grpclib.client import Channel

    from handlers.rpc import syncvalue_grpc
    from handlers.rpc import syncvalue_pb2 as pb

    async def main() -> list[float]:
        channel = Channel("127.0.0.1", port)
        ltv = syncvalue_grpc.SyncValueServiceStub(channel)
        md = {"x-api-key": key}
        times: list[float] = []
        started = time.perf_counter()
        total = int(rate * seconds)

        async def worker(offset: int) -> None:
            for i in range(offset, total, CONNECTIONS):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.perf_counter()
                await ltv.PredictLTV(pb.LTVPredictionRequest(customer_id=f"member-{i % MEMBERS:04d}",
                                                             horizon_days=2000 + i // MEMBERS), metadata=md)
                times.append(time.perf_counter() - sent)
        await asyncio.gather(*(worker(k) for k in range(CONNECTIONS)))
        channel.close()
        return times

    times = asyncio.run(main())
    queue.put((times, 1.0))


def _server_histogram(url: str, key: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the server's single-prediction latency histogram."""
    import urllib.request

    text = urllib.request.urlopen(urllib.request.Request(f"{url}/metrics", headers={"X-Api-Key": key})).read()
    out = []
    for line in text.decode().splitlines():
        if line.startswith('contrail_ltv_seconds_bucket{call="one"'):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float(le), float(line.rsplit(" ", 1)[1])))
    return out


def _histogram_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of what a cumulative histogram counted between two reads, interpolated in its bucket."""
    prior = dict(before)
    counts = [(le, n - prior.get(le, 0.0)) for le, n in after]
    total = counts[-1][1] if counts else 0.0
    if not total:
        return 0.0
    rank, lower, seen = q * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - seen) / max(cumulative - seen, 1e-9)
        lower, seen = le, cumulative
    return lower


def _batch_child(port: int, key: str, rounds: int, queue) -> None:
    from grpclib.client import Channel

    from handlers.rpc import syncvalue_grpc
    from handlers.rpc import syncvalue_pb2 as pb

    async def main() -> list[float]:
        channel = Channel("127.0.0.1", port)
        stub = syncvalue_grpc.SyncValueServiceStub(channel)
        request = pb.LTVBatchRequest(requests=[pb.LTVPredictionRequest(customer_id=f"member-{i % MEMBERS:04d}")
                                               for i in range(1000)])
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            reply = await stub.PredictLTVBatch(request, metadata={"x-api-key": key})
            times.append(time.perf_counter() - started)
            assert len(reply.responses) == 1000
        channel.close()
        return times

    times = asyncio.run(main())
    queue.put((times, 1.0))


def run_all(seconds: float) -> dict:
    import json
    import urllib.request

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING")
        seeded = server.cli("seed-demo")
        if seeded.returncode != 0:
            raise RuntimeError(f"seed-demo failed: {seeded.stderr}")
        key = server.cli("create-api-key", "--name", "bench-ltv", "--role", "admin").stdout.strip().splitlines()[-1]
        server.start()
        try:
            import multiprocessing
            echo = run_child(_child, server.grpc_port, key, "echo", seconds)
            fresh = run_child(_child, server.grpc_port, key, "fresh", seconds)
            predict = run_child(_child, server.grpc_port, key, "predict", seconds)
            echo_after = run_child(_child, server.grpc_port, key, "echo", seconds)
            queue: multiprocessing.Queue = multiprocessing.Queue()
            child = multiprocessing.Process(target=_batch_child, args=(server.grpc_port, key, 30, queue))
            child.start()
            batch_times, _ = queue.get(timeout=120)
            child.join()
            before = _server_histogram(server.url, key)
            child = multiprocessing.Process(target=_paced_child, args=(server.grpc_port, key, PACED_RATE, seconds,
                                                                       queue))
            child.start()
            paced_times, _ = queue.get(timeout=seconds + 120)
            child.join()
            after = _server_histogram(server.url, key)
            req = urllib.request.Request(f"{server.url}/v1/admin/ltv/model", headers={"X-Api-Key": key})
            health = json.loads(urllib.request.urlopen(req).read())
        finally:
            server.stop()
    batch_ms = sorted(t * 1000 for t in batch_times)
    baseline = (echo + echo_after) / 2
    return {"echo": baseline, "predict": predict, "ratio": predict / baseline, "fresh": fresh,
            "fresh_ratio": fresh / baseline,
            "batch_p50_ms": batch_ms[len(batch_ms) // 2], "batch_max_ms": batch_ms[-1], "health": health,
            "paced_server_p99_us": _histogram_quantile(before, after, 0.99) * 1e6,
            "paced_client_p99_us": sorted(paced_times)[int(0.99 * (len(paced_times) - 1))] * 1e6,
            "paced_calls": len(paced_times)}


def report(info: dict) -> None:
    h = info["health"]
    print("\nLifetime value (gRPC, 16 concurrent calls; a fresh seed-demo server)")
    print(f"  gRPC Echo {info['echo']:,.0f}/s (mean of before and after)")
    print(f"  PredictLTV, each call a new horizon (nothing remembered): {info['fresh']:,.0f}/s, "
          f"ratio {info['fresh_ratio']:.2f}")
    print(f"  PredictLTV, 600 customers asked again the same day (remembered): {info['predict']:,.0f}/s, "
          f"ratio {info['ratio']:.2f}")
    print(f"  PredictLTVBatch of 1,000 customers, round trip: p50 {info['batch_p50_ms']:.1f} ms, "
          f"max {info['batch_max_ms']:.1f} ms")
    print(f"  PredictLTV at {PACED_RATE:,} calls/s, each new ({info['paced_calls']:,} calls): p99 in the server "
          f"{info['paced_server_p99_us']:.0f} us, round trip {info['paced_client_p99_us']:.0f} us")
    print(f"  in the server (contrail_ltv_seconds, per call, batches included): avg {h['avg_latency_us']:.0f} us, "
          f"p95 {h['p95_latency_us']:.0f} us, p99 {h['p99_latency_us']:.0f} us; model {h['model_version']}, "
          f"holdout MAE {h['holdout_mae']:.3f}, accuracy {h['current_accuracy']:.3f}")
