"""Background checkpoints beside the group-commit writer (see db.py's module doc for why)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("contrail.state")


class Checkpointer:
    """PASSIVE checkpoints every `interval_s` on a connection and thread of their own, when something was
    committed since the last one. Past `restart_frames` pages of WAL it asks the writer to copy what is left
    itself (`catch_up`), so the WAL can start over."""

    def __init__(self, path: Path, busy_timeout_ms: int, interval_s: float, restart_frames: int,
                 commits: Callable[[], int]) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._interval = interval_s
        self._restart_frames = restart_frames
        self._commits = commits
        self.catch_up = False   # set here, cleared by the writer once it has checkpointed before a group
        self.wal_frames = 0     # pages in the WAL at the last checkpoint
        self.checkpoints = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-checkpoint-{path.name}")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._task = asyncio.create_task(self._loop(), name=f"checkpoint:{self._path.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        return conn

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        seen = self._commits()
        while True:
            await asyncio.sleep(self._interval)
            if self._commits() == seen:
                continue
            seen = self._commits()
            try:
                await loop.run_in_executor(self._executor, self.checkpoint_sync)
            except sqlite3.Error as exc:  # busy or I/O trouble: the WAL keeps everything; try next time
                log.warning("background checkpoint failed", extra={"db": self._path.name, "error": repr(exc)})

    def checkpoint_sync(self) -> int:
        """One PASSIVE checkpoint; returns the WAL's size in pages."""
        assert self._conn is not None
        _, frames, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        self.wal_frames = max(frames, 0)
        if frames > self._restart_frames:
            self.catch_up = True
        return self.wal_frames
