"""Lifetime-value benchmark: gRPC PredictLTV against a trivial gRPC Echo in the same run, PredictLTVBatch of 1,000
customers, and the server's own latency histogram.

The server is a fresh one seeded with the demo data (`seed-demo`: 600 members' two years of purchases and the first
fit), so each prediction reads a real customer's history (held in the customer cache after the first read) and
explains itself, as `GET /v1/customers/{id}/ltv` does. Two rates: each call with a horizon no call asked for before
(the model runs every time), and the 600 customers asked again (the day's predictions are remembered).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.bidding import run_child
from bench.server import ServerProcess

MEMBERS = 600
CONNECTIONS = 16


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
            req = urllib.request.Request(f"{server.url}/v1/admin/ltv/model", headers={"X-Api-Key": key})
            health = json.loads(urllib.request.urlopen(req).read())
        finally:
            server.stop()
    batch_ms = sorted(t * 1000 for t in batch_times)
    baseline = (echo + echo_after) / 2
    return {"echo": baseline, "predict": predict, "ratio": predict / baseline, "fresh": fresh,
            "fresh_ratio": fresh / baseline,
            "batch_p50_ms": batch_ms[len(batch_ms) // 2], "batch_max_ms": batch_ms[-1], "health": health}


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
    print(f"  in the server (contrail_ltv_seconds, per call, batches included): avg {h['avg_latency_us']:.0f} us, "
          f"p95 {h['p95_latency_us']:.0f} us, p99 {h['p99_latency_us']:.0f} us; model {h['model_version']}, "
          f"holdout MAE {h['holdout_mae']:.3f}, accuracy {h['current_accuracy']:.3f}")
