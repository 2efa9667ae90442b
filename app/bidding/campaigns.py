"""Campaign rules: validation, eligibility for an impression, and budget pacing.

Pacing: a campaign may bid while today's spend, what its live bids may still cost and one more impression at
its bid cap stay within
    daily_budget × min(1, elapsed_fraction_of_UTC_day + pacing_slack)
so spend follows the clock through the day instead of draining in the first minutes, with
`pacing_slack` (default 5% of the budget) as head-room for bursts. Each bid reserves its most (its CPM / 1000)
until it is charged or expires, so spend never passes the budget however late the billing notices come; once
less than an impression at its cap is left, it stops until the next UTC day.
"""

from __future__ import annotations

import builtins
import functools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from app.admin import AuditTrail
from app.auth import Principal
from app.bidding.candidates import WINDOWS, CandidateIndex, Candidates, ShapeCache, _Entry, _ImpShape, _Shape
from app.bidding.openrtb import BidRequest
from app.errors import Conflict, InvalidInput, NotFound
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from state.campaigns import MAX_CREATIVES, Campaign, Creative, HistoryEntry
from state.ports import CampaignStore, DeliveryStore, StorageUnavailable, WriteConflict

__all__ = ["WINDOWS", "CampaignService", "CampaignSpend", "Candidates", "Delivery", "_Entry", "_ImpShape", "utc_day"]

LONGEST_WINDOW_S = max(WINDOWS.values())


class Delivery(DeliveryStore, Protocol):
    """The delivery port as bidding's campaigns read it: also which campaigns a user was shown lately, so that
    frequency caps are worked out for those campaigns alone (any other has shown the user nothing)."""

    def campaigns_shown(self, user_id: str, since: float) -> set[str]:
        """The campaigns with an impression of the user at `since` or later."""
        ...


class CampaignSpend(msgspec.Struct):
    """A campaign's day so far: what it spent against its budget and pacing, and how its bids fared."""
    campaign_id: str
    name: str
    state: str
    daily_budget_micros: int
    spent_micros: int
    budget_used: float        # spent / daily budget
    paced_micros: int         # what pacing lets it have spent by now
    wins: int                 # win notices
    losses: int               # loss notices
    win_rate: float | None    # wins / (wins + losses); None before any notice
    avg_clearing_price_micros: int | None  # mean clearing CPM of the won auctions (USD micros); None before any
    # What its live bids, not yet charged, may still cost (each its CPM / 1000, until charged or expired); None when
    # the nodes' shared store cannot be read
    reserved_micros: int | None = None
    # Whether one more impression at its bid cap fits: spent + reserved + bid cap / 1000 within paced_micros (one
    # node bids only while it does; nodes sharing Redis still admit a cheaper bid that fits); None when
    # reserved_micros is
    within_pace: bool | None = None


def _may_bid(need: Any, budget: Any, allowed: Any) -> Any:
    """The pacing rule, for one campaign or for arrays of them: a campaign with a budget may bid while `need` (today's
    spend, what its live bids reserved and one more impression at its bid cap) fits in what is `allowed`."""
    return (budget > 0) & (need <= allowed)


def utc_day(at: float) -> str:
    """The UTC date of a timestamp, as budgets are kept (YYYY-MM-DD)."""
    return _day_name(int(at // 86_400))


@functools.lru_cache(maxsize=8)
def _day_name(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86_400))


class ChangedElsewhere(Conflict):
    """A campaign's write was refused because another node had changed it since this one read it; the store has
    read it back, so taking the step again decides on what is stored."""


class CampaignService:
    def __init__(self, store: CampaignStore, delivery: Delivery, clock: Clock, audit: AuditTrail, *,
                 pacing_slack: float, shape_cache_bytes: int = 64 << 20, shape_cache_entries: int = 10_000,
                 dsp_platforms: Iterable[str] = ()) -> None:
        self._store = store
        self._dsp_platforms = frozenset(dsp_platforms)  # the DSPs a campaign's line items may name (dsp.platforms)
        self._line_items: tuple[int, dict[tuple[str, str], tuple[str, bool]]] = (-1, {})
        self._delivery = delivery
        self._clock = clock
        self._audit = audit
        self._slack = pacing_slack
        self._index = CandidateIndex(shape_cache_bytes, shape_cache_entries)
        self._spend_arr = np.zeros(0)    # today's spend by slot
        self._spend_day: str | None = None  # the day it is of; None: to be read whole
        self._spend_seen = -1            # the delivery store's version it reflects
        self._charging: dict[str, int] = {}  # charges under way, by campaign
        self._charged: set[str] = set()      # campaigns whose charges ended since spend was last read
        self._moved_slots: set[int] = set()  # slots whose spend or campaign changed since the open state was made
        self._open_slots = np.zeros(0, dtype=bool)
        self._open_key: bool | None = None  # None: to be worked out whole
        self._open_from = self._open_until = 0.0
        self._open_version = 0
        self._timed: set[int] = set()  # the slots of the campaigns timed() gives

    # ---- storage: the workflow (app/campaigns/workflow.py) decides which changes are allowed ----
    async def create(self, actor: Principal | str, campaign: Campaign, *, audit: bool = True,
                     step: HistoryEntry | None = None) -> Campaign:
        """Store a new campaign as given (409 when its id exists): a campaign.create entry, unless `audit` is False
        (a load that is no admin action, such as the demo data set). Admins create through the workflow, which
        starts every campaign in draft; a load may give any state."""
        _check(campaign, None)
        if await self._store.read(campaign.id) is not None:  # an archived campaign's id stays taken
            raise Conflict(f"campaign {campaign.id} already exists")
        self._check_line_items(campaign, None)
        campaign = msgspec.structs.replace(campaign, created_at=self._clock.now())
        try:
            await self._put(campaign, [step] if step is not None else [], new=True)
        except ChangedElsewhere:  # another node created it first
            raise Conflict(f"campaign {campaign.id} already exists") from None
        if audit:
            await self._audit.record(actor, "campaign.create", campaign.id, name=campaign.name)
        return campaign

    async def replace(self, campaign: Campaign, steps: Sequence[HistoryEntry] = ()) -> Campaign:
        """Store a changed campaign (with its history entries, atomically); the candidate index follows at once."""
        before = self.get(campaign.id)
        _check(campaign, before)
        self._check_line_items(campaign, before)
        await self._put(campaign, steps)
        self._index.stored_one(campaign.id)  # no await since the store counted it: the index looks at it alone
        return campaign

    async def _put(self, campaign: Campaign, steps: Sequence[HistoryEntry], new: bool = False) -> None:
        try:
            await self._store.put(campaign, self._clock.now(), steps, new=new)
        except WriteConflict as exc:  # nothing was written
            if exc.what == f"campaign:{campaign.id}":  # another node changed it since this one read it
                stored = self._store.get(campaign.id)  # read back by the store
                state = stored.state if stored is not None else "archived"
                raise ChangedElsewhere(f"campaign {campaign.id} was changed by another node meanwhile (it is now "
                                       f"{state}); nothing was written: try again", {"state": state}) from None
            if not exc.what.startswith("dsp_line_item:"):
                raise
            # a line item another node gave another campaign first
            _, platform, cid = exc.what.split(":", 2)
            raise Conflict(f"dsp_line_items: {platform} campaign {cid!r} already belongs to another campaign",
                           {"field": "dsp_line_items"}) from None

    def _check_line_items(self, campaign: Campaign, before: Campaign | None) -> None:
        """A line item the change adds names a configured DSP and belongs to no other campaign (those it had may
        name a DSP since removed from the configuration: a pause must not fail on one)."""
        had = {(i.platform, i.cid) for i in before.dsp_line_items} if before is not None else set()
        owners = self._line_item_index()
        for item in campaign.dsp_line_items:
            if (item.platform, item.cid) in had:
                continue
            if item.platform not in self._dsp_platforms:
                configured = ", ".join(sorted(self._dsp_platforms)) or "none"
                raise InvalidInput(f"dsp_line_items: no DSP named {item.platform!r} is configured (dsp.platforms: "
                                   f"{configured})", {"field": "dsp_line_items"})
            owner = owners.get((item.platform, item.cid))
            if owner is not None and owner != campaign.id:
                raise Conflict(f"dsp_line_items: {item.platform} campaign {item.cid!r} already belongs to campaign "
                               f"{owner}", {"field": "dsp_line_items"})

    def _line_item_index(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """(platform, cid) -> the campaign that owns that line item (the store keeps one owner each:
        campaign_line_items) and whether it is live. A completed campaign keeps its line items but no longer owns
        them: the DSP's campaign may run on after ours ended, or be named by a new one."""
        version = self._store.version
        if self._line_items[0] != version:
            self._line_items = (version, {(item.platform, item.cid): (c.id, c.state == "live")
                                          for c in self._store.all() if c.state != "completed"
                                          for item in c.dsp_line_items})
        return self._line_items[1]

    def campaign_of_line_item(self, platform: str, cid: str) -> str | None:
        """The campaign (neither completed nor archived) whose line item on DSP `platform` is the DSP campaign `cid`."""
        owner = self._line_item_index().get((platform, cid))
        return owner[0] if owner is not None else None

    def line_item_held(self, platform: str, cid: str) -> bool:
        """Whether a DSP bid for this line item is held back: its campaign owns it and is not live (a draft not yet
        approved, one in review, paused...). Only live campaigns bid, through Contrail's bidder or a DSP's."""
        owner = self._line_item_index().get((platform, cid))
        return owner is not None and not owner[1]

    @property
    def version(self) -> int:
        """Changes with every stored change of any campaign."""
        return self._store.version

    @property
    def pacing_slack(self) -> float:
        return self._slack

    def exists(self, campaign_id: str) -> bool:
        return self._store.get(campaign_id) is not None

    def get(self, campaign_id: str) -> Campaign:
        """A campaign that is not archived, from memory (NotFound for an archived one: `read` has those)."""
        campaign = self._store.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    async def read(self, campaign_id: str) -> Campaign:
        """Any campaign, archived ones included (read from the store): for showing one and for the workflow's
        answers about it."""
        campaign = await self._store.read(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    def list(self) -> list[Campaign]:
        """Every campaign that is not archived."""
        return self._store.all()

    async def page(self, after: str, limit: int, state: str | None, *, archived: bool = True
                   ) -> builtins.list[Campaign]:
        """Campaigns by id, the first `limit` above `after`, optionally in one state: those not archived from
        memory, the archived ones (unless `archived` is False) from the store."""
        stored = await self._store.archived(after, limit) if archived and state in (None, "archived") else []
        # Memory after the read: a campaign archived meanwhile is in `stored` and has left memory.
        by_id = {} if state == "archived" else {
            c.id: c for c in self._store.all() if c.id > after and state in (None, c.state)}
        by_id.update((c.id, c) for c in stored)
        return sorted(by_id.values(), key=lambda c: c.id)[:limit]

    async def spend_today(self, now: float, archived: Iterable[Campaign] = ()
                          ) -> tuple[str, builtins.list[CampaignSpend]]:
        """Every campaign's spend and notices for the UTC day of `now` (the day, the lines by campaign id), and
        those of `archived`: campaigns not in memory (archived ones a report lists). Their spend today is the sum of
        today's charges in the stored notices (`outcomes_since`, read anyway: each charge is stored there in the same
        write as the day's spend, and kept more than a day), not this node's view of spend, which on several nodes
        is refreshed for the campaigns in memory alone. One of `archived` that is in memory is read as the others."""
        day = utc_day(now)
        day_start = now - now % 86_400
        paced = self._paced_share(now)
        outcomes = await self._delivery.outcomes_since(day_start)
        in_memory = self._store.all()
        held_ids = {c.id for c in in_memory}
        stored = {c.id: c for c in archived if c.id not in held_ids}
        campaigns = sorted([*in_memory, *stored.values()], key=lambda c: c.id)
        held: list[int | None]
        try:
            held = list(await self._delivery.reserved_now([c.id for c in campaigns], now))
        except StorageUnavailable:  # the spend of this node's view is still worth showing
            held = [None] * len(campaigns)
        lines = []
        for c, reserved in zip(campaigns, held, strict=True):
            spent = outcomes.get((c.id, "charge"), (0, 0))[1] if c.id in stored else self._delivery.spent(c.id, day)
            allowed = int(c.daily_budget_micros * paced)
            wins, cleared = outcomes.get((c.id, "win"), (0, 0))  # a win notice's price is the clearing CPM
            losses, _ = outcomes.get((c.id, "loss"), (0, 0))
            lines.append(CampaignSpend(
                c.id, c.name, c.state, c.daily_budget_micros, spent,
                spent / c.daily_budget_micros if c.daily_budget_micros else 0.0,
                allowed, wins, losses,
                wins / (wins + losses) if wins + losses else None,
                cleared // wins if wins else None, reserved,
                None if reserved is None else
                bool(_may_bid(spent + reserved + c.bid_cap_micros // 1000, c.daily_budget_micros, allowed))))
        return day, lines

    def _paced_share(self, now: float) -> float:
        """The share of a daily budget pacing lets a campaign have spent by `now`."""
        return min(1.0, (now % 86_400) / 86_400 + self._slack)

    def paced_limit(self, campaign: Campaign, now: float) -> int:
        """What `campaign` may have spent (and reserved for live bids) by `now`, in micros."""
        return int(campaign.daily_budget_micros * self._paced_share(now))

    @staticmethod
    def new_id() -> str:
        return f"cmp_{uuid.uuid4().hex[:12]}"

    # ---- bidding ----
    def frequency_use(self, campaign: Campaign, user_id: str | None, now: float) -> float | None:
        """Highest cap utilisation 0..1 for this user, or None when a cap is reached."""
        if user_id is None:
            return 0.0
        worst = 0.0
        for window, seconds in WINDOWS.items():
            cap = getattr(campaign.frequency_caps, window)
            if cap is None:
                continue
            seen = self._delivery.count_since(user_id, now - seconds, campaign.id)
            if seen >= cap:
                return None
            worst = max(worst, seen / cap)
        return worst

    def _entries(self) -> builtins.list[_Entry]:  # `list` here is the method above
        """The live campaigns' entries, following the store."""
        self._follow()
        return self._index.live()

    def timed(self) -> builtins.list[Campaign]:
        """The campaigns whose state the clock may move, by id: approved or scheduled ones with a start, live ones
        with an end (the scheduler looks at these, not at every campaign)."""
        self._follow()
        stored = self._index.stored
        return sorted((stored[slot] for slot in self._timed), key=lambda c: c.id)

    def _follow(self) -> None:
        """Bring the index up to the store: only the campaigns that changed are looked at again."""
        changed = self._index.sync(self._store.version, self._store.get, self._store.all)
        if changed is None:  # made afresh: every slot's spend is read again
            self._spend_day = None
            self._timed = {slot for slot, c in enumerate(self._index.stored) if _timed(c)}
        elif changed:
            self._moved_slots.update(changed)
            for slot in changed:
                if _timed(self._index.stored[slot]):
                    self._timed.add(slot)
                else:
                    self._timed.discard(slot)
            day = self._spend_day
            if day is not None and len(self._spend_arr) == len(self._index.stored):
                for slot in changed:  # a campaign gone live again may have spent today
                    self._spend_arr[slot] = self._held(self._index.stored[slot].id, day)

    # ---- spend: told of each charge by the notices, so a charge looks again at its one campaign ----
    def charging(self, campaign_id: str) -> None:
        """A charge of `campaign_id` is under way: its spend may change (and change back, if it fails to store).
        Every charge is announced so (NoticeService); spend changed otherwise is told by spend_changed() or
        spend_reloaded()."""
        self._charging[campaign_id] = self._charging.get(campaign_id, 0) + 1

    def charged(self, campaign_id: str) -> None:
        """The charge of `campaign_id` is over (stored, refused or undone)."""
        left = self._charging.get(campaign_id, 0) - 1
        if left > 0:
            self._charging[campaign_id] = left
        else:
            self._charging.pop(campaign_id, None)
        self._charged.add(campaign_id)

    def spend_changed(self, campaign_ids: Iterable[str]) -> None:
        """The spend of these campaigns changed without a charge here (refreshed from what other nodes charged):
        each is read again, as after a charge."""
        self._charged.update(campaign_ids)

    def spend_reloaded(self) -> None:
        """Spend changed in ways no charge announced (reloaded, or refreshed from what other nodes charged)."""
        self._spend_day = None

    def _held(self, campaign_id: str, day: str) -> int:
        """What a campaign spent on `day` and what its live bids may still cost: pacing holds it to its budget."""
        return self._delivery.spend.get((campaign_id, day), 0) + self._delivery.reserved.get(campaign_id, 0)

    def _spent(self, day: str) -> np.ndarray:
        """Today's spend and live bids' reservations by slot: read whole when the day turns or spend changed
        unannounced, else only for the campaigns whose charges or reservations moved since it was last read."""
        self._follow()
        self._charged.update(self._delivery.reservations_moved())
        index = self._index
        version = self._delivery.version
        if version == self._spend_seen and self._spend_day == day and len(self._spend_arr) == len(index.stored):
            # Whatever the ended charges changed was read after their last change already.
            self._charged.clear()
            return self._spend_arr
        if self._spend_day != day or len(self._spend_arr) != len(index.stored) or \
                not (self._charging or self._charged):
            spend, reserved = self._delivery.spend, self._delivery.reserved
            self._spend_arr = np.array([spend.get((c.id, day), 0) + reserved.get(c.id, 0) for c in index.stored],
                                       dtype=np.float64)
            self._open_key = None  # every slot's open state is worked out again
            self._moved_slots.clear()
        else:
            slot_of, arr = index.slot_of, self._spend_arr
            for campaign_id in (*self._charging, *self._charged):
                slot = slot_of.get(campaign_id)
                if slot is not None:
                    value = self._held(campaign_id, day)
                    if arr[slot] != value:
                        arr[slot] = value
                        self._moved_slots.add(slot)
        self._charged.clear()
        self._spend_day, self._spend_seen = day, version
        return self._spend_arr

    def _open(self, now: float) -> tuple[np.ndarray, int]:
        """Which slots' campaigns the pacing rule lets bid at `now`, and a number that changes with it.

        The answer changes only when a charge or an edit lands, the day turns, the paced share of the
        budget passes a closed campaign's spend, or a campaign's end comes; until the earliest of those it
        is reused, and a charge or an edit looks again at its campaign's slot only. A campaign stops
        bidding at its `ends_at`, not at the scheduler's next pass, which records it completed.
        """
        self._delivery.lapse(now)  # bids that expired unbilled give back what they reserved
        spent = self._spent(utc_day(now))
        budgets, most, ends = self._index.budgets, self._index.most, self._index.ends
        if self._open_key is not None and self._open_from <= now < self._open_until:
            moved = self._moved_slots
            if moved:
                paced = self._paced_share(now)
                day_start = now - now % 86_400
                flipped = False
                for slot in moved:
                    need, budget = spent[slot] + most[slot], budgets[slot]
                    is_open = bool(_may_bid(need, budget, budget * paced)) and now < ends[slot]
                    if now < ends[slot]:
                        self._open_until = min(self._open_until, float(ends[slot]))
                    if is_open != self._open_slots[slot]:
                        self._open_slots[slot] = is_open
                        flipped = True
                    if not is_open and _may_bid(need, budget, budget):  # closed by pacing: it reopens later today
                        self._open_until = min(self._open_until,
                                               day_start + 86_400 * (float(need / budgets[slot]) - self._slack))
                moved.clear()
                self._open_from = now  # the slots looked at now hold from now on (a clock set back looks again)
                if flipped:
                    self._open_version += 1
            return self._open_slots, self._open_version
        self._moved_slots.clear()
        day_start = now - now % 86_400
        paced = self._paced_share(now)
        need = spent + most
        running = now < ends
        self._open_slots = _may_bid(need, budgets, budgets * paced) & running
        until = day_start + 86_400
        waiting = ~self._open_slots & _may_bid(need, budgets, budgets) & running  # closed by pacing alone
        if waiting.any():
            until = min(until, day_start + 86_400 * (float((need[waiting] / budgets[waiting]).min()) - self._slack))
        if running.any():
            until = min(until, float(ends[running].min()))
        self._open_key, self._open_from, self._open_until = True, now, until
        self._open_version += 1
        return self._open_slots, self._open_version

    def candidates(self, request: BidRequest, user_id: str | None, now: float, limit: int,
                   customer_value: Callable[[], float | None] | None = None) -> Candidates | None:
        """Every eligible (imp, campaign, creative) triple, up to `limit`, or None when there is none.

        What depends only on the request's shape (where, which device, which sizes and mimes) is
        cached per shape as arrays (app/bidding/candidates.py); block lists, budget, frequency and
        lifetime-value bands are checked per request as masks over them, and a shape's selection is
        reused until pacing or spend changes which campaigns are open. `customer_value` gives the user's
        predicted lifetime value (None: unknown, or their personal data may not be used), asked only when
        a candidate campaign targets a band: such a campaign bids only inside its band.
        """
        open_slots, version = self._open(now)  # follows the store first
        shape = self._index.shape(request)
        if not shape.n:
            return None
        capped, banded = shape.capped, shape.banded
        blocked = self._index.blocked(request)
        if blocked is not None:
            mask = blocked[1]
            open_slots = open_slots & ~mask  # a new array, this request's own
            if capped:
                capped = [s for s in capped if not mask[s]]
            if banded:
                banded = [s for s in banded if not mask[s]]
        if banded:
            value = customer_value() if customer_value is not None else None
            open_slots = open_slots.copy() if blocked is None else open_slots
            entries = self._index.entries
            for slot in banded:
                entry = entries[slot]
                assert entry is not None  # a shape's slots are live ones
                t = entry.campaign.targeting
                if value is None or (t.ltv_min is not None and value < t.ltv_min) or \
                        (t.ltv_max is not None and value > t.ltv_max):
                    open_slots[slot] = False
            if capped and user_id is not None and self._delivery.has_impressions(user_id):
                return self._with_frequency(shape, capped, open_slots, user_id, now, limit)
            return shape.select(open_slots, limit, None)
        if capped and user_id is not None and self._delivery.has_impressions(user_id):
            return self._with_frequency(shape, capped, open_slots.copy() if blocked is None else open_slots,
                                        user_id, now, limit)
        if blocked is not None:
            return shape.select(open_slots, limit, None)
        if shape.selected_for != (version, limit):
            shape.selected = shape.select(open_slots, limit, None)
            shape.selected_for = (version, limit)
        return shape.selected

    def _with_frequency(self, shape: _Shape, capped: builtins.list[int], open_slots: np.ndarray, user_id: str,
                        now: float, limit: int) -> Candidates | None:
        """The selection with frequency caps applied to `open_slots` (a copy this changes), for a request whose
        shape has `capped` slots. Only the capped campaigns that showed the user something in the longest window
        are looked at: for any other every count is 0, so its use is 0 (a cap below 1 shuts it all the same)."""
        index = self._index
        entries, slot_of = index.entries, index.slot_of
        freq = np.zeros(len(entries), dtype=np.float32)
        for shut in index.shut_by_caps:
            open_slots[shut] = False
        for campaign_id in self._delivery.campaigns_shown(user_id, now - LONGEST_WINDOW_S):
            slot = slot_of.get(campaign_id)
            entry = entries[slot] if slot is not None else None
            if entry is None or not entry.capped:
                continue
            use = self.frequency_use(entry.campaign, user_id, now)
            if use is None:
                open_slots[slot] = False
            else:
                freq[slot] = use
        return shape.select(open_slots, limit, freq)

    @property
    def shape_cache(self) -> ShapeCache:
        """The request shapes' cache (entries, bytes, evictions for the metrics)."""
        return self._index.shapes

    @property
    def block_masks(self) -> LRU:
        return self._index.masks


def _timed(c: Campaign) -> bool:
    """Whether the clock may move the campaign on: start it (approved or scheduled, with a start) or complete it
    (live, with an end). The workflow's scheduler decides when."""
    return (c.starts_at is not None and c.state in ("approved", "scheduled")) or \
        (c.ends_at is not None and c.state == "live")


def _creative_lists(c: Campaign) -> list[list[Creative]]:
    """The campaign's creatives: the running ones, and those under review when changes wait for approval."""
    pending = c.pending.creatives if c.pending is not None else None
    return [c.creatives] if pending is None else [c.creatives, pending]


def _repeated(creatives: list[Creative]) -> set[str]:
    """The ids listed more than once."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for creative in creatives:
        (repeated if creative.id in seen else seen).add(creative.id)
    return repeated


def _check_creatives(c: Campaign, before: Campaign | None) -> list[str]:
    """A creative's id is an arm of the campaign's policy, named by reward signals and by POST .../creatives: each
    list (running, under review) names an id once, and holds at most MAX_CREATIVES. Only what the change brings is
    refused: a campaign stored with a repeat before it was checked can still be paused, approved or archived."""
    had = [] if before is None else _creative_lists(before)
    repeated_before = set().union(*map(_repeated, had))
    problems = []
    for creatives in _creative_lists(c):
        repeated = sorted(_repeated(creatives) - repeated_before)
        if repeated:
            problems.append("creatives: each creative id may be listed once in a campaign; listed more than once: "
                            + ", ".join(repeated))
        if len(creatives) > MAX_CREATIVES and len(creatives) > max(map(len, had), default=0):
            problems.append(f"creatives: at most {MAX_CREATIVES:,} in a campaign ({len(creatives):,} given)")
    return problems


def _check(c: Campaign, before: Campaign | None) -> None:
    """The rules a campaign's fields obey together (each field's own limits are checked as it is decoded:
    state/campaigns.py); `before` is the stored campaign a change replaces (None: a new campaign)."""
    problems = _check_creatives(c, before)
    if not c.id or len(c.id) > 64:
        problems.append("id must be 1 to 64 characters")
    if c.bid_cap_micros <= 0:
        problems.append("bid_cap_micros must be positive")
    if c.daily_budget_micros <= 0:
        problems.append("daily_budget_micros must be positive")
    for creative in c.creatives:
        if creative.format == "banner" and not (creative.w and creative.h):
            problems.append(f"banner creative {creative.id} needs w and h")
        if not creative.markup:
            problems.append(f"creative {creative.id} needs markup")
    if c.value_share is not None and not 0 < c.value_share <= 1:  # also refuses NaN
        problems.append("value_share must be greater than 0 and at most 1 (or null: no value bidding)")
    low, high = c.targeting.ltv_min, c.targeting.ltv_max
    if any(v is not None and not 0 <= v <= 1e9 for v in (low, high)):  # also refuses NaN
        problems.append("targeting.ltv_min and ltv_max must be 0 to 1,000,000,000")
    elif low is not None and high is not None and low > high:
        problems.append("targeting.ltv_min must not be above ltv_max")
    for window in WINDOWS:
        cap = getattr(c.frequency_caps, window)
        if cap is not None and cap < 1:
            problems.append(f"frequency_caps.{window} must be at least 1")
    items = [(i.platform, i.cid) for i in c.dsp_line_items]
    if len(set(items)) != len(items):
        problems.append("dsp_line_items: each (platform, cid) may be listed once")
    if problems:
        raise InvalidInput("; ".join(problems), {"problems": problems})
