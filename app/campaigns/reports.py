"""What each campaign spends and earns: hourly totals rolled up from the event log, and the reports read from them.

The event log keeps days (analytics.retention_days); reports span months. So a supervised roll-up reads the events
written since its last pass, in id order, and adds them to hourly totals per campaign in SQLite, moving its place in
the event log in the same transaction (an event counts once, across restarts). A report is then a range read over
at most a few thousand rows, whatever the traffic was.

Attribution: bids, wins, billing notices, losses and click notices carry their campaign. So do the bids Contrail
routes from a DSP whose `cid` is one of the campaign's DSP line items, and their wins (DspBid, DspWin): the DSP spends
its own budget, so they count in the report but not in the campaign's budget for today. A bid's impression and spend
(a thousandth of its clearing CPM) count once, from whichever of its win and billing notices charged it. Reward
signals count as clicks (`clicked`) and conversions (`redeemed`) for the campaign they name, else for every campaign
promoting the offer that was live when the signal came, once per signal id (a retried signal is logged again); a
paid order converts for every campaign promoting its offer, its flight's route or one of its products that was live
when it was paid. The all-campaigns totals count such an event once, however many campaigns it credits.
No-bid reasons belong to the bidder, not to a campaign: reports show them for the whole range. Bids and no-bids
are read from the event log's per-second totals where it keeps them (analytics.sample_bids below 1), and the whole
records it keeps beside them as a sample are not counted again.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import contextlib
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec

from app.bidding.campaigns import CampaignService, utc_day
from app.errors import InvalidInput, NotFound
from app.eventlog import EventLog
from app.runtime.clock import Clock
from app.runtime.metrics import Metrics
from state.campaigns import REPORT_COUNTERS as COUNTERS
from state.campaigns import HistoryEntry
from state.ports import Campaign, ReportStore, WriteConflict

HOUR = 3600
DAY = 86_400
# Bids and no-bids arrive whole (each counts one; those marked "sampled" are already in a total) or as the event
# log's per-second totals (app/eventlog.py), each counting `count`.
TYPES = frozenset({"Bid", "Win", "Billing", "Loss", "NoBid", "Click", "RewardSignal", "OrderPaid", "BidTotals",
                   "NoBidTotals", "EmailClick", "DspBid", "DspBidTotals", "DspWin"})
# Events that may be logged more than once for one thing (a retried reward signal; a campaign message's clicks, by our
# link and by SendGrid): each `signal_id` counts once.
SIGNALLED = frozenset({"RewardSignal", "EmailClick"})
PURGE_EVERY_S = 3600.0  # counted signal ids past their memory are forgotten at most this often, a chunk a commit
PURGE_CHUNK = 5_000
MAX_HOURLY_RANGE_S = 93 * DAY  # hourly points: at most about three months (2,232 points)
MAX_RANGE_S = 3 * 366 * DAY
_payload = msgspec.json.Decoder(dict[str, Any])
MAX_TIME = 1e11  # the latest from/to (5138-11-16): past year 9999 the exports could not print a time
# Counter positions, as COUNTERS orders them.
BIDS, WINS, IMPRESSIONS, SPEND, CLEARING, LOSSES, CLICKS, CONVERSIONS, REVENUE = range(len(COUNTERS))
# Events credited to every live campaign promoting what they are about (a paid order, a reward signal naming no
# campaign) would count once per campaign in the all-campaigns totals: the credits beyond each event's first are
# kept per hour, and taken off there. They are kept in the no-bid reasons' table under names no reason has, as the
# campaign hours' table goes to Power BI row by row and can hold no row that is not a campaign's.
SHARED = {CLICKS: "~shared.clicks", CONVERSIONS: "~shared.conversions", REVENUE: "~shared.revenue_cents"}
PROMOTED = frozenset({"RewardSignal", "OrderPaid"})
HISTORY_LIMIT = 10_000  # a campaign's workflow steps read to tell when it was live (the newest ones)


class Totals(msgspec.Struct):
    """A campaign's figures over a period (money in USD micros, revenue in retail cents)."""
    bids: int = 0
    wins: int = 0
    win_rate: float | None = None              # wins / bids
    impressions: int = 0
    spend_micros: int = 0
    avg_clearing_price_micros: int | None = None  # mean clearing CPM of the won auctions
    losses: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue_cents: int = 0

    @classmethod
    def of(cls, counts: tuple[Any, ...] | list[Any]) -> Totals:
        c = [int(v or 0) for v in counts]
        return cls(bids=c[BIDS], wins=c[WINS], win_rate=c[WINS] / c[BIDS] if c[BIDS] else None,
                   impressions=c[IMPRESSIONS], spend_micros=c[SPEND],
                   avg_clearing_price_micros=c[CLEARING] // c[WINS] if c[WINS] else None, losses=c[LOSSES],
                   clicks=c[CLICKS], conversions=c[CONVERSIONS], revenue_cents=c[REVENUE])


class Point(msgspec.Struct):
    at: float  # the start of the hour or day (epoch seconds, UTC)
    totals: Totals


class PacingPoint(msgspec.Struct):
    at: float
    allowed_micros: int  # what pacing lets it have spent by then


class Today(msgspec.Struct):
    day: str
    daily_budget_micros: int
    spent_micros: int
    budget_used: float
    paced_micros: int             # what pacing lets it have spent by now
    pacing: list[PacingPoint]     # the pacing line through the UTC day, hour by hour


class CampaignReport(msgspec.Struct):
    campaign_id: str
    name: str
    state: str
    start: float          # the range asked for (from, to: their defaults filled in)
    end: float
    # The range the figures count (counted_range): whole UTC hours, from the start of `start`'s hour to the end of
    # the hour `end` falls in (`end` itself when it is on the hour), as the totals are kept by the hour.
    counted_from: float
    counted_to: float
    granularity: str
    totals: Totals
    series: list[Point]
    today: Today
    no_bid_reasons: dict[str, int]  # the bidder's, over the range
    revenue_currency: str = "USD"   # the retail currency revenue_cents are in


class CampaignLine(msgspec.Struct):
    campaign_id: str
    name: str
    state: str
    totals: Totals
    today: Today


class CampaignsReport(msgspec.Struct):
    start: float          # the range asked for, as in CampaignReport
    end: float
    counted_from: float   # the whole UTC hours counted, as in CampaignReport
    counted_to: float
    totals: Totals
    items: list[CampaignLine]
    no_bid_reasons: dict[str, int]
    revenue_currency: str = "USD"


class CampaignReports:
    def __init__(self, events: EventLog, store: ReportStore, campaigns: CampaignService, clock: Clock,
                 metrics: Metrics, route_of: Callable[[str], str | None], batch: int = 20_000,
                 revenue_currency: str = "USD", signal_memory_s: float = 30 * DAY,
                 history: Callable[[str, int], Awaitable[list[HistoryEntry]]] | None = None) -> None:
        """`signal_memory_s`: how long a counted reward signal's id is remembered, so a retry logged again within
        it is not counted twice (campaigns.reward_memory_days, as the policies remember them). `history`: a
        campaign's workflow steps, oldest first (CampaignStore.history), which tell whether a campaign promoting
        what a paid order or reward signal is about was live when it happened; without it (or for a campaign with
        no steps, one loaded in its state), whether it is live as the roll-up reads the event, within its dates."""
        self._events = events
        self._history = history
        # campaign id -> (the campaign as its steps were read for, the steps' times, the state each left it in, its
        # state before the first)
        self._steps: dict[str, tuple[Campaign, list[float], list[str], str]] = {}
        self._signal_memory_s = signal_memory_s
        self._purged_at = -math.inf
        self._currency = revenue_currency
        self._store = store
        self._campaigns = campaigns
        self._clock = clock
        self._metrics = metrics
        self._route_of = route_of
        self._batch = batch
        self._promoting: tuple[int, dict[str, list[Campaign]]] = (-1, {})
        self._rolling = asyncio.Lock()

    # ---- the roll-up ----
    async def roll_up(self) -> int:
        """Take every event written since the last pass into the hourly totals; returns how many were read. One
        pass at a time on this node; a pass on another node sharing the store that took the same events first
        makes this one stop, counting nothing twice."""
        async with self._rolling:
            try:
                return await self._roll_up()
            except WriteConflict:
                self._metrics.rollup_conflicts.inc()
                return 0

    async def _roll_up(self) -> int:
        now = self._clock.now()
        if now - self._purged_at >= PURGE_EVERY_S:
            self._purged_at = now
            while await self._store.purge_signals(now - self._signal_memory_s, PURGE_CHUNK) == PURGE_CHUNK:
                pass
        cursor = await self._store.cursor()
        read = 0
        while True:
            events = await self._events.query(None, None, cursor, self._batch)
            if not events:
                return read
            totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
            no_bids: dict[tuple[int, str], int] = defaultdict(int)
            counted = [(event, _payload.decode(event.payload)) for event in events if event.type in TYPES]
            await self._read_steps({c.id: c for event, p in counted if event.type in PROMOTED and not _named(p)
                                    for c in self._promoters(event.type, p)}.values())
            # A reward signal is logged each time it is sent, retries included, and a message's clicks each time one
            # is seen: each signal id counts once.
            signal_ids = [key for event, p in counted if event.type in SIGNALLED
                          and (key := _signal_key(event.type, event.at, p)) is not None]
            seen = await self._store.counted(list(dict.fromkeys(signal_ids))) if signal_ids else set()
            signals: dict[str, float] = {}
            for event, p in counted:
                if event.type in SIGNALLED and (signal_id := _signal_key(event.type, event.at, p)) is not None:
                    if signal_id in seen or signal_id in signals:
                        continue
                    signals[signal_id] = event.at
                self._count(event.type, event.at, p, totals, no_bids)
            after, cursor = cursor, events[-1].id
            await self._store.add(totals, no_bids, after, cursor, signals)
            read += len(events)
            self._metrics.rollup_events.inc(len(events))
            self._metrics.rollup_lag.set(max(0.0, self._clock.now() - events[-1].at))
            if len(events) < self._batch:
                return read

    def _count(self, type_: str, at: float, p: dict[str, Any], totals: dict[tuple[str, int], list[int]],
               no_bids: dict[tuple[int, str], int]) -> None:
        hour = int(at // HOUR) * HOUR
        if p.get("sampled") is True and type_ in ("Bid", "NoBid", "DspBid"):
            return
        if type_ in ("NoBid", "NoBidTotals"):
            no_bids[(hour, str(p.get("reason") or "unknown"))] += int(p.get("count") or 0) if type_ == "NoBidTotals" \
                else 1
            return
        if type_ in PROMOTED:
            if type_ == "OrderPaid":
                counts = {CONVERSIONS: 1, REVENUE: int(p.get("total_cents") or 0)}
            elif p.get("signal_type") in ("clicked", "redeemed"):
                counts = {CLICKS if p["signal_type"] == "clicked" else CONVERSIONS: 1}
            else:
                return
            named = _named(p)
            # Else the campaigns promoting it that were running then: one that never ran (a draft, one in review or
            # rejected) or was paused earns nothing from it.
            targets = [named] if named else [c.id for c in self._promoters(type_, p) if self._was_live(c, at)]
            for target in targets:
                row = totals[(target, hour)]
                for k, n in counts.items():
                    row[k] += n
            for k, n in counts.items():
                if len(targets) > 1 and n:
                    no_bids[(hour, SHARED[k])] += n * (len(targets) - 1)
            return
        campaign_id = p.get("campaign_id")
        if not isinstance(campaign_id, str) or not campaign_id:
            return
        row = totals[(campaign_id, hour)]
        if type_ in ("Click", "EmailClick"):  # a click notice on one of its ads (once per bid), or on its email
            row[CLICKS] += 1
        elif type_ in ("Bid", "DspBid"):
            row[BIDS] += 1
        elif type_ in ("BidTotals", "DspBidTotals"):
            row[BIDS] += int(p.get("count") or 0)
        elif type_ in ("Win", "DspWin"):  # our bidder's win notice, or a win of its line item's bid on a DSP
            price = int(p.get("price_micros") or 0)
            row[WINS] += 1
            row[CLEARING] += price
            # A win notice after the billing notice charged the bid (`charged` false): the Billing event counts the
            # impression and spend. Win events logged before `charged` was, and DSP wins, have none: they charged.
            if p.get("charged") is not False:
                row[IMPRESSIONS] += 1
                row[SPEND] += price // 1000
        elif type_ == "Billing":  # logged only for a bid no win notice had charged
            row[IMPRESSIONS] += 1
            row[SPEND] += int(p.get("price_micros") or 0) // 1000
        elif type_ == "Loss":
            row[LOSSES] += 1

    def _promoters(self, type_: str, p: dict[str, Any]) -> list[Campaign]:
        """The campaigns (not archived) promoting what the event is about (their offer_ids name offers, routes or
        products), whatever their state."""
        names: list[Any] = [p.get("offer_id")]
        if type_ == "OrderPaid":
            flight = p.get("flight_id")
            names.append(self._route_of(flight) if isinstance(flight, str) else None)
            names += p.get("products") or []
        index = self._promotion_index()
        found: list[Campaign] = []
        for name in names:
            if isinstance(name, str):
                found += [c for c in index.get(name, ()) if c not in found]
        return found

    def _promotion_index(self) -> dict[str, list[Campaign]]:
        version = self._campaigns.version
        if self._promoting[0] != version:
            index: dict[str, list[Campaign]] = defaultdict(list)
            for c in self._campaigns.list():
                for offer in c.offer_ids:
                    index[offer].append(c)
            self._promoting = (version, dict(index))
            held = {c.id for promoters in index.values() for c in promoters}
            self._steps = {cid: steps for cid, steps in self._steps.items() if cid in held}
        return self._promoting[1]

    async def _read_steps(self, campaigns: Iterable[Campaign]) -> None:
        """Read the workflow steps of these campaigns, unless they were read for the campaign as it is (a step
        stores the campaign anew, so one that took a step since is read again)."""
        if self._history is None:
            return
        for c in campaigns:
            held = self._steps.get(c.id)
            if held is not None and held[0] is c:
                continue
            steps = await self._history(c.id, HISTORY_LIMIT)
            self._steps[c.id] = (c, [s.at for s in steps], [s.to_state for s in steps],
                                 steps[0].from_state if steps else c.state)

    def _was_live(self, c: Campaign, at: float) -> bool:
        """Whether the campaign was live at `at`: by its workflow steps when they were read, else as it is now."""
        if at < c.created_at or (c.ends_at is not None and at >= c.ends_at):
            return False  # it did not exist yet, or had ended (the bidder stops at ends_at whatever the state says)
        held = self._steps.get(c.id)
        if held is None or held[0] is not c or not held[1]:
            return c.state == "live" and (c.starts_at is None or at >= c.starts_at)
        _, times, states, before = held
        k = bisect.bisect_right(times, at)
        return (states[k - 1] if k else before) == "live"

    # ---- reports ----
    async def campaign(self, campaign_id: str, start: float | None, end: float | None,
                       granularity: str = "day") -> CampaignReport:
        campaign = await self._campaigns.read(campaign_id)
        start, end = self.asked_range(start, end, granularity)
        first, last = _hours(start, end)
        counted = counted_range(start, end)
        rows = await self._store.series(campaign_id, first, last, HOUR if granularity == "hour" else DAY)
        series = [Point(float(row[0]), Totals.of(row[1:])) for row in rows]
        total = [sum(int(row[1 + k] or 0) for row in rows) for k in range(len(COUNTERS))]
        no_bids, _ = await self._reasons(first, last)
        return CampaignReport(
            campaign_id=campaign.id, name=campaign.name, state=campaign.state, start=start, end=end,
            counted_from=counted[0], counted_to=counted[1], granularity=granularity,
            totals=Totals.of(total), series=series, today=(await self._today([campaign]))[campaign.id],
            no_bid_reasons=no_bids, revenue_currency=self._currency)

    async def campaigns(self, start: float | None, end: float | None) -> CampaignsReport:
        start, end = self.asked_range(start, end, "day")
        first, last = _hours(start, end)
        counted = counted_range(start, end)
        found: dict[str, list[int]] = {str(row[0]): [int(v or 0) for v in row[1:]]  # type: ignore[call-overload]
                                       for row in await self._store.by_campaign(first, last)}
        everyone = await self._with(found)
        today = await self._today(everyone)
        zero = [0] * len(COUNTERS)
        items = [CampaignLine(c.id, c.name, c.state, Totals.of(found.get(c.id, zero)), today[c.id])
                 for c in everyone]
        no_bids, shared = await self._reasons(first, last)
        # An order or signal credited to several campaigns is in each of their rows: once here.
        total = [sum(row[k] for row in found.values()) - shared[k] for k in range(len(COUNTERS))]
        return CampaignsReport(start=start, end=end, counted_from=counted[0], counted_to=counted[1],
                               totals=Totals.of(total), items=items, no_bid_reasons=no_bids,
                               revenue_currency=self._currency)

    async def each_series(self, start: float | None, end: float | None, granularity: str = "day"
                          ) -> AsyncIterator[tuple[Campaign, builtins.list[Point]]]:
        """Each campaign with activity in [start, end), by id (archived ones too), with its series: one read of
        which campaigns had any, then one of each of their series (not a report each: that reads today's spend of
        every campaign, campaign by campaign). The points count the whole UTC hours counted_range(start, end) gives
        (the first and last day of a daily series may be counted in part)."""
        start, end = self.asked_range(start, end, granularity)
        first, last = _hours(start, end)
        active = {str(row[0]) for row in await self._store.by_campaign(first, last)}
        for campaign in await self._with(active):
            if campaign.id in active:
                rows = await self._store.series(campaign.id, first, last, HOUR if granularity == "hour" else DAY)
                yield campaign, [Point(float(row[0]), Totals.of(row[1:])) for row in rows]

    async def _reasons(self, first: int, last: int) -> tuple[dict[str, int], builtins.list[int]]:
        """The bidder's no-bid reasons over the hours, and the credits to take off the all-campaigns totals (by
        counter) that are kept beside them."""
        reasons = await self._store.no_bids(first, last)
        shared = [0] * len(COUNTERS)
        for k, name in SHARED.items():
            shared[k] = reasons.pop(name, 0)
        return reasons, shared

    async def _with(self, active: Iterable[str]) -> builtins.list[Campaign]:
        """The campaigns not archived, and those of `active` that are (read from the store), by id."""
        everyone = {c.id: c for c in self._campaigns.list()}
        for campaign_id in sorted(set(active) - everyone.keys()):
            with contextlib.suppress(NotFound):
                everyone[campaign_id] = await self._campaigns.read(campaign_id)
        return sorted(everyone.values(), key=lambda c: c.id)

    async def _today(self, campaigns: builtins.list[Campaign]) -> dict[str, Today]:
        now = self._clock.now()
        day_start = now - now % DAY
        # Archived campaigns are not in memory: their spend today is read from the record of charges.
        _, lines = await self._campaigns.spend_today(
            now, [c for c in campaigns if not self._campaigns.exists(c.id)])
        spent = {line.campaign_id: line for line in lines}
        slack = self._campaigns.pacing_slack
        out = {}
        for c in campaigns:
            line = spent.get(c.id)
            budget = c.daily_budget_micros
            pacing = [PacingPoint(day_start + h * HOUR, int(budget * min(1.0, h / 24 + slack))) for h in range(25)]
            out[c.id] = Today(utc_day(now), budget, line.spent_micros if line else 0,
                              line.budget_used if line else 0.0, line.paced_micros if line else 0, pacing)
        return out

    def asked_range(self, start: float | None, end: float | None, granularity: str) -> tuple[float, float]:
        """The range a report is asked for, its defaults filled in (`to`: now; `from`: 7 days before `to`), or
        InvalidInput naming the parameter. What it counts is counted_range() of it."""
        if granularity not in ("hour", "day"):
            raise InvalidInput("granularity must be hour or day", {"field": "granularity"})
        now = self._clock.now()
        end = now if end is None else end
        start = end - 7 * DAY if start is None else start
        if not start < end:
            raise InvalidInput("from must be before to", {"field": "from"})
        if end - start > MAX_RANGE_S:
            raise InvalidInput("a report spans at most three years", {"field": "from"})
        if granularity == "hour" and end - start > MAX_HOURLY_RANGE_S:
            raise InvalidInput("an hourly report spans at most 93 days; ask for granularity=day",
                               {"field": "granularity"})
        return start, end


def _signal_key(type_: str, at: float, p: dict[str, Any]) -> str | None:
    """What a signal counts once by: its `signal_id` (None: it has none, and counts each time). A member's own
    signal (sent with their token) counts once per offer, kind and UTC day whatever id it carries: a customer could
    otherwise raise every campaign's clicks and conversions by sending signals with new ids."""
    if type_ == "RewardSignal" and p.get("sender") == "customer":
        return f"~customer:{int(at // DAY)}:{p.get('signal_type')}:{p.get('offer_id')}:{p.get('user_id')}"
    signal_id = p.get("signal_id")
    return signal_id if isinstance(signal_id, str) else None


def _named(p: dict[str, Any]) -> str | None:
    """The campaign an event names, if it names one."""
    named = p.get("campaign_id")
    return named if isinstance(named, str) and named else None


def _hours(start: float, end: float) -> tuple[int, int]:
    """The first and last hours (epoch seconds) a report of [start, end) counts: every hour any part of the range
    is in (the totals are kept by the hour, so a range is widened to whole hours, never narrowed)."""
    return int(start // HOUR) * HOUR, int(-(-end // HOUR)) * HOUR - HOUR


def counted_range(start: float, end: float) -> tuple[float, float]:
    """The whole UTC hours a report of [start, end) counts: from the start of `start`'s hour to the end of the hour
    `end` falls in (`end` itself when it is on the hour)."""
    first, last = _hours(start, end)
    return float(first), float(last + HOUR)


def parse_time(value: str | None, field: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date or date-time (UTC unless it says otherwise), from 1970 to MAX_TIME: what
    every report and export reads its from/to with.

    Eight digits and nothing else are an ISO 8601 basic-format date (YYYYMMDD: 20261201 is 2026-12-01), never epoch
    seconds: as seconds they would be a moment of 1970-04-26 to 1973-03-03, before any Contrail data, so reading
    them as a date cannot take a real time for another. Eight digits that are no calendar date are 400."""
    if value is None or value == "":
        return None
    from datetime import UTC, datetime
    if len(value) == 8 and value.isascii() and value.isdigit():
        try:
            day = datetime.strptime(value, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            raise InvalidInput(f"{field} of eight digits is read as a date (YYYYMMDD), and {value!r} is no calendar "
                               "date", {"field": field}) from None
        if not 0 <= day.timestamp() <= MAX_TIME:
            raise _out_of_range(value, field)
        return day.timestamp()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not 0 <= number <= MAX_TIME:
            raise _out_of_range(value, field)
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field} must be epoch seconds or an ISO 8601 date, got {value[:40]!r}",
                           {"field": field}) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    at = parsed.timestamp()
    # The same range as epoch seconds: a date in year 1 or 9999 parses, but the exports cannot print it back.
    if not 0 <= at <= MAX_TIME:
        raise _out_of_range(value, field)
    return at


def _out_of_range(value: str, field: str) -> InvalidInput:
    return InvalidInput(f"{field} must be epoch seconds or an ISO 8601 date from 1970-01-01 to 5138-11-16 (0 to 1e11 "
                        f"seconds), got {value[:40]!r}", {"field": field})
