"""Loyalty benchmark: durable earns (each a new transaction, committed before the answer)."""

from __future__ import annotations

from bench.load import Result, Scenario, run
from bench.server import ServerProcess


def partner_key(server: ServerProcess) -> str:
    """A point-of-sale system's key (before the server starts)."""
    return server.cli("create-api-key", "--name", "bench-pos", "--role", "partner").stdout.strip().splitlines()[-1]


def run_all(server: ServerProcess, key: str, seconds: float) -> list[Result]:
    # Every request is a new transaction of a new member, so every answer waited for its own commit.
    earn = Scenario("loyalty: durable earn", "/v1/loyalty/earn", "POST", [],
                    {"X-Api-Key": key, "Content-Type": "application/json"},
                    body_format='{"user_id":"member-{n}","amount_cents":4250,"channel":"pos",'
                                '"transaction_id":"bench-{n}"}')
    return [run(server.url, earn, seconds)]
