"""Real servers for the scale-out tests, one of each per test session on a free loopback port: PostgreSQL (initdb in
a temporary directory; a fresh database per test) and Redis (a key prefix per test). Skipped, naming the package,
where one is not installed (`make test` installs them on Debian as root)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from app import localservers


def _serve(package: str, server: Callable[[], Any]) -> Iterator[Any]:
    """A server of the session, from its Debian package: skipped, naming the package, where it is missing."""
    if package in localservers.missing():
        pytest.skip(f"{package} is not installed: apt install {package}")
    running = server().start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(running.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[localservers.Postgres]:
    yield from _serve("postgresql", localservers.Postgres)


@pytest.fixture
async def pg_dsn(pg_server) -> AsyncIterator[str]:
    """A database of this test's own on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield pg_server.dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def redis_server() -> Iterator[localservers.Redis]:
    yield from _serve("redis-server", localservers.Redis)


@pytest.fixture
def redis_prefix() -> str:
    """Keys of this test's own on the session's Redis."""
    return f"t{uuid.uuid4().hex[:12]}"
