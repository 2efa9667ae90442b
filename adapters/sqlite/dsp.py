"""SQLite storage of the DSPs' wins: the DspWinStore port's SQL."""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase
from state.dsp import DspSpend, DspWin


class SqliteDspWinStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def record(self, win: DspWin) -> bool:
        (inserted,) = await self._db.write([(
            "INSERT INTO dsp_wins(platform, bid_id, cpm_micros, spend_micros, at, source) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(platform, bid_id) DO NOTHING",
            (win.platform, win.bid_id, win.cpm_micros, win.spend_micros, win.at, win.source))])
        return inserted == 1

    async def get(self, platform: str, bid_id: str) -> DspWin | None:
        row = await self._db.fetchone("SELECT platform, bid_id, cpm_micros, spend_micros, at, source FROM dsp_wins "
                                      "WHERE platform=? AND bid_id=?", (platform, bid_id))
        return DspWin(*row) if row is not None else None

    async def spend_since(self, at: float) -> dict[str, DspSpend]:
        rows = await self._db.fetchall("SELECT platform, COUNT(*), CAST(SUM(spend_micros) AS BIGINT) FROM dsp_wins "
                                       "WHERE at >= ? "
                                       "GROUP BY platform", (at,))
        return {platform: DspSpend(wins, spend or 0) for platform, wins, spend in rows}
