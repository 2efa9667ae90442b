"""One node's throughput on the scale-out adapters (PostgreSQL for the system of record, Redis for budgets, caps and
issued bids) as a ratio to the same node on SQLite, measured in one run: the same scenarios (bids, searches,
durable accepts, durable earns) against a node on each, back to back.

`python -m bench --only scaleout`. Needs PostgreSQL installed, and Redis for the bids to go through it (throwaway
servers are started on loopback).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from app import localservers
from bench import bidding, loyalty, retail
from bench.load import Result, Scenario, run
from bench.server import ServerProcess

SCENARIOS = ("retail: POST /v1/offers/search", "retail: accept (durable order)", "loyalty: durable earn")
BIDS = "bidding: REST /v1/bid (64 candidates)"


def _node(root: Path, **env: str) -> tuple[ServerProcess, str, str]:
    """A started node with the retail data, a loyalty partner key, and the bidding campaigns and exchange key."""
    node = ServerProcess(root / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING", **env)
    node.data_dir.mkdir(parents=True)
    retail.prepare(node)
    key = loyalty.partner_key(node)
    admin, exchange = bidding.setup_server(node)
    node.start()
    bidding.seed_campaigns(node, admin)
    return node, key, exchange


def _measure(node: ServerProcess, key: str, exchange: str, seconds: float) -> list[Result]:
    bids = bidding.rest_scenarios(exchange)[0]
    results = [run(node.url, Scenario(BIDS, bids.path, bids.method, bids.bodies, bids.headers), seconds)]
    headers = retail._guest(node)
    bodies = retail.search_bodies()
    results.append(run(node.url, Scenario(SCENARIOS[0], "/v1/offers/search", "POST", bodies, headers), seconds))
    offers = asyncio.run(retail._collect_offers(node.url, headers, bodies, int(10_000 * seconds)))
    results.append(run(node.url, Scenario(SCENARIOS[1], "", "POST", [], headers,
                                          paths=[f"/v1/offers/{o}/accept" for o in offers]), seconds))
    results += loyalty.run_all(node, key, seconds)
    return results


def run_all(seconds: float) -> list[tuple[str, Result, Result]] | None:
    """(scenario, on SQLite, on PostgreSQL) for each scenario; None when PostgreSQL is not installed."""
    if "postgresql" in localservers.missing():
        print("scaleout: PostgreSQL is not installed (apt install postgresql); skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        pg = localservers.Postgres().start()
        redis = localservers.Redis(Path(tmp) / "redis").start() if "redis-server" not in localservers.missing() \
            else None
        if redis is None:
            print("scaleout: Redis is not installed (apt install redis-server): bids measured without it")
        try:
            measured = {}
            scaled = {"CONTRAIL__STORAGE__BACKEND": "postgres", "CONTRAIL__STORAGE__POSTGRES_DSN": pg.new_database(),
                      **({"CONTRAIL__REDIS__URL": redis.url} if redis is not None else {})}
            for name, env in (("sqlite", {}), ("postgres", scaled)):
                node, key, exchange = _node(Path(tmp) / name, **env)
                try:
                    measured[name] = _measure(node, key, exchange, seconds)
                finally:
                    node.stop()
        finally:
            pg.stop()
            if redis is not None:
                redis.stop(graceful=True)
    return [(a.name, a, b) for a, b in zip(measured["sqlite"], measured["postgres"], strict=True)]


def report(rows: list[tuple[str, Result, Result]] | None) -> None:
    if not rows:
        return
    print("\nOne node on PostgreSQL and Redis (local servers) against the same node on SQLite "
          "(ratio = scale-out / SQLite)")
    print(f"{'scenario':<40}{'SQLite/s':>10}{'p99 ms':>8}{'PG+R/s':>10}{'p99 ms':>8}{'ratio':>8}{'errors':>8}")
    for name, a, b in rows:
        print(f"{name:<40}{a.rps:>10.0f}{a.p99_ms:>8.1f}{b.rps:>10.0f}{b.p99_ms:>8.1f}{b.rps / a.rps:>8.2f}"
              f"{a.errors + b.errors:>8}")
