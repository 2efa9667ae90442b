"""Schemathesis against the real server: every operation of /openapi.json is called with generated requests
(the coverage phase's boundary and invalid values, then Hypothesis' examples), and every response must be
what the document says: no 5xx, a documented status, its content type, its schema and its headers.

The server is the app `serve` runs (create_app behind GuardedRunner, on a loopback port); Schemathesis runs
in a worker thread and talks to it over real HTTP. The run is deterministic (fixed seed, derandomized
Hypothesis) and bounded (a few examples per operation, no stateful phase), once as an admin and once as a
customer. A longer run against a running server, stateful phase included:

    schemathesis run http://127.0.0.1:8080/openapi.json -H "Authorization: Bearer $TOKEN" -n 100 \
        --generation-with-security-parameters false -c not_a_server_error,status_code_conformance,\
        content_type_conformance,response_schema_conformance,response_headers_conformance
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from app.main import create_app
from tests.conftest import ADMIN, CUSTOMER, bearer, make_config

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance")
SEED = 2026
# Limits far above what one run sends: a 429 is documented, but one on every request would test nothing.
UNLIMITED = {"ratelimit__ip_per_s": 1_000_000, "ratelimit__ip_burst": 1_000_000,
             "ratelimit__principal_per_s": 1_000_000, "ratelimit__principal_burst": 1_000_000,
             "bidding__exchange_per_s": 1_000_000, "bidding__exchange_burst": 1_000_000}


def _config(base_url: str, headers: dict[str, str], *, phases: tuple[str, ...], max_examples: int) -> Any:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "workers": 1,
        "base-url": base_url,
        "headers": headers,
        "continue-on-failure": True,
        "cache": {"enabled": False},
        "generation": {"max-examples": max_examples, "deterministic": True, "database": "none",
                       # The caller's own credentials, not generated ones (which only ever get 401).
                       "with-security-parameters": False},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing", "stateful")},
    })


def _failures(event: events.EngineEvent) -> list[str]:
    if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
        found = []
        for checks in event.recorder.checks.values():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    found.append(f"{event.recorder.label}: {failure.title}: {failure.message}\n"
                                 f"    {check.failure_info.code_sample}")
        return found or [f"{event.recorder.label}: failed"]
    if isinstance(event, events.NonFatalError):
        return [f"{event.label}: error: {event.info.title}: {event.info.message}"]
    if isinstance(event, events.FatalError):
        return [f"fatal: {event.exception!r}"]
    return []


def in_shard(label: str, shard: tuple[int, int]) -> bool:
    """Whether an operation ("GET /v1/flights") is in shard (k, of n): a stable split, so the runs can go in
    parallel (pytest -n) and together call every operation."""
    k, n = shard
    return zlib.crc32(label.encode()) % n == k


def run_schemathesis(base_url: str, headers: dict[str, str], *, phases: tuple[str, ...],
                     max_examples: int, shard: tuple[int, int] = (0, 1)) -> tuple[list[str], set[str]]:
    """Every failure of a run (deduplicated), and the operations it tested ("GET /v1/flights")."""
    config = _config(base_url, headers, phases=phases, max_examples=max_examples)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    schema = schema.include(lambda ctx: in_shard(ctx.operation.label, shard))
    failures: list[str] = []
    tested: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
        for failure in _failures(event):
            if failure not in failures:
                failures.append(failure)
    return failures, tested


@pytest.fixture
async def server(aiohttp_client, tmp_path, clock):
    return await aiohttp_client(create_app(make_config(tmp_path, **UNLIMITED), clock=clock))


async def _run(server, headers: dict[str, str], shard: tuple[int, int], **kwargs: Any) -> None:
    base_url = str(server.make_url("")).rstrip("/")
    failures, tested = await asyncio.to_thread(run_schemathesis, base_url, headers, shard=shard, **kwargs)
    spec = await (await server.get("/openapi.json")).json()
    operations = {f"{method.upper()} {path}" for path, methods in spec["paths"].items() for method in methods
                  if in_shard(f"{method.upper()} {path}", shard)}
    operations.discard("GET /openapi.json")  # Schemathesis leaves the document it reads out
    assert not failures, f"{len(failures)} Schemathesis failure(s):\n" + "\n".join(failures)
    assert operations <= tested, f"not tested: {sorted(operations - tested)}"


@pytest.mark.parametrize("shard", [(k, 3) for k in range(3)], ids=lambda s: f"{s[0] + 1}-of-{s[1]}")
async def test_every_operation_answers_as_documented_to_an_admin(server, shard):
    headers = await bearer(server, *ADMIN, "admin")
    await _run(server, headers, shard, phases=("coverage", "fuzzing"), max_examples=10)


@pytest.mark.parametrize("shard", [(k, 2) for k in range(2)], ids=lambda s: f"{s[0] + 1}-of-{s[1]}")
async def test_every_operation_answers_as_documented_to_a_customer(server, shard):
    headers = await bearer(server, *CUSTOMER, "customer")
    await _run(server, headers, shard, phases=("coverage", "fuzzing"), max_examples=5)
