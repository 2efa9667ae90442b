"""Campaign rules: validation, eligibility for an impression, and budget pacing.

Pacing: a campaign may bid while today's spend is below
    daily_budget × min(1, elapsed_fraction_of_UTC_day + pacing_slack)
so spend follows the clock through the day instead of draining in the first minutes, with
`pacing_slack` (default 5% of the budget) as head-room for bursts. At the full budget it
stops until the next UTC day.
"""

from __future__ import annotations

import builtins
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import numpy as np

from app.admin import AuditTrail
from app.auth import Principal
from app.bidding.openrtb import BidRequest, Imp, banner_sizes
from app.errors import Conflict, InvalidInput, NotFound
from app.runtime.clock import Clock
from state.campaigns import Campaign, Creative, HistoryEntry
from state.ports import CampaignStore, DeliveryStore

WINDOWS = {"minute": 60, "hour": 3600, "day": 86_400}


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


def utc_day(at: float) -> str:
    """The UTC date of a timestamp, as budgets are kept (YYYY-MM-DD)."""
    return _day_name(int(at // 86_400))


@functools.lru_cache(maxsize=8)
def _day_name(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86_400))


class CampaignService:
    def __init__(self, store: CampaignStore, delivery: DeliveryStore, clock: Clock, audit: AuditTrail, *,
                 pacing_slack: float) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._audit = audit
        self._slack = pacing_slack
        self._index: list[_Entry] = []
        self._index_version = -1
        self._budgets = np.zeros(0)
        self._spend_arr = np.zeros(0)
        self._spend_key: tuple | None = None
        self._shapes: OrderedDict[tuple, _Shape | None] = OrderedDict()
        # One array per distinct list of bid caps, shared by the shapes that have it: requests of
        # different shapes (devices, countries) with the same candidates then share their caps, and
        # the batch auction reads them as they are instead of concatenating copies.
        self._caps: dict[bytes, np.ndarray] = {}
        self._open_slots = np.zeros(0, dtype=bool)
        self._open_key: tuple | None = None
        self._open_from = self._open_until = 0.0
        self._open_version = 0

    # ---- storage: the workflow (app/campaigns/workflow.py) decides which changes are allowed ----
    async def create(self, actor: Principal | str, campaign: Campaign, *, audit: bool = True,
                     step: HistoryEntry | None = None) -> Campaign:
        """Store a new campaign as given (409 when its id exists): a campaign.create entry, unless `audit` is False
        (a load that is no admin action, such as the demo data set). Admins create through the workflow, which
        starts every campaign in draft; a load may give any state."""
        _check(campaign)
        if self._store.get(campaign.id) is not None:
            raise Conflict(f"campaign {campaign.id} already exists")
        campaign = msgspec.structs.replace(campaign, created_at=self._clock.now())
        await self._store.put(campaign, self._clock.now(), step)
        if audit:
            await self._audit.record(actor, "campaign.create", campaign.id, name=campaign.name)
        return campaign

    async def replace(self, campaign: Campaign, step: HistoryEntry | None = None) -> Campaign:
        """Store a changed campaign (with its history entry, atomically); the candidate index follows at once."""
        self.get(campaign.id)
        _check(campaign)
        await self._store.put(campaign, self._clock.now(), step)
        return campaign

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
        campaign = self._store.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    def list(self) -> list[Campaign]:
        return self._store.all()

    async def spend_today(self, now: float) -> tuple[str, builtins.list[CampaignSpend]]:
        """Every campaign's spend and notices for the UTC day of `now` (the day, the lines by campaign id)."""
        day = utc_day(now)
        day_start = now - now % 86_400
        paced = self._paced_share(now)
        outcomes = await self._delivery.outcomes_since(day_start)
        lines = []
        for c in sorted(self._store.all(), key=lambda c: c.id):
            spent = self._delivery.spent(c.id, day)
            wins, cleared = outcomes.get((c.id, "win"), (0, 0))  # a win notice's price is the clearing CPM
            losses, _ = outcomes.get((c.id, "loss"), (0, 0))
            lines.append(CampaignSpend(
                c.id, c.name, c.state, c.daily_budget_micros, spent,
                spent / c.daily_budget_micros if c.daily_budget_micros else 0.0,
                int(c.daily_budget_micros * paced), wins, losses,
                wins / (wins + losses) if wins + losses else None,
                cleared // wins if wins else None))
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
        if self._index_version != self._store.version:
            self._index = [_Entry(c) for c in self._store.all() if c.state == "live" and c.creatives]
            self._budgets = np.array([e.campaign.daily_budget_micros for e in self._index], dtype=np.float64)
            self._index_version = self._store.version
            self._spend_key = None
            self._shapes.clear()
            self._caps.clear()
        return self._index

    def _spent(self, day: str) -> np.ndarray:
        """Today's spend per indexed campaign, rebuilt only when a charge has landed since."""
        key = (self._index_version, day, self._delivery.version)
        if key != self._spend_key:
            spend = self._delivery.spend
            self._spend_arr = np.array([spend.get((e.campaign.id, day), 0) for e in self._index], dtype=np.float64)
            self._spend_key = key
        return self._spend_arr

    def _open(self, now: float) -> tuple[np.ndarray, int]:
        """Which indexed campaigns the pacing rule lets bid at `now`, and a number that changes with it.

        The answer changes only when a charge lands, the day turns, or the paced share of the
        budget passes a closed campaign's spend; until the earliest of those it is reused.
        """
        spent = self._spent(utc_day(now))
        if self._spend_key == self._open_key and self._open_from <= now < self._open_until:
            return self._open_slots, self._open_version
        day_start = now - now % 86_400
        paced = self._paced_share(now)
        budgets = self._budgets
        self._open_slots = spent < budgets * paced
        until = day_start + 86_400
        waiting = ~self._open_slots & (spent < budgets)  # closed by pacing, not by the whole budget
        if waiting.any():
            until = min(until, day_start + 86_400 * (float((spent[waiting] / budgets[waiting]).min()) - self._slack))
        self._open_key, self._open_from, self._open_until = self._spend_key, now, until
        self._open_version += 1
        return self._open_slots, self._open_version

    def candidates(self, request: BidRequest, user_id: str | None, now: float, limit: int,
                   customer_value: Callable[[], float | None] | None = None) -> Candidates | None:
        """Every eligible (imp, campaign, creative) triple, up to `limit`, or None when there is none.

        What depends only on the request's shape (where, which device, what is blocked,
        which sizes and mimes) is cached per shape as arrays; budget, frequency and lifetime-value
        bands are checked per request as masks over them, and a shape's selection is reused until
        pacing or spend changes which campaigns are open. `customer_value` gives the user's predicted
        lifetime value (None: unknown, or their personal data may not be used), asked only when a
        candidate campaign targets a band: such a campaign bids only inside its band.
        """
        shape = self._static_candidates(request)
        if shape is None:
            return None
        open_slots, version = self._open(now)
        if shape.banded:
            value = customer_value() if customer_value is not None else None
            open_slots = open_slots.copy()
            for slot in shape.banded:
                t = self._index[slot].campaign.targeting
                if value is None or (t.ltv_min is not None and value < t.ltv_min) or \
                        (t.ltv_max is not None and value > t.ltv_max):
                    open_slots[slot] = False
            if shape.capped and user_id is not None and self._delivery.has_impressions(user_id):
                return self._with_frequency(shape, open_slots, user_id, now, limit)
            return shape.select(open_slots, limit, None)
        if shape.capped and user_id is not None and self._delivery.has_impressions(user_id):
            return self._with_frequency(shape, open_slots.copy(), user_id, now, limit)
        if shape.selected_for != (version, limit):
            shape.selected = shape.select(open_slots, limit, None)
            shape.selected_for = (version, limit)
        return shape.selected

    def _with_frequency(self, shape: _Shape, open_slots: np.ndarray, user_id: str, now: float,
                        limit: int) -> Candidates | None:
        """The selection with frequency caps applied to `open_slots` (a copy this changes)."""
        freq = np.zeros(len(self._index), dtype=np.float32)
        for slot in shape.capped:
            use = self.frequency_use(self._index[slot].campaign, user_id, now)
            if use is None:
                open_slots[slot] = False
            else:
                freq[slot] = use
        return shape.select(open_slots, limit, freq)

    def _static_candidates(self, request: BidRequest) -> _Shape | None:
        entries = self._entries()  # rebuilds (and clears the shape cache) when campaigns change
        device = request.device
        country = (device.geo.country if device and device.geo else None) or \
                  (request.user.geo.country if request.user and request.user.geo else None)
        device_type = device.devicetype if device else None
        key = (country, device_type, tuple(request.bcat or ()), tuple(request.badv or ()),
               tuple(request.bapp or ()), tuple(_imp_key(imp) for imp in request.imp or ()))
        try:
            cached = self._shapes[key]
            self._shapes.move_to_end(key)
            return cached
        except KeyError:
            pass
        imps = [(i, _ImpShape(imp)) for i, imp in enumerate(request.imp or ())]
        bcat, badv, bapp = set(request.bcat or ()), set(request.badv or ()), set(request.bapp or ())
        found: list[tuple[int, int, Creative]] = []
        for slot, e in enumerate(entries):
            c = e.campaign
            if (e.countries and country not in e.countries) or (e.device_types and device_type not in e.device_types):
                continue
            if (bcat and not bcat.isdisjoint(e.categories)) or c.advertiser_domain in badv \
                    or (c.app_bundle is not None and c.app_bundle in bapp):
                continue
            for index, shape in imps:
                found.extend((index, slot, creative) for creative in e.matching(shape))
        result = _Shape(found, entries, self._caps) if found else None
        self._shapes[key] = result
        if len(self._shapes) > _SHAPE_CACHE_SIZE:
            self._shapes.popitem(last=False)
        return result


class _Shape:
    """The statically eligible candidates of one request shape, as parallel arrays."""

    __slots__ = ("n", "imp_of", "slot", "caps", "creatives", "campaigns", "capped", "banded", "selected",
                 "selected_for")

    def __init__(self, found: list[tuple[int, int, Creative]], entries: list[_Entry],
                 caps_pool: dict[bytes, np.ndarray]) -> None:
        self.n = len(found)
        self.imp_of = np.array([f[0] for f in found], dtype=np.int64)
        self.slot = np.array([f[1] for f in found], dtype=np.int64)
        self.creatives = [f[2] for f in found]
        self.campaigns = [entries[f[1]].campaign for f in found]
        caps = np.array([c.bid_cap_micros for c in self.campaigns], dtype=np.float64)
        caps.flags.writeable = False
        self.caps = caps_pool.setdefault(caps.tobytes(), caps)
        self.capped = sorted({f[1] for f in found if entries[f[1]].capped})
        self.banded = sorted({f[1] for f in found if entries[f[1]].banded})  # campaigns targeting an LTV band
        self.selected: Candidates | None = None  # the selection for users without frequency use ...
        self.selected_for: tuple | None = None     # ... and the (open campaigns, limit) it was made for

    def select(self, open_slots: np.ndarray, limit: int, freq: np.ndarray | None) -> Candidates | None:
        """The first `limit` candidates whose campaigns are open, or None when none is."""
        keep = open_slots[self.slot]
        if keep.all():
            rows: slice | np.ndarray = slice(0, min(self.n, limit))
        else:
            rows = np.flatnonzero(keep)[:limit]
            if not len(rows):
                return None
        return Candidates(self, rows, freq)


class Candidates:
    """The candidates of one request: a row selection of its shape plus per-user frequency use."""

    __slots__ = ("_shape", "_rows", "n", "imp_of", "caps", "freq")

    def __init__(self, shape: _Shape, rows: slice | np.ndarray, freq: np.ndarray | None) -> None:
        self._shape, self._rows = shape, rows
        self.imp_of = shape.imp_of[rows]
        whole = isinstance(rows, slice) and rows == slice(0, shape.n)
        self.caps = shape.caps if whole else shape.caps[rows]  # all of the shape's candidates: its shared caps
        self.n = len(self.imp_of)
        self.freq = freq[shape.slot[rows]] if freq is not None else None

    def pair(self, i: int) -> tuple[Campaign, Creative]:
        """The campaign and creative of candidate row `i`."""
        j = self._rows.start + i if isinstance(self._rows, slice) else int(self._rows[i])
        return self._shape.campaigns[j], self._shape.creatives[j]


_SHAPE_CACHE_SIZE = 10_000


def _imp_key(imp: Imp) -> tuple:
    """What an impression accepts, as its request gives it: the shape cache's key (cheap to make;
    _ImpShape is worked out only when a shape is new)."""
    b, video, audio = imp.banner, imp.video, imp.audio
    return (None if b is None else (b.w, b.h, tuple((f.w, f.h) for f in b.format) if b.format else None),
            None if video is None else tuple(video.mimes or ()), None if audio is None else tuple(audio.mimes or ()),
            imp.native is not None)


class _ImpShape:
    """What an impression accepts, worked out when its request shape is new."""

    __slots__ = ("sizes", "banner", "video_mimes", "audio_mimes", "native")

    def __init__(self, imp: Imp) -> None:
        # A banner takes creatives of its sizes only: one without a size (valid, as sizes are only
        # recommended) has no creative to match, rather than any.
        self.sizes = banner_sizes(imp.banner) if imp.banner is not None else set()
        self.banner = bool(self.sizes)
        self.video_mimes = set(imp.video.mimes or ()) if imp.video is not None else None
        self.audio_mimes = set(imp.audio.mimes or ()) if imp.audio is not None else None
        self.native = imp.native is not None


class _Entry:
    """A live campaign with its targeting and creatives pre-sorted for fast matching."""

    def __init__(self, c: Campaign) -> None:
        self.campaign = c
        t = c.targeting
        self.countries, self.device_types = set(t.countries), set(t.device_types)
        self.categories = set(c.categories)
        self.capped = any(getattr(c.frequency_caps, w) is not None for w in WINDOWS)
        self.banded = c.targeting.ltv_min is not None or c.targeting.ltv_max is not None
        allowed = [cr for cr in c.creatives if not t.formats or cr.format in t.formats]
        self.banners = [cr for cr in allowed if cr.format == "banner"]
        self.banners_by_size: dict[tuple, list[Creative]] = {}
        for cr in self.banners:
            self.banners_by_size.setdefault((cr.w, cr.h), []).append(cr)
        self.videos = [(cr, set(cr.mimes)) for cr in allowed if cr.format == "video"]
        self.audios = [(cr, set(cr.mimes)) for cr in allowed if cr.format == "audio"]
        self.natives = [cr for cr in allowed if cr.format == "native"]

    def matching(self, shape: _ImpShape) -> list[Creative]:
        found: list[Creative] = []
        if shape.banner:
            for size in shape.sizes:
                found += self.banners_by_size.get(size, ())
        if shape.video_mimes is not None:
            found += [cr for cr, m in self.videos if not m or not m.isdisjoint(shape.video_mimes)]
        if shape.audio_mimes is not None:
            found += [cr for cr, m in self.audios if not m or not m.isdisjoint(shape.audio_mimes)]
        if shape.native:
            found += self.natives
        return found


def _check(c: Campaign) -> None:
    problems = []
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
    if problems:
        raise InvalidInput("; ".join(problems), {"problems": problems})
