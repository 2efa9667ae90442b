"""Named tabular exports for BI tools and spreadsheets: campaign figures, orders and loyalty members.

Each export is a header and rows of plain values (strings, integers, floats, empty): money in integer minor units
with its currency or unit in the column name, times as ISO 8601 UTC strings. app/tabular.py turns them into CSV or
XLSX. An export answers at most MAX_ROWS rows; beyond that it refuses (422) and asks for a narrower range rather
than building a file nobody can open. The campaign exports' `from` and `to` are the range a row's figures count:
whole UTC hours, as the reports keep their totals by the hour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from app.campaigns.reports import HOUR, CampaignReports, Totals, counted_range
from app.errors import InvalidInput, NotFound, RuleViolation
from app.runtime.clock import Clock
from app.tabular import Value
from state.orders import Order

MAX_ROWS = 100_000
ORDERS_PER_READ = 1_000  # orders are read from the store a page at a time, oldest first
DAY = 86_400
TOTALS = ("bids", "wins", "win_rate", "impressions", "spend_micros", "avg_clearing_price_micros", "losses", "clicks",
          "conversions", "revenue_cents")


class OrderSource(Protocol):
    async def page(self, owner: str | None, state: str | None, after: tuple[float, str] | None,
                   limit: int) -> list[Order]: ...


class LoyaltySource(Protocol):
    async def member_ids(self, prefix: str, limit: int) -> list[str]: ...
    async def hold(self, user_id: str) -> bool: ...
    def balance(self, user_id: str) -> dict: ...
    def debt(self, user_id: str) -> int: ...
    def last_activity(self, user_id: str) -> float | None: ...


@dataclass(frozen=True)
class Table:
    name: str
    header: tuple[str, ...]
    rows: list[list[Value]]


@dataclass(frozen=True)
class ExportRange:
    start: float | None = None   # epoch seconds; each export says what it defaults to
    end: float | None = None
    granularity: str = "day"


def iso(at: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC ("2026-03-01T14:00:00Z"), whole seconds."""
    if at is None:
        return None
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PlainFloat(float):
    """A float written out in positional notation with every digit of its shortest form (0.00000637, never 6.37e-06
    or 6e-06): a CSV cell is the float's repr, and a spreadsheet may read scientific notation as text. XLSX keeps
    it a number."""

    def __repr__(self) -> str:
        return format(Decimal(float.__repr__(self)), "f")

    __str__ = __repr__


def _totals(t: Totals) -> list[Value]:
    return [t.bids, t.wins, None if t.win_rate is None else round(t.win_rate, 6), t.impressions, t.spend_micros,
            t.avg_clearing_price_micros, t.losses, t.clicks, t.conversions, t.revenue_cents]


def _too_many(name: str, hint: str) -> RuleViolation:
    return RuleViolation(f"the {name} export would pass {MAX_ROWS:,} rows; {hint}",
                         {"report": name, "max_rows": MAX_ROWS})


class Exports:
    """The exports by name: `table(name, range)` answers a Table or raises NotFound naming the known ones."""

    def __init__(self, reports: CampaignReports, orders: OrderSource, loyalty: LoyaltySource, clock: Clock) -> None:
        self._reports = reports
        self._orders = orders
        self._loyalty = loyalty
        self._clock = clock
        self._tables: dict[str, Callable[[ExportRange], Awaitable[Table]]] = {
            "campaigns": self.campaign_series, "campaign_summary": self.campaign_summary,
            "orders": self.orders, "loyalty": self.loyalty_members}

    @property
    def names(self) -> list[str]:
        return sorted(self._tables)

    async def table(self, name: str, span: ExportRange) -> Table:
        make = self._tables.get(name)
        if make is None:
            raise NotFound(f"no report named {name[:64]!r}; known: {', '.join(self.names)}", {"reports": self.names})
        # `to` defaults to now, as in the JSON reports: a `from` past it asks for nothing that can exist.
        end = self._clock.now() if span.end is None else span.end
        if span.start is not None and not span.start < end:
            raise InvalidInput("from must be before to", {"field": "from"})
        return await make(span)

    async def campaign_series(self, span: ExportRange) -> Table:
        """One row per campaign and day (or hour) with any activity in [from, to); default: the last 7 days. Its
        `from` and `to` are what the row counts: its period, within the whole hours the range counts (a daily row
        at either end may count part of its day)."""
        header = ("campaign_id", "name", "state", "granularity", "period_start", *TOTALS, "from", "to")
        step = HOUR if span.granularity == "hour" else DAY
        start, end = self._reports.asked_range(span.start, span.end, span.granularity)
        counted_from, counted_to = counted_range(start, end)
        rows: list[list[Value]] = []
        async for campaign, series in self._reports.each_series(start, end, span.granularity):
            for point in series:
                rows.append([campaign.id, campaign.name, campaign.state, span.granularity, iso(point.at),
                             *_totals(point.totals), iso(max(point.at, counted_from)),
                             iso(min(point.at + step, counted_to))])
            if len(rows) > MAX_ROWS:
                raise _too_many("campaigns", "ask for a narrower from/to or granularity=day")
        return Table("campaigns", header, rows)

    async def campaign_summary(self, span: ExportRange) -> Table:
        """One row per campaign over [from, to) (default: the last 7 days), with today's budget and spend. Its `from`
        and `to` are the whole UTC hours counted, as the report's counted_from and counted_to."""
        report = await self._reports.campaigns(span.start, span.end)
        header = ("campaign_id", "name", "state", "from", "to", *TOTALS, "daily_budget_micros",
                  "spent_today_micros", "budget_used_today")
        rows: list[list[Value]] = [
            [line.campaign_id, line.name, line.state, iso(report.counted_from), iso(report.counted_to),
             *_totals(line.totals), line.today.daily_budget_micros, line.today.spent_micros,
             PlainFloat(line.today.budget_used)]
            for line in report.items]
        if len(rows) > MAX_ROWS:
            raise _too_many("campaign_summary", "there are too many campaigns to export at once")
        return Table("campaign_summary", header, rows)

    async def orders(self, span: ExportRange) -> Table:
        """One row per order created in [from, to), oldest first; default: every order up to now."""
        end = float("inf") if span.end is None else span.end
        start = 0.0 if span.start is None else span.start
        header = ("order_id", "state", "owner", "offer_id", "flight_id", "cabin", "passengers", "total_cents",
                  "currency", "refund_cents", "departure_at", "created_at", "updated_at")
        rows: list[list[Value]] = []
        after = (start, "")  # every id sorts after "": the page starts at the first order created at `start`
        while True:
            page = await self._orders.page(None, None, after, ORDERS_PER_READ)
            for o in page:
                if o.created_at >= end:
                    return Table("orders", header, rows)
                if len(rows) == MAX_ROWS:
                    raise _too_many("orders", "ask for a narrower from/to")
                rows.append([o.id, o.state, o.owner, o.offer_id, o.flight_id, o.cabin, o.passengers, o.total_cents,
                             o.currency, o.refund_cents, iso(o.departure_at), iso(o.created_at), iso(o.updated_at)])
            if len(page) < ORDERS_PER_READ:
                return Table("orders", header, rows)
            after = (page[-1].created_at, page[-1].id)

    async def loyalty_members(self, span: ExportRange) -> Table:
        """One row per loyalty member as of now (the range does not apply): tier, balance and lifetime stars."""
        header = ("user_id", "tier", "balance_stars", "lifetime_stars", "qualifying_stars_12m", "debt_stars",
                  "tier_kept_until", "last_activity_at")
        ids = await self._loyalty.member_ids("", MAX_ROWS + 1)
        if len(ids) > MAX_ROWS:
            raise _too_many("loyalty", "there are too many members to export at once")
        rows: list[list[Value]] = []
        for user_id in ids:
            if not await self._loyalty.hold(user_id):  # read back if memory let it go; then no await to the row
                continue
            b = self._loyalty.balance(user_id)
            rows.append([user_id, b["tier"], b["balance"], b["lifetime_stars"], b["qualifying_stars_12m"],
                         self._loyalty.debt(user_id), iso(b["tier_kept_until"]),
                         iso(self._loyalty.last_activity(user_id))])
        return Table("loyalty", header, rows)
