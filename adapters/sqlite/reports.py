"""SQLite storage of campaign reports' hourly totals (rolled up from the event log) and the roll-up's place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from adapters.sqlite.statements import SqlDatabase, Statement
from state.campaigns import REPORT_COUNTERS as COUNTERS  # campaign_stats' columns, in order

ROLLUP = "campaign_reports"

_ADD = (f"INSERT INTO campaign_stats(campaign_id, hour, {', '.join(COUNTERS)}) "
        f"VALUES (?, ?, {', '.join('?' * len(COUNTERS))}) ON CONFLICT(campaign_id, hour) DO UPDATE SET "
        + ", ".join(f"{c} = campaign_stats.{c} + excluded.{c}" for c in COUNTERS))
# SUM of a BIGINT is a NUMERIC on PostgreSQL: cast back, so both engines answer integers
_SUMS = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in COUNTERS)


class SqliteReportStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def cursor(self) -> int:
        """The id of the last event-log event taken into the totals (0 before the first)."""
        row = await self._db.fetchone("SELECT last_id FROM rollup_cursors WHERE name = ?", (ROLLUP,))
        return int(row[0]) if row else 0

    async def add(self, totals: Mapping[tuple[str, int], list[int]], no_bids: Mapping[tuple[int, str], int],
                  after: int, cursor: int, signals: Mapping[str, float] | None = None) -> None:
        """Add to the hourly totals, remember the reward-signal ids counted (`signals`: id → when) and move the
        cursor from `after` to `cursor`, in one transaction: an event is counted once. Raises WriteConflict,
        writing nothing, when the cursor is no longer at `after` (another roll-up, on this node or another sharing
        the store, took those events first)."""
        statements: list[Statement] = [
            ("INSERT INTO rollup_cursors(name, last_id) VALUES (?,?) ON CONFLICT(name) DO UPDATE SET "
             "last_id = excluded.last_id WHERE rollup_cursors.last_id = ?", (ROLLUP, cursor, after), 1, "rollup")]
        statements += [("INSERT INTO report_signals(signal_id, at) VALUES (?,?) ON CONFLICT(signal_id) DO NOTHING",
                        (signal_id, at)) for signal_id, at in (signals or {}).items()]
        statements += [(_ADD, (campaign_id, hour, *counts)) for (campaign_id, hour), counts in totals.items()]
        statements += [("INSERT INTO nobid_stats(hour, reason, count) VALUES (?,?,?) ON CONFLICT(hour, reason) "
                        "DO UPDATE SET count = nobid_stats.count + excluded.count", (hour, reason, count))
                       for (hour, reason), count in no_bids.items()]
        await self._db.write(statements)

    async def counted(self, signal_ids: Sequence[str]) -> set[str]:
        """Which of these reward-signal ids the totals already count (and have not yet forgotten)."""
        found: set[str] = set()
        for k in range(0, len(signal_ids), 500):
            chunk = signal_ids[k:k + 500]
            rows = await self._db.fetchall(f"SELECT signal_id FROM report_signals WHERE signal_id IN "
                                           f"({', '.join('?' * len(chunk))})", tuple(chunk))
            found.update(str(row[0]) for row in rows)
        return found

    async def purge_signals(self, before: float, limit: int = 5_000) -> int:
        """Forget up to `limit` counted signal ids remembered before `before`; how many were forgotten."""
        deleted, = await self._db.write([
            ("DELETE FROM report_signals WHERE rowid IN (SELECT rowid FROM report_signals WHERE at < ? LIMIT ?)",
             (before, limit))])
        return deleted

    async def series(self, campaign_id: str, first_hour: int, last_hour: int, step_hours: int
                     ) -> list[tuple[int, ...]]:
        """(bucket's first hour, counters...) per bucket of `step_hours` hours with any activity, oldest first."""
        return await self._db.fetchall(
            f"SELECT (hour / ?) * ? AS bucket, {_SUMS} FROM campaign_stats WHERE campaign_id = ? AND hour BETWEEN ? "
            "AND ? GROUP BY bucket ORDER BY bucket", (step_hours, step_hours, campaign_id, first_hour, last_hour))

    async def by_campaign(self, first_hour: int, last_hour: int) -> list[tuple[object, ...]]:
        """(campaign id, counters...) summed over the hours, per campaign with any activity."""
        return await self._db.fetchall(
            f"SELECT campaign_id, {_SUMS} FROM campaign_stats WHERE hour BETWEEN ? AND ? GROUP BY campaign_id",
            (first_hour, last_hour))

    async def no_bids(self, first_hour: int, last_hour: int) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT reason, SUM(count) FROM nobid_stats WHERE hour BETWEEN ? AND ? "
                                       "GROUP BY reason ORDER BY 2 DESC", (first_hour, last_hour))
        return {str(reason): int(count) for reason, count in rows}

    async def hours(self, first_hour: int, last_hour: int, limit: int) -> list[tuple[object, ...]]:
        """(campaign id, hour, counters...) of every campaign-hour in [first_hour, last_hour], hour by hour, at most
        `limit` rows."""
        return await self._db.fetchall(
            f"SELECT campaign_id, hour, {', '.join(COUNTERS)} FROM campaign_stats WHERE hour BETWEEN ? AND ? "
            "ORDER BY hour, campaign_id LIMIT ?", (first_hour, last_hour, limit))
