"""Bidding as campaigns and request shapes grow (issue 28): `python -m bench --only bid-scale`.

1. Shapes: 5,000 live campaigns (targeting countries, device types, categories, advertisers and apps), and a new
   request shape in every bid: the country, device type, block lists (bcat, badv, bapp) and up to two of 40 banner
   sizes drawn afresh, and a banner size never seen before. The server's RSS is sampled as it goes, against
   `bidding.shape_cache_mb`, with the shape cache's bytes, entries and evictions.
2. Edits: bids held at a fixed rate over the shapes of (1), p99 with no campaign edit and with one a second
   (a campaign paused, then resumed: each is a stored change the candidate index follows).
3. Billing notices: every bid's billing notice sent back, at 100 and at 5,000 campaigns: the server's CPU per
   bid (its notice included).

The server runs pinned to one core and the load generator to the other.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import sqlite3
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.server import ServerProcess
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting, _encode

COUNTRIES = [f"C{i:02d}" for i in range(40)]          # targeted by some campaigns
OTHER_COUNTRIES = [f"X{i:02d}" for i in range(40)]    # targeted by none
CATEGORIES = [f"IAB{i}" for i in range(1, 27)]
SIZES = [(100 + 10 * n, 50 + n) for n in range(40)]   # the first 30 are creatives' sizes
SHAPES_S, EDITS_S, NOTICES_S = 60.0, 20.0, 15.0


def _campaigns(n: int, rng: random.Random) -> list[Campaign]:
    out = []
    for i in range(n):
        countries = [] if rng.random() < 0.2 else rng.sample(COUNTRIES, rng.randint(1, 3))
        devices = [] if rng.random() < 0.5 else rng.sample(range(1, 8), rng.randint(1, 3))
        out.append(Campaign(
            id=f"scale-{i}", name=f"scale {i}", advertiser_domain=f"adv{i % 2000}.example", state="live",
            bid_cap_micros=1_000_000 + rng.randrange(4_000_000), daily_budget_micros=10**12,
            categories=rng.sample(CATEGORIES, rng.randint(0, 2)),
            app_bundle=f"com.app{i % 500}" if rng.random() < 0.3 else None,
            targeting=Targeting(countries=countries, device_types=devices),
            frequency_caps=FrequencyCaps(day=50) if rng.random() < 0.1 else FrequencyCaps(),
            creatives=[Creative(f"k{i}", "banner", "<a>ad</a>", w=300, h=250),
                       Creative(f"s{i}", "banner", "<a>ad</a>", w=SIZES[i % 30][0], h=SIZES[i % 30][1])]))
    return out


def _seed(server: ServerProcess, n: int) -> None:
    """`n` live campaigns written straight to the records database before the server starts."""
    path = re.search(r"database at (\S+)", server.cli("migrate").stdout).group(1)  # type: ignore[union-attr]
    rng = random.Random(28)
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?)",
                       [(c.id, _encode(c).decode(), time.time()) for c in _campaigns(n, rng)])


def _request(i: int, rng: random.Random, new_sizes: bool) -> bytes:
    formats = [{"w": 300, "h": 250}] + [{"w": w, "h": h} for w, h in rng.sample(SIZES, rng.randint(0, 2))]
    if new_sizes:
        formats.append({"w": 1000 + i % 5000, "h": 1 + i // 5000})  # a size no request offered before
    return json.dumps({
        "id": f"s{i}", "tmax": 200,
        "imp": [{"id": "1", "bidfloor": 0.01, "banner": {"w": 300, "h": 250, "format": formats}}],
        "site": {"id": "s", "domain": "news.example"}, "user": {"id": f"u{rng.randrange(100_000)}"},
        "device": {"devicetype": rng.randint(1, 7), "geo": {"country": rng.choice(COUNTRIES + OTHER_COUNTRIES)}},
        "bcat": rng.sample(CATEGORIES, rng.randint(0, 8)) + [f"IAB{rng.randint(1, 26)}-{rng.randint(1, 40)}"],
        "badv": [f"adv{rng.randrange(4000)}.example" for _ in range(rng.randint(0, 4))],
        "bapp": [f"com.app{rng.randrange(2000)}" for _ in range(rng.randint(0, 3))]}).encode()


async def _drive(url: str, key: str, bodies: list[bytes], seconds: float, rate: float | None, notices: bool,
                 connections: int = 16) -> dict:
    import aiohttp
    latencies: list[float] = []
    counts: dict[str, float] = {"bids": 0, "nobids": 0, "errors": 0, "notices": 0}
    stop = time.perf_counter() + seconds
    sent = 0
    interval = connections / rate if rate else 0.0

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal sent
        rng = random.Random(n)
        next_at = time.perf_counter()
        while time.perf_counter() < stop:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            async with session.post(url + "/v1/bid", data=body, headers={"X-Api-Key": key}) as resp:
                raw = await resp.read()
                status = resp.status
            latencies.append(time.perf_counter() - started)
            if status == 200:
                counts["bids"] += 1
                if notices:
                    bid = json.loads(raw)["seatbid"][0]["bid"][0]
                    billing = bid["burl"].replace("${AUCTION_PRICE}", f"{bid['price'] / 2:.6f}")
                    async with session.get(billing) as notice:
                        await notice.read()
                        counts["notices" if notice.status == 200 else "errors"] += 1
            else:
                counts["nobids" if status == 204 else "errors"] += 1
            if interval:
                next_at += rng.expovariate(1 / interval)
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(session, n) for n in range(connections)))
    latencies.sort()
    counts["p99_ms"] = latencies[int(0.99 * len(latencies))] * 1000 if latencies else float("nan")
    counts["p50_ms"] = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    counts["requests"] = len(latencies)
    return counts


def _child(queue, *args) -> None:
    os.sched_setaffinity(0, {1})
    queue.put(asyncio.run(_drive(*args)))


def _load(url: str, key: str, bodies: list[bytes], seconds: float, rate: float | None = None,
          notices: bool = False) -> multiprocessing.Process:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_child, args=(queue, url, key, bodies, seconds, rate, notices))
    child.start()
    child.queue = queue  # type: ignore[attr-defined]
    return child


def _result(child: multiprocessing.Process, seconds: float) -> dict:
    result = child.queue.get(timeout=seconds + 120)  # type: ignore[attr-defined]
    child.join()
    return result


def _rss_mb(server: ServerProcess) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024  # type: ignore[union-attr]


def _cpu_s(server: ServerProcess) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cache(server: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    return {name: float(v) for name, v in re.findall(
        r'^contrail_cache_(bytes|budget_bytes|entries|evictions_total)\{cache="bid_shapes"\} (\S+)$', text, re.M)}


def _server(tmp: Path, name: str, campaigns: int, **env: str) -> tuple[ServerProcess, str, str]:
    server = ServerProcess(tmp / name / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING", **env)
    server.data_dir.mkdir(parents=True)
    admin = server.cli("create-api-key", "--name", "admin", "--role", "admin").stdout.strip().splitlines()[-1]
    exchange = server.cli("create-api-key", "--name", "exchange", "--role", "exchange").stdout.strip().splitlines()[-1]
    _seed(server, campaigns)
    server.start(timeout=120)
    assert server.proc is not None
    os.sched_setaffinity(server.proc.pid, {0})
    return server, admin, exchange


def _edit_every_second(url: str, admin: str, seconds: float) -> int:
    """Pause, then resume, a campaign once a second (a different one each time); how many edits."""
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        campaign = f"scale-{n // 2 * 37 % 5000}"
        req = urllib.request.Request(f"{url}/v1/admin/campaigns/{campaign}/{'pause' if n % 2 == 0 else 'resume'}",
                                     data=b"{}", headers={"X-Api-Key": admin, "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        n += 1
        time.sleep(max(0.0, start + n - time.monotonic()))
    return n


def run_all() -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server, admin, exchange = _server(tmp, "shapes", 5000)
        try:
            rng = random.Random(1)
            bodies = [_request(i, rng, new_sizes=True) for i in range(60_000)]
            samples = [(0.0, _rss_mb(server), _cache(server))]
            started = time.monotonic()
            child = _load(server.url, exchange, bodies, SHAPES_S)
            while child.is_alive() and time.monotonic() - started < SHAPES_S + 5:
                time.sleep(5)
                samples.append((time.monotonic() - started, _rss_mb(server), _cache(server)))
            out["shapes"] = {"load": _result(child, SHAPES_S), "samples": samples}
            # Edits: a steady rate over shapes already seen (no new sizes), none and then one edit a second.
            steady = [_request(i, random.Random(i % 300), new_sizes=False) for i in range(3000)]
            _result(_load(server.url, exchange, steady, 5.0), 5.0)  # warm: every steady shape cached
            rows = {}
            for label, edits in (("none", False), ("one a second", True), ("none again", False)):
                cpu0, started = _cpu_s(server), time.monotonic()
                child = _load(server.url, exchange, steady, EDITS_S, rate=300.0)
                made = _edit_every_second(server.url, admin, EDITS_S) if edits else 0
                result = _result(child, EDITS_S)
                cpu = (_cpu_s(server) - cpu0) / (time.monotonic() - started)  # the server's CPU seconds a second
                rows[label] = {**result, "edits": made, "cpu_ms_per_s": cpu * 1000}
            out["edits"] = rows
        finally:
            server.stop()
        notices = {}
        for n in (100, 5000):
            server, admin, exchange = _server(tmp, f"notices-{n}", n)
            try:
                steady = [_request(i, random.Random(i % 300), new_sizes=False) for i in range(3000)]
                _result(_load(server.url, exchange, steady, 5.0), 5.0)
                runs = []
                for _ in range(3):
                    cpu0 = _cpu_s(server)
                    result = _result(_load(server.url, exchange, steady, NOTICES_S, notices=True), NOTICES_S)
                    runs.append(((_cpu_s(server) - cpu0) / max(1, result["requests"]) * 1e6, result))
                notices[n] = runs
            finally:
                server.stop()
        out["notices"] = notices
    return out


def report(out: dict) -> None:
    shapes = out["shapes"]
    load = shapes["load"]
    print(f"\nBid request shapes at 5,000 campaigns ({SHAPES_S:.0f} s, a new shape per bid: {load['requests']:,} "
          f"requests, {load['bids']:,} bids, {load['nobids']:,} no-bids, {load['errors']} errors; p50 "
          f"{load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms)")
    print(f"{'s':>6}{'RSS MB':>9}{'cache MB':>10}{'budget MB':>11}{'shapes':>8}{'evicted':>9}")
    for at, rss, cache in shapes["samples"]:
        held, budget = cache.get("bytes", 0) / 2**20, cache.get("budget_bytes", 0) / 2**20
        print(f"{at:>6.0f}{rss:>9.0f}{held:>10.1f}{budget:>11.0f}{cache.get('entries', 0):>8.0f}"
              f"{cache.get('evictions_total', 0):>9.0f}")
    print("\nOne campaign edit a second at 5,000 campaigns (300 bids/s held, cached shapes; the server's CPU in ms "
          "a second: what an edit costs besides shows against the first row)")
    print(f"{'edits':<16}{'requests':>9}{'p50 ms':>8}{'p99 ms':>8}{'edits made':>12}{'CPU ms/s':>10}")
    for label, r in out["edits"].items():
        print(f"{label:<16}{r['requests']:>9,}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['edits']:>12}"
              f"{r['cpu_ms_per_s']:>10.0f}")
    print("\nBilling notices for every bid: server CPU per bid, its notice included (three runs, median)")
    for n, runs in out["notices"].items():
        cpu = [r[0] for r in runs]
        print(f"{n:>6} campaigns: {statistics.median(cpu):.0f} us  (runs {' '.join(f'{c:.0f}' for c in cpu)}; "
              f"{runs[0][1]['requests']:,} bids and {runs[0][1]['notices']:,} notices in the first)")


def main() -> None:
    report(run_all())


if __name__ == "__main__":
    main()
