"""A real PostgreSQL server for the scale-out tests: one per test session (initdb in a temporary directory, on a
free loopback port), a fresh database per test. Skipped, naming the package, where PostgreSQL is not installed
(`make test` installs it on Debian as root)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from app import localservers


@pytest.fixture(scope="session")
def pg_server() -> Iterator[localservers.Postgres]:
    if "postgresql" in localservers.missing():
        pytest.skip("PostgreSQL is not installed: apt install postgresql")
    server = localservers.Postgres().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


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
