"""Soak (issue 28): the mixed load (bids, searches with some accepts, ingested events) for `--seconds`, the server
pinned to one core, then SIGTERM and a restart: is live RSS flat, does a restart come back at the live RSS, how fast
do the data files grow. `python -m bench --only soak --seconds 1800`."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import bidding, channels, load, retail
from bench.server import ServerProcess

# The mix, measured on this machine with the server on one core: bids, searches and events per second.
BIDS_PER_S = 2_150
SEARCHES_PER_S = 574
EVENTS_PER_S = 7_200
ACCEPT_EVERY = 50  # one search in this many accepts its first offer (a PROPOSED order that expires unpaid)
SERVER_CORE, LOAD_CORES = "0", "1"


@dataclass
class Sample:
    at: float  # seconds since the load began
    rss_mb: float
    offers_in_memory: float = 0.0


@dataclass
class Report:
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    disk: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (at, {file: MB})
    rates: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    live_rss_mb: float = 0.0
    restart_s: float = 0.0
    restart_rss_mb: float = 0.0
    settled_rss_mb: float = 0.0
    restart_offers: float = 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def offers_in_memory(url: str) -> float:
    """From /metrics; NaN when a saturated server does not answer in time (a sample lost, not the soak)."""
    try:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    except OSError:
        return float("nan")
    found = re.search(r'^contrail_queue_depth\{queue="offers_in_memory"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def data_files(data_dir: Path) -> dict[str, float]:
    """MB per database, its -wal and -shm included."""
    sizes: dict[str, float] = {}
    for path in data_dir.glob("*.db*"):
        name = re.sub(r"-(wal|shm)$", "", path.name)
        sizes[name] = sizes.get(name, 0.0) + path.stat().st_size / 1e6
    return sizes


def pin(pid: int, cores: str) -> None:
    """Every thread of `pid` on `cores` (taskset -a: the SQLite writer threads too), when taskset exists."""
    if shutil.which("taskset"):
        subprocess.run(["taskset", "-a", "-cp", cores, str(pid)], capture_output=True, check=False)


async def _shop(url: str, headers: dict[str, str], bodies: list[bytes], seconds: float, rate: float
                ) -> tuple[int, int, int, int]:
    """Searches at `rate` (Poisson arrivals), every ACCEPT_EVERY-th accepting its first offer:
    (searches, accepts, search errors, accepts refused)."""
    import aiohttp
    searches = accepts = errors = refused = 0
    stop = time.perf_counter() + seconds
    workers = 32
    gap = workers / rate

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal searches, accepts, errors, refused
        rng = random.Random(n)
        next_at = time.perf_counter() + rng.random() * gap
        i = n
        while time.perf_counter() < stop:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += rng.expovariate(1 / gap)
            try:
                async with session.post(f"{url}/v1/offers/search", data=bodies[i % len(bodies)],
                                        headers=headers) as resp:
                    found = (await resp.json()).get("offers", []) if resp.status == 200 else None
                searches += 1
                if found is None:
                    errors += 1
                elif found and searches % ACCEPT_EVERY == 0:
                    async with session.post(f"{url}/v1/offers/{found[0]['id']}/accept", headers=headers) as resp:
                        await resp.read()
                        accepts += 1
                        refused += resp.status != 201  # sold out flights answer 409: counted, not an error
            except aiohttp.ClientError:
                errors += 1
            i += workers

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers)) as session:
        await asyncio.gather(*(worker(n, session) for n in range(workers)))
    return searches, accepts, errors, refused


def _shop_child(url: str, headers: dict[str, str], seconds: float, rate: float, queue) -> None:
    pin(os.getpid(), LOAD_CORES)
    queue.put(asyncio.run(_shop(url, headers, retail.search_bodies(), seconds, rate)))


def _held(scenario: load.Scenario, rate: float, connections: int) -> load.Scenario:
    scenario.rate, scenario.connections = rate, connections
    return scenario


def run(seconds: float, scale: float = 1.0, sample_s: float = 5.0, keep: Path | None = None) -> Report:
    """The soak: `seconds` of the mix (each rate times `scale`), then SIGTERM and a restart; with `keep`, the data
    directory is made there and kept (to look into what a restart loads)."""
    report = Report(seconds)
    pin(os.getpid(), LOAD_CORES)  # the generators (wrk, the shoppers' process) inherit it; the server is moved
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = keep if keep is not None else Path(tmp) / "var"
        server = ServerProcess(data_dir, CONTRAIL__SERVER__LOG_LEVEL="WARNING")
        admin_key, exchange_key = bidding.setup_server(server)
        retail.prepare(server)
        server.start()
        try:
            assert server.proc is not None
            pin(server.proc.pid, SERVER_CORE)
            bidding.seed_campaigns(server, admin_key)
            guest = retail._guest(server)
            bids = _held(bidding.rest_scenarios(exchange_key)[0], BIDS_PER_S * scale, 32)
            ingest = _held(channels.ingest_scenario(admin_key), EVENTS_PER_S * scale / 100, 16)
            results: dict[str, load.Result] = {}

            def drive(name: str, scenario: load.Scenario) -> None:
                results[name] = load.run_wrk(server.url, scenario, seconds)
            threads = [threading.Thread(target=drive, args=(name, s)) for name, s in (("bids", bids),
                                                                                       ("ingest", ingest))]
            queue: multiprocessing.Queue = multiprocessing.Queue()
            shop = multiprocessing.Process(target=_shop_child,
                                           args=(server.url, guest, seconds, SEARCHES_PER_S * scale, queue))
            started = time.monotonic()
            for t in threads:
                t.start()
            shop.start()
            next_disk = 0.0
            while (at := time.monotonic() - started) < seconds:
                report.samples.append(Sample(at, rss_mb(server.proc.pid), offers_in_memory(server.url)))
                if at >= next_disk:
                    report.disk.append((at, data_files(data_dir)))
                    next_disk += 60
                time.sleep(sample_s)
            searches, accepts, search_errors, refused = queue.get(timeout=120)
            shop.join()
            for t in threads:
                t.join()
            report.disk.append((time.monotonic() - started, data_files(data_dir)))
            report.rates = {"bids/s": results["bids"].rps, "events/s": results["ingest"].rps * 100,
                            "searches/s": searches / seconds, "accepts/s": accepts / seconds}
            report.errors = {"bids": results["bids"].errors, "ingest": results["ingest"].errors,
                             "searches": search_errors, "accepts refused": refused}
            time.sleep(sample_s)  # the last batches written
            report.live_rss_mb = rss_mb(server.proc.pid)
            server.terminate()
            began = time.monotonic()
            server.start(timeout=300)
            report.restart_s = time.monotonic() - began
            pin(server.proc.pid, SERVER_CORE)
            report.restart_rss_mb = rss_mb(server.proc.pid)
            report.restart_offers = offers_in_memory(server.url)
            time.sleep(30)  # what the periodic tasks add once it runs
            report.settled_rss_mb = rss_mb(server.proc.pid)
        finally:
            server.stop()
    return report


def print_report(r: Report) -> None:
    print(f"\nSoak: {r.seconds / 60:.0f} min of the mixed load, the server pinned to core {SERVER_CORE}")
    print("achieved: " + ", ".join(f"{v:,.0f} {k}" for k, v in r.rates.items())
          + "; errors: " + ", ".join(f"{k} {v}" for k, v in r.errors.items()))
    print(f"{'minute':>7}{'RSS MB (min-max)':>20}{'offers in memory':>18}")
    for minute in range(int(r.seconds // 60) + 1):
        window = [s for s in r.samples if minute * 60 <= s.at < (minute + 1) * 60]
        if window:
            print(f"{minute:>7}{min(s.rss_mb for s in window):>11.0f}-{max(s.rss_mb for s in window):<8.0f}"
                  f"{window[-1].offers_in_memory:>18,.0f}")
    tail = [s.rss_mb for s in r.samples if s.at >= r.seconds / 3]
    if tail:
        mean = sum(tail) / len(tail)
        print(f"live RSS over the last two thirds: {min(tail):.0f}-{max(tail):.0f} MB, "
              f"{(max(tail) - min(tail)) / mean:.1%} of its mean {mean:.0f} MB")
    print(f"live RSS at the end {r.live_rss_mb:.0f} MB; after a restart {r.restart_rss_mb:.0f} MB "
          f"({r.restart_rss_mb / r.live_rss_mb:.2f}x), {r.restart_s:.1f} s to ready, "
          f"{r.restart_offers:,.0f} offers in memory; 30 s later {r.settled_rss_mb:.0f} MB "
          f"({r.settled_rss_mb / r.live_rss_mb:.2f}x)")
    if len(r.disk) >= 2:
        (t0, first), (t1, last) = r.disk[0], r.disk[-1]
        minutes = (t1 - t0) / 60
        print("disk: " + "; ".join(f"{name} {last[name]:,.0f} MB, +{(last[name] - first.get(name, 0.0)) / minutes:,.1f}"
                                   f" MB/min ({(last[name] - first.get(name, 0.0)) / minutes * 60 / 1000:,.2f} GB/h)"
                                   for name in sorted(last)))


def main(seconds: float, scale: float = 1.0) -> int:
    report = run(max(seconds, 60.0), scale)
    print_report(report)
    print(json.dumps({"live_rss_mb": report.live_rss_mb, "restart_rss_mb": report.restart_rss_mb,
                      "restart_s": report.restart_s}))
    return 0


# ---- active offers across a restart: `python -m bench --only offers-restart --seconds N` (N thousand offers) ----

def _offers_child(env: dict[str, str], wanted: int, queue) -> None:
    """A node's process that makes `wanted` offers (wanted 0: only starts): (offers held, RSS MB, seconds to
    start). In-process search calls, not HTTP: the offers are what is measured."""
    import gc

    from aiohttp import web

    from app.config import load_config
    from app.main import PLATFORM, create_app
    from app.retail.offers import SearchQuery

    async def main() -> tuple[int, float, float]:
        began = time.monotonic()
        app = create_app(load_config(Path(__file__).resolve().parent.parent / "config.toml", env=env))
        runner = web.AppRunner(app)
        await runner.setup()
        started = time.monotonic() - began
        platform = app[PLATFORM]
        queries = [SearchQuery(**json.loads(body)) for body in retail.search_bodies()]
        i = 0
        while len(platform.offer_store) < wanted:
            query = queries[i % len(queries)]
            query = SearchQuery(query.origin, query.destination, query.departure_date, 1 + i % 3, "economy",
                                ("economy", "leisure", "corporate", "premium")[i // len(queries) % 4])
            await platform.offers.search(query, f"user:acct_{i % 50_000}", is_guest=True)
            i += 1
        await platform.event_log.flush()
        gc.collect()
        held = len(platform.offer_store)
        rss = rss_mb(os.getpid())
        await runner.cleanup()
        return held, rss, started

    queue.put(asyncio.run(main()))


def offers_restart(thousands: int) -> dict[str, float]:
    """`thousands` x 1,000 active offers made live, then the node started again on the same data."""
    wanted = thousands * 1_000
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "var")
        retail.prepare(server)
        env = {**server.env, "CONTRAIL__RETAIL__MAX_OFFERS_IN_MEMORY": str(wanted * 2),
               "CONTRAIL__GRPC__PORT": "0", "CONTRAIL__SERVER__LOG_LEVEL": "WARNING"}
        out = {}
        for phase, n in (("live", wanted), ("restart", 0)):
            queue: multiprocessing.Queue = multiprocessing.Queue()
            child = multiprocessing.Process(target=_offers_child, args=(env, n, queue))
            child.start()
            held, rss, started = queue.get(timeout=3_600)
            child.join()
            out.update({f"{phase}_offers": held, f"{phase}_rss_mb": rss, f"{phase}_start_s": started})
    return out


def offers_main(thousands: int) -> int:
    r = offers_restart(thousands)
    print(f"\n{r['live_offers']:,.0f} active offers: live RSS {r['live_rss_mb']:,.0f} MB; after a restart "
          f"{r['restart_offers']:,.0f} offers, RSS {r['restart_rss_mb']:,.0f} MB "
          f"({r['restart_rss_mb'] / r['live_rss_mb']:.2f}x), {r['restart_start_s']:.1f} s to start")
    return 0
