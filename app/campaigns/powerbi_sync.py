"""Campaign hours to a Power BI push dataset: every interval, the hours rolled up since the last push, once each.

A push dataset only appends rows, so an hour is sent once, when it is complete: `settle_s` after it ended (time for
the event log's flush, the roll-up and late win notices). Events that arrive later still for an hour already sent
(a billing notice hours after the auction) reach the reports but not Power BI.

The place is an hour (the start of the last hour sent, epoch seconds) kept in rollup_cursors under "powerbi", moved
after each accepted POST. POSTs hold whole hours, so a failure re-sends nothing that Power BI accepted; a crash
between an accepted POST and the cursor's write re-sends that one POST (each row carries `row_id`,
"<campaign>@<hour>", for a dashboard that wants to de-duplicate).

Failures never leave the task: an IntegrationError (the exporter already retried with backoff and counted every
attempt in contrail_integration_calls{tool="powerbi"}) or anything else is logged and counted, and the next interval
starts again from the cursor. The task only waits on Power BI's rate limit itself; nothing else waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from app.runtime.clock import Clock
from app.runtime.metrics import Metrics
from state.campaigns import REPORT_COUNTERS as COUNTERS

log = logging.getLogger("contrail.integrations")

HOUR = 3600
CURSOR = "powerbi"


class HourSource(Protocol):
    async def hours(self, first_hour: int, last_hour: int, limit: int) -> list[tuple[object, ...]]: ...


class CursorStore(Protocol):
    async def get(self, name: str) -> int | None: ...
    async def put(self, name: str, value: int) -> None: ...


class RowsExporter(Protocol):
    enabled: bool
    max_rows_per_post: int

    async def push_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int: ...
    async def close(self) -> None: ...


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PowerBISync:
    def __init__(self, exporter: RowsExporter, hours: HourSource, cursors: CursorStore, clock: Clock,
                 metrics: Metrics, *, table: str, interval_s: float, name_of: Callable[[str], str | None],
                 settle_s: float = 300.0,
                 one_node: Callable[[Callable[[], Awaitable[int]]], Awaitable[int | None]] | None = None) -> None:
        """`one_node`: runs a pass when it is this node's turn (nodes sharing the store take turns: OneNode.run)."""
        self._exporter = exporter
        self._hours = hours
        self._cursors = cursors
        self._clock = clock
        self._metrics = metrics
        self._table = table
        self._interval_s = interval_s
        self._name_of = name_of
        self._settle_s = settle_s
        self._one_node = one_node
        self.passes_failed = 0

    async def run(self) -> None:
        """The supervised task: a pass every interval (the first after one interval); closes the exporter's session
        when stopped."""
        try:
            while True:
                await asyncio.sleep(self._interval_s)
                if self._one_node is None:
                    await self.run_once()
                    continue
                try:
                    await self._one_node(self.run_once)
                except Exception as exc:  # the turn could not be taken (the store unreachable): the next interval
                    self.passes_failed += 1
                    log.warning("Power BI push skipped: its turn could not be taken",
                                extra={"tool": "powerbi", "error": str(exc)[:300]})
        finally:
            await self._exporter.close()

    async def run_once(self) -> int:
        """One pass: push every complete hour after the cursor; answers the rows pushed. Never raises (but for
        cancellation)."""
        if not self._exporter.enabled:
            return 0
        try:
            return await self._push()
        except Exception as exc:
            self.passes_failed += 1
            if not hasattr(exc, "tool"):  # an IntegrationError was counted attempt by attempt already
                self._metrics.integration_calls.labels("powerbi", "failed").inc()
            log.warning("Power BI push failed; the next pass tries again from the last hour sent",
                        extra={"tool": "powerbi", "error": str(exc)[:300]})
            return 0

    def last_complete_hour(self) -> int:
        """The start of the latest hour that ended at least settle_s ago."""
        return int((self._clock.now() - self._settle_s) // HOUR) * HOUR - HOUR

    async def _push(self) -> int:
        last = self.last_complete_hour()
        cursor = await self._cursors.get(CURSOR)
        first = 0 if cursor is None else cursor + HOUR
        batch = self._exporter.max_rows_per_post
        pushed = 0
        while first <= last:
            rows = await self._hours.hours(first, last, batch + 1)
            upto = last
            if len(rows) > batch:
                # Whole hours only: the hour the batch cuts through goes in the next POST.
                cut = int(rows[batch][1])  # type: ignore[call-overload]
                rows = [r for r in rows[:batch] if r[1] != cut]
                if not rows:  # one hour with more campaigns than a POST takes: that hour alone, in several POSTs
                    rows = await self._hours.hours(cut, cut, 10**9)
                upto = int(rows[-1][1])  # type: ignore[call-overload]
            if rows:
                await self._exporter.push_rows(self._table, [self._row(r) for r in rows])
                pushed += len(rows)
            await self._cursors.put(CURSOR, upto)
            first = upto + HOUR
        if pushed:
            log.info("campaign hours pushed to Power BI", extra={"rows": pushed, "through": _iso(last)})
        return pushed

    def _row(self, r: tuple[object, ...]) -> dict[str, Any]:
        campaign_id, hour = str(r[0]), int(r[1])  # type: ignore[call-overload]
        row: dict[str, Any] = {"row_id": f"{campaign_id}@{_iso(hour)}", "campaign_id": campaign_id,
                               "campaign_name": self._name_of(campaign_id) or campaign_id, "hour": _iso(hour)}
        row.update({name: int(v or 0) for name, v in zip(COUNTERS, r[2:], strict=True)})  # type: ignore[call-overload]
        return row
