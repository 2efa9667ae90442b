"""SQLite storage of the DSPs' wins: the DspWinStore port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase
from state.dsp import DspForward, DspSpend, DspWin

_QUEUE = ("INSERT INTO dsp_forwards(platform, bid_id, kind, url, queued_at, due_at) VALUES (?,?,?,?,?,?) "
          "ON CONFLICT(platform, bid_id, kind) DO NOTHING")
_KEY = "platform=? AND bid_id=? AND kind=?"


class SqliteDspWinStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def record(self, win: DspWin, forwards: Sequence[DspForward] = ()) -> tuple[bool, list[DspForward]]:
        inserted, *queued = await self._db.write([(
            "INSERT INTO dsp_wins(platform, bid_id, cpm_micros, spend_micros, at, source) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(platform, bid_id) DO NOTHING",
            (win.platform, win.bid_id, win.cpm_micros, win.spend_micros, win.at, win.source)),
            *((_QUEUE, (f.platform, f.bid_id, f.kind, f.url, win.at, win.at)) for f in forwards)])
        return inserted == 1, [f for f, n in zip(forwards, queued, strict=True) if n == 1]

    async def claim_forward(self, forward: DspForward, now: float, lease_s: float) -> bool:
        (claimed,) = await self._db.write([(
            f"UPDATE dsp_forwards SET due_at = ?, attempts = attempts + 1 WHERE {_KEY} AND due_at <= ?",
            (now + lease_s, forward.platform, forward.bid_id, forward.kind, now))], power_safe=False)
        return claimed == 1

    async def forward_done(self, forward: DspForward, retry_at: float | None) -> None:
        await self._db.write([(f"UPDATE dsp_forwards SET due_at = ? WHERE {_KEY} AND attempts = ?",
                               (retry_at, forward.platform, forward.bid_id, forward.kind, forward.attempts))],
                             power_safe=False)

    async def due_forwards(self, now: float, limit: int, platforms: Sequence[str]) -> list[DspForward]:
        if not platforms:
            return []
        marks = ",".join("?" * len(platforms))
        rows = await self._db.fetchall("SELECT platform, bid_id, kind, url, attempts FROM dsp_forwards "
                                       f"WHERE due_at <= ? AND platform IN ({marks}) ORDER BY due_at LIMIT ?",
                                       (now, *platforms, limit))
        return [DspForward(*row) for row in rows]

    async def queued_forwards(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT platform, COUNT(*) FROM dsp_forwards WHERE due_at IS NOT NULL "
                                       "GROUP BY platform")
        return {platform: int(n) for platform, n in rows}

    async def purge_forwards(self, before: float, limit: int, *, finished_only: bool = True) -> int:
        finished = "due_at IS NULL AND " if finished_only else ""
        (deleted,) = await self._db.write([(
            "DELETE FROM dsp_forwards WHERE (platform, bid_id, kind) IN (SELECT platform, bid_id, kind "
            f"FROM dsp_forwards WHERE {finished}queued_at < ? LIMIT ?)", (before, limit))], power_safe=False)
        return deleted

    async def get(self, platform: str, bid_id: str) -> DspWin | None:
        row = await self._db.fetchone("SELECT platform, bid_id, cpm_micros, spend_micros, at, source FROM dsp_wins "
                                      "WHERE platform=? AND bid_id=?", (platform, bid_id))
        return DspWin(*row) if row is not None else None

    async def spend_since(self, at: float) -> dict[str, DspSpend]:
        rows = await self._db.fetchall("SELECT platform, COUNT(*), CAST(SUM(spend_micros) AS BIGINT) FROM dsp_wins "
                                       "WHERE at >= ? "
                                       "GROUP BY platform", (at,))
        return {platform: DspSpend(wins, spend or 0) for platform, wins, spend in rows}
