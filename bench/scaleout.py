"""One node's throughput with its system of record on PostgreSQL, as a ratio to the same node on SQLite, measured in
one run: the same scenarios (searches, durable accepts, durable earns) against a node on each, back to back.

`python -m bench --only scaleout`. Needs PostgreSQL installed (a throwaway server is started on loopback).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from app import localservers
from bench import loyalty, retail
from bench.load import Result, Scenario, run
from bench.server import ServerProcess

SCENARIOS = ("retail: POST /v1/offers/search", "retail: accept (durable order)", "loyalty: durable earn")


def _node(root: Path, **env: str) -> tuple[ServerProcess, str]:
    node = ServerProcess(root / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING", **env)
    node.data_dir.mkdir(parents=True)
    retail.prepare(node)
    key = loyalty.partner_key(node)
    node.start()
    return node, key


def _measure(node: ServerProcess, key: str, seconds: float) -> list[Result]:
    headers = retail._guest(node)
    bodies = retail.search_bodies()
    results = [run(node.url, Scenario(SCENARIOS[0], "/v1/offers/search", "POST", bodies, headers), seconds)]
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
        try:
            measured = {}
            for name, env in (("sqlite", {}), ("postgres", {"CONTRAIL__STORAGE__BACKEND": "postgres",
                                                             "CONTRAIL__STORAGE__POSTGRES_DSN": pg.new_database()})):
                node, key = _node(Path(tmp) / name, **env)
                try:
                    measured[name] = _measure(node, key, seconds)
                finally:
                    node.stop()
        finally:
            pg.stop()
    return [(a.name, a, b) for a, b in zip(measured["sqlite"], measured["postgres"], strict=True)]


def report(rows: list[tuple[str, Result, Result]] | None) -> None:
    if not rows:
        return
    print("\nOne node on PostgreSQL (a local server) against the same node on SQLite (ratio = PostgreSQL / SQLite)")
    print(f"{'scenario':<40}{'SQLite/s':>10}{'p99 ms':>8}{'PG/s':>10}{'p99 ms':>8}{'ratio':>8}{'errors':>8}")
    for name, a, b in rows:
        print(f"{name:<40}{a.rps:>10.0f}{a.p99_ms:>8.1f}{b.rps:>10.0f}{b.p99_ms:>8.1f}{b.rps / a.rps:>8.2f}"
              f"{a.errors + b.errors:>8}")
