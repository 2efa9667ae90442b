"""Durable writes/s with 64 concurrent writers: group commit versus one commit per write."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from adapters.sqlite.db import Database
from adapters.sqlite.migrate import Migration

SCHEMA = [Migration(1, "t", "CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")]


async def _measure(path: Path, max_group: int, writers: int, seconds: float) -> tuple[float, float]:
    db = Database(path, SCHEMA, synchronous="FULL", max_group_size=max_group)
    await db.open()
    done = 0
    stop = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await db.write([("INSERT INTO t(payload) VALUES (?)", ("x" * 100,))])
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    commits = db.commits
    await db.close()
    return done / elapsed, done / max(commits, 1)


def run(writers: int = 64, seconds: float = 3.0) -> list[tuple[str, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, group in (("one commit per write", 1), ("group commit", 512)):
            rate, per_commit = asyncio.run(_measure(Path(tmp) / f"{group}.db", group, writers, seconds))
            rows.append((name, rate, per_commit))
    return rows
