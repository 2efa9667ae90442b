"""CampaignService.candidates against a plain reference (hypothesis state machine).

`candidates` is optimised: a per-request-shape LRU of candidate arrays, a selection reused per
(open campaigns, limit), cached spend and open-slot arrays, shared bid-cap arrays. The
reference below computes the same thing from scratch for every request, as the code did before
those caches (the plain `candidates()` of the candidate-caching change). Random runs of campaign
creations and edits, charges (spend and impressions), bids admitted (reserving their most until billed or
expired), the clock moving through the day (onto
the exact instants where pacing reopens a campaign and the day turns, and back), and bid
requests of a few repeating shapes check after every request that both give the same rows in
the same order, with the same bid caps and frequency use, and None alike. The stores are the
real SQLite ones, in a temporary directory.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import deque
from pathlib import Path

import msgspec
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from adapters.sqlite import migrations
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore
from app.admin import AuditTrail
from app.bidding.campaigns import CampaignService, Candidates, _Entry, _ImpShape, utc_day
from app.bidding.openrtb import Audio, Banner, BidRequest, Device, Format, Geo, Imp, Native, User, Video
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting
from state.delivery import Admission, AlreadyCharged, IssuedBid

Row = tuple[int, str, str, float, float | None]  # imp index, campaign id, creative id, bid cap, frequency use


def reference_candidates(service: CampaignService, request: BidRequest, user_id: str | None, now: float,
                         limit: int) -> list[Row] | None:
    """The candidates of one request worked out from scratch: every (imp, campaign, creative) the request's
    place, device, blocks, sizes and mimes allow, of the live campaigns in store order, kept while pacing
    and frequency caps let the campaign bid, up to `limit`; None when there is none.

    Each row's frequency use is None when it does not count (no user, no capped campaign among those
    found, or a user without impressions), else the campaign's use (0 for an uncapped one)."""
    device = request.device
    country = (device.geo.country if device and device.geo else None) or \
              (request.user.geo.country if request.user and request.user.geo else None)
    device_type = device.devicetype if device else None
    imps = [(i, _ImpShape(imp)) for i, imp in enumerate(request.imp or ())]
    bcat, badv, bapp = set(request.bcat or ()), set(request.badv or ()), set(request.bapp or ())
    # The live campaigns straight from the store, not through the service's index.
    entries = [_Entry(c) for c in service._store.all() if c.state == "live" and c.creatives]
    found: list[tuple[int, _Entry, Creative]] = []
    for e in entries:
        c = e.campaign
        if (e.countries and country not in e.countries) or (e.device_types and device_type not in e.device_types):
            continue
        if (bcat and not bcat.isdisjoint(e.categories)) or c.advertiser_domain in badv \
                or (c.app_bundle is not None and c.app_bundle in bapp):
            continue
        for index, shape in imps:
            found.extend((index, e, creative) for creative in e.matching(shape))
    if not found:
        return None
    delivery = service._delivery
    delivery.lapse(now)  # bids expired unbilled hold nothing (the service gives their reservations back too)
    counted = user_id is not None and any(e.capped for _, e, _ in found) and delivery.has_impressions(user_id)
    day = utc_day(now)
    day_start = now - now % 86_400
    paced = min(1.0, (now - day_start) / 86_400 + service._slack)
    use: dict[str, float | None] = {}
    rows: list[Row] = []
    for index, e, creative in found:
        c = e.campaign
        # Open while spend, the live bids' reservations and one impression at the bid cap fit the paced budget.
        held = delivery.spend.get((c.id, day), 0) + delivery.reserved.get(c.id, 0) + c.bid_cap_micros // 1000
        if not (c.daily_budget_micros > 0 and held <= c.daily_budget_micros * paced):
            continue
        if c.ends_at is not None and now >= c.ends_at:  # it stops at its end, before the scheduler completes it
            continue
        u: float | None = 0.0
        if counted and e.capped:
            if c.id not in use:
                use[c.id] = service.frequency_use(c, user_id, now)
            if (u := use[c.id]) is None:
                continue
        rows.append((index, c.id, creative.id, float(c.bid_cap_micros), float(np.float32(u)) if counted else None))
        if len(rows) == limit:
            break
    return rows or None


def candidate_rows(found: Candidates | None, store: SqliteCampaignStore) -> list[Row] | None:
    """What `candidates` returned, as the reference's rows (checking its arrays agree with each other and
    that each row carries the campaign as it is stored now)."""
    if found is None:
        return None
    assert found.n == len(found.imp_of) == len(found.caps)
    assert found.freq is None or len(found.freq) == found.n
    rows: list[Row] = []
    for i in range(found.n):
        campaign, creative = found.pair(i)
        assert campaign == store.get(campaign.id), f"row {i} carries a stale version of campaign {campaign.id}"
        assert creative in campaign.creatives
        rows.append((int(found.imp_of[i]), campaign.id, creative.id, float(found.caps[i]),
                     None if found.freq is None else float(found.freq[i])))
    return rows


# ---- what campaigns and requests are made of: few values, weighted so that targeting and requests
# meet often (most campaigns target anywhere, most requests block nothing) and shapes repeat ----
SIZES = [(300, 250), (300, 250), (728, 90), (320, 50)]
USERS = ["u1", "u2", "u3"]  # charged users have impressions; "u4" never has any
DAY0 = 1_790_000_000 // 86_400 * 86_400  # a UTC midnight


def _creative_body(i: int, kind: str, size: tuple[int, int], mimes: list[str]) -> Creative:
    if kind == "banner":
        return Creative(f"k{i}", "banner", "<b>", w=size[0], h=size[1])
    if kind in ("video", "audio"):
        return Creative(f"k{i}", kind, "<VAST/>", mimes=[m for m in mimes if m.startswith(kind)])
    return Creative(f"k{i}", "native", "{}")


_creative_parts = st.tuples(
    st.sampled_from(["banner", "banner", "video", "audio", "native"]), st.sampled_from(SIZES),
    st.sampled_from([[], ["video/mp4"], ["video/webm", "audio/mpeg"], ["audio/mp4"], ["video/mp4", "audio/mp4"]]))
_targeting = st.builds(
    Targeting, countries=st.sampled_from([[], [], ["USA"], [], ["GBR", "USA"], ["PRT"]]),
    device_types=st.sampled_from([[], [], [], [1], [2, 4]]),
    formats=st.sampled_from([[], [], [], [], ["banner"], ["video", "native"], ["audio"]]))
_caps = st.builds(FrequencyCaps, minute=st.sampled_from([None, 1, None, 2]),
                  hour=st.sampled_from([2, None, 3, None]), day=st.sampled_from([None, 3]))
_bid_caps = st.sampled_from([100_000, 1_000_000, 2_500_000])  # few values: shapes share cap arrays
_budgets = st.sampled_from([2_000_000, 400_000, 10_000_000])
_categories = st.sampled_from([[], [], ["IAB1"], ["IAB2", "IAB3"]])
_domains = st.sampled_from(["a.example", "a.example", "b.example", "c.example"])
_bundles = st.sampled_from([None, None, "com.a", "com.b"])
_ends = st.sampled_from([None, None, None, DAY0 + 3_600.0, DAY0 + 51_200.5, DAY0 + 90_000.0])


@st.composite
def campaign_fields(draw) -> dict:
    parts = draw(st.lists(_creative_parts, min_size=draw(st.sampled_from([1, 1, 1, 1, 0])), max_size=4))
    return dict(name="x", advertiser_domain=draw(_domains), bid_cap_micros=draw(_bid_caps),
                daily_budget_micros=draw(_budgets), state=draw(st.sampled_from(["live"] * 4 + ["paused", "draft"])),
                categories=draw(_categories), app_bundle=draw(_bundles), targeting=draw(_targeting),
                frequency_caps=draw(_caps), creatives=[_creative_body(i, *p) for i, p in enumerate(parts)],
                ends_at=draw(_ends))


# One change to a stored campaign (the workflow decides which are allowed; the index follows whatever is stored).
_changes = st.one_of(
    st.fixed_dictionaries({"bid_cap_micros": _bid_caps}),
    st.fixed_dictionaries({"daily_budget_micros": _budgets}),
    st.fixed_dictionaries({"state": st.sampled_from(["live", "paused", "in_review"])}),
    st.fixed_dictionaries({"targeting": _targeting}),
    st.fixed_dictionaries({"categories": _categories}),
    st.fixed_dictionaries({"advertiser_domain": _domains}),
    st.fixed_dictionaries({"app_bundle": _bundles}),
    st.fixed_dictionaries({"frequency_caps": _caps}),
    st.fixed_dictionaries({"ends_at": _ends}),
    st.lists(_creative_parts, max_size=3).map(
        lambda parts: {"creatives": [_creative_body(i, *p) for i, p in enumerate(parts)]}),
)


@st.composite
def imps(draw) -> Imp:
    banner = None
    kind = draw(st.sampled_from(["wh", "wh", "format", "both", "sizeless", "none"]))
    if kind != "none":
        w, h = draw(st.sampled_from(SIZES)) if kind in ("wh", "both") else (None, None)
        formats = None
        if kind in ("format", "both"):
            formats = [Format(*s) for s in draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=2))]
            if draw(st.booleans()):
                formats.append(Format())  # given by ratio only: adds no size
        banner = Banner(w=w, h=h, format=formats)
    video = draw(st.sampled_from([None, None, [], ["video/mp4"], ["video/webm", "video/mp4"]]))
    audio = draw(st.sampled_from([None, None, None, [], ["audio/mpeg"]]))
    return Imp(id="1", banner=banner, video=None if video is None else Video(mimes=video or None),
               audio=None if audio is None else Audio(mimes=audio), native=draw(st.sampled_from([None, None,
                                                                                              Native("{}")])))


COUNTRY = ["USA", "USA", "GBR", None, "USA", "PRT"]
DEVICE_TYPE = [1, 1, None, 2, 1, 4]
BCAT = [None, None, None, [], ["IAB1"], ["IAB3", "IAB2"], ["IAB2", "IAB3"]]
BADV = [None, None, None, ["b.example"], ["c.example", "a.example"]]
BAPP = [None, None, None, ["com.a"], ["com.b", "com.a"]]


@st.composite
def requests(draw) -> BidRequest:
    country = draw(st.sampled_from(COUNTRY))
    where = draw(st.sampled_from(["device", "device", "user", "both"]))  # the user's geo is the fallback
    device_type = draw(st.sampled_from(DEVICE_TYPE))
    device = Device(devicetype=device_type, geo=Geo(country=country) if where != "user" else None) \
        if where != "user" or device_type is not None else None
    user = User(geo=Geo(country=country if where != "both" else draw(st.sampled_from([None, "PRT"])))) \
        if where != "device" else None
    return BidRequest(id="r", imp=draw(st.lists(imps(), min_size=1, max_size=3)), device=device, user=user,
                      bcat=draw(st.sampled_from(BCAT)), badv=draw(st.sampled_from(BADV)),
                      bapp=draw(st.sampled_from(BAPP)))


def variant(request: BidRequest, part: str, imp: Imp, n: int, near: list[Campaign]) -> BidRequest:
    """`request` with one thing about it changed: a shape next to one seen before. Sizes and blocks are
    mostly taken from `near` (the campaigns it found), so that the change makes a difference."""
    replace = msgspec.structs.replace
    imps_ = list(request.imp or ())
    i = n % len(imps_)
    device = request.device or Device()
    if part == "imp":
        imps_[i] = imp
    elif part == "banner formats":  # a banner's w×h as it was, with formats or without
        i = next((j for j, one in enumerate(imps_) if one.banner is not None), i)
        b = imps_[i].banner or Banner()
        sizes = [(c.w, c.h) for campaign in near for c in campaign.creatives if c.format == "banner"]
        formats = None if b.format else [Format(*_other(sizes + SIZES, (b.w, b.h), n))]
        imps_[i] = replace(imps_[i], banner=replace(b, format=formats))
    elif part == "video mimes":
        imps_[i] = replace(imps_[i], video=imp.video or Video(mimes=["video/webm"]))
    elif part == "country":
        country = device.geo.country if device.geo else None
        return replace(request, device=replace(device, geo=Geo(country=_other(COUNTRY, country, n))))
    elif part == "device type":
        return replace(request, device=replace(device, devicetype=_other(DEVICE_TYPE, device.devicetype, n)))
    else:  # a block list: one a campaign found is on, or another
        blocks = {"bcat": BCAT, "badv": BADV, "bapp": BAPP}[part]
        if near and n % 2:
            c = near[n // 2 % len(near)]
            on = {"bcat": c.categories, "badv": [c.advertiser_domain], "bapp": [c.app_bundle] if c.app_bundle else []}
            blocks = [on[part]] if on[part] else blocks
        return replace(request, **{part: _other(blocks, getattr(request, part), n)})
    return replace(request, imp=imps_)


def _other(values: list, current, n: int):
    others = [v for v in values if v != current] or values
    return others[n % len(others)]


_users = st.sampled_from([None, *USERS, "u4"])
_limits = st.sampled_from([1, 2, 3, 5, 64])


class _Clock:
    """The service's clock, set to exact instants so the test can stand on pacing's boundaries."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


class CandidatesMatchReference(RuleBasedStateMachine):
    """Every step that changes something (campaigns, spend, impressions, the clock) ends by sending the
    last request again: its shape is cached by then, so that is where a stale cache would show."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = _Clock(DAY0)
        self.db = Database(Path(self.tmp.name) / "records.db", migrations.RECORDS, synchronous="OFF")
        self.run(self.db.open())
        self.store = SqliteCampaignStore(self.db)
        self.delivery = SqliteDeliveryStore(self.db)
        self.run(self.store.load())
        self.run(self.delivery.load(self.clock.now()))
        self.audit = AuditTrail(SqliteAuditStore(self.db), self.clock, lambda *_: None)
        self.service: CampaignService
        self.slack = 0.0
        self.sent: list[BidRequest] = []
        self.last: tuple[BidRequest, str | None, int] | None = None
        self.last_found: tuple[BidRequest, str | None, int] | None = None
        self.won: list[tuple[str, str]] = []  # (user, campaign) of last_found's candidates
        self.made = self.charged = self.issued = 0
        self.held: list[IssuedBid] = []  # admitted bids not yet billed (some expired by now)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()
        self.tmp.cleanup()

    def _pick(self, pick: int) -> Campaign:
        everyone = self.store.all()
        return everyone[pick % len(everyone)]

    def _check(self, request: BidRequest, user_id: str | None, limit: int) -> None:
        now = self.clock.now()
        # Reading frequency use drops impressions too old for any cap window, which may leave a user with none
        # (has_impressions then says no): each side is shown the impressions as they were before either ran.
        impressions = {user: deque(seen) for user, seen in self.delivery.impressions.items()}
        got = candidate_rows(self.service.candidates(request, user_id, now, limit), self.store)
        self.delivery.impressions.clear()
        self.delivery.impressions.update(impressions)
        assert got == reference_candidates(self.service, request, user_id, now, limit)
        self.last = (request, user_id, limit)
        if got:
            self.last_found = self.last
            self.won = [(user_id if user_id in USERS else "u1", row[1]) for row in got]

    def _again(self) -> None:
        """The last request again, and the last that had candidates if that was another."""
        last, found = self.last, self.last_found
        if last is not None:
            self._check(*last)
        if found is not None and found is not last:
            self._check(*found)

    @initialize(slack=st.sampled_from([0.05, 0.0, 0.3]),
                shape_cache=st.sampled_from([(3, 1 << 30), (10_000, 1 << 30), (10_000, 4_000)]),
                start=st.sampled_from([51_200.0, 0.0, 1.0, 3_600.0, 86_399.0]),
                fields=st.lists(campaign_fields(), min_size=1, max_size=6), request=requests())
    def campaigns(self, slack, shape_cache, start, fields, request):
        self.slack = slack
        self.clock.at = DAY0 + start
        # 3 shapes, or 4,000 bytes (a few small shapes): shapes are evicted and made again too.
        entries, max_bytes = shape_cache
        self.service = CampaignService(self.store, self.delivery, self.clock, self.audit, pacing_slack=slack,
                                       shape_cache_bytes=max_bytes, shape_cache_entries=entries)
        for f in fields:
            self.made += 1
            self.run(self.service.create("test", Campaign(id=f"c{self.made}", **f), audit=False))
        self.bid(request, None, 64)

    # ---- bid requests ----
    @rule(request=requests(), user_id=_users, limit=_limits)
    def bid(self, request, user_id, limit):
        self.sent.append(request)
        self._check(request, user_id, limit)

    @rule(pick=st.integers(0, 10_000), copy=st.booleans(),
          calls=st.lists(st.tuples(_users, _limits), min_size=1, max_size=3))
    def bid_again(self, pick, copy, calls):
        """A shape seen before, for a few users: the same request, or an equal one decoded afresh."""
        request = self.sent[pick % len(self.sent)]
        if copy:
            request = msgspec.json.decode(msgspec.json.encode(request), type=BidRequest)
        for user_id, limit in calls:
            self._check(request, user_id, limit)

    @rule(pick=st.integers(0, 10_000), user_id=_users, limit=_limits, changes=st.lists(st.tuples(
        st.sampled_from(["banner formats", "imp", "bapp", "country", "device type", "bcat", "badv", "video mimes"]),
        imps(), st.integers(0, 10_000)), min_size=1, max_size=3))
    def bid_variants(self, pick, user_id, limit, changes):
        """A shape seen before, and after each of a few shapes next to it (one thing changed), it again."""
        request = self.sent[pick % len(self.sent)]
        self._check(request, user_id, limit)
        near = [self.store.get(campaign_id) for _, campaign_id in self.won] if self.last_found == self.last \
            else self.store.all()
        for part, imp, n in changes:
            self.bid(variant(request, part, imp, n, near), user_id, limit)
            self._check(request, user_id, limit)

    # ---- campaigns ----
    @rule(fields=campaign_fields())
    def create(self, fields):
        self.made += 1
        self.run(self.service.create("test", Campaign(id=f"c{self.made}", **fields), audit=False))
        self._again()

    @rule(pick=st.integers(0, 10_000), changes=_changes)
    def edit(self, pick, changes):
        current = self._pick(pick)
        self.run(self.service.replace(msgspec.structs.replace(current, **changes)))
        self._again()

    @precondition(lambda self: len(self.store.all()) > 1)
    @rule(pick=st.integers(0, 10_000))
    def archive(self, pick):  # the campaign leaves the store's memory: the index must let it go too
        current = self._pick(pick)
        self.run(self.service.replace(msgspec.structs.replace(current, state="archived")))
        assert self.store.get(current.id) is None
        self.won = [(user_id, campaign_id) for user_id, campaign_id in self.won if campaign_id != current.id]
        self._again()

    @rule(pick=st.integers(0, 10_000), parts=_creative_parts)
    def add_creative(self, pick, parts):
        campaign = self._pick(pick)
        creative = _creative_body(len(campaign.creatives), *parts)
        if all(c.id != creative.id for c in campaign.creatives):
            self.run(self.service.replace(msgspec.structs.replace(campaign,
                                                                  creatives=[*campaign.creatives, creative])))
        self._again()

    # ---- delivery: spend moves pacing, impressions move frequency use ----
    def _charge(self, campaign_id: str, user_id: str, price: int, day: str) -> None:
        self.charged += 1
        self.run(self.delivery.charge(f"b{self.charged}", campaign_id, user_id, price, day, self.clock.now()))

    def _announced(self, charges: list[tuple[str, str, int, str]], overlap: bool) -> None:
        """Charges as the notices make them: each announced to the service, which then reads that campaign's
        spend alone; with `overlap`, the next starts before the last is over, and a request comes between."""
        async def one(campaign_id: str, user_id: str, price: int, day: str) -> None:
            self.charged += 1
            self.service.charging(campaign_id)
            try:
                await self.delivery.charge(f"b{self.charged}", campaign_id, user_id, price, day, self.clock.now())
            finally:
                self.service.charged(campaign_id)

        async def all_of() -> None:
            if overlap:
                await asyncio.gather(*(one(*c) for c in charges))
            else:
                for c in charges:
                    await one(*c)
        self.run(all_of())

    @precondition(lambda self: self.won)
    @rule(wins=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([0.3, 0.1, 0.6, 0.02, 1.0])),
                        min_size=1, max_size=3))
    def win(self, wins):
        """Bids for some of the last request's candidates won: their user saw the ads, their campaigns pay
        (a share of their daily budget, so that a few wins close a campaign by pacing or for the day)."""
        for pick, share in wins:
            user_id, campaign_id = self.won[pick % len(self.won)]
            price = int(self.store.get(campaign_id).daily_budget_micros * share)
            self._charge(campaign_id, user_id, price, utc_day(self.clock.now()))
        self._again()

    @precondition(lambda self: self.won)
    @rule(pick=st.integers(0, 10_000), ahead=st.sampled_from([0.01, 0.001, 0.1, -0.01, 0.3]))
    def pacing_closes(self, pick, ahead):
        """One of the last request's campaigns wins what takes its spend `ahead` of (or, below 0, just short of)
        what pacing allows now, staying under its daily budget: pacing closes it until the clock catches up."""
        user_id, campaign_id = self.won[pick % len(self.won)]
        now = self.clock.now()
        budget, day = self.store.get(campaign_id).daily_budget_micros, utc_day(now)
        paced = min(1.0, now % 86_400 / 86_400 + self.slack)
        target = math.ceil(budget * min(paced + ahead, 0.999))
        spent = self.delivery.spend.get((campaign_id, day), 0)
        if target > spent:
            self._charge(campaign_id, user_id, target - spent, day)
        self._again()

    @precondition(lambda self: self.won)
    @rule(wins=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([0.3, 0.1, 0.6, 0.02, 1.0])),
                        min_size=1, max_size=3), overlap=st.booleans())
    def win_notices(self, wins, overlap):
        """As `win`, but charged the way notices charge: announced, so only those campaigns are read again."""
        day = utc_day(self.clock.now())
        charges = []
        for pick, share in wins:
            user_id, campaign_id = self.won[pick % len(self.won)]
            charges.append((campaign_id, user_id, int(self.store.get(campaign_id).daily_budget_micros * share), day))
        self._announced(charges, overlap)
        self._again()

    @precondition(lambda self: self.won)
    @rule(bids=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([1.0, 0.5, 0.01]),
                                  st.sampled_from([300.0, 0.5, 5_000.0])), min_size=1, max_size=3))
    def bids_admitted(self, bids):
        """Bids for some of the last request's campaigns are admitted, each reserving its most (a share of its
        campaign's cap) until it is billed or expires (`ttl` seconds from now)."""
        now = self.clock.now()
        admissions = []
        for pick, share, ttl in bids:
            user_id, campaign_id = self.won[pick % len(self.won)]
            campaign = self.store.get(campaign_id)
            self.issued += 1
            bid = IssuedBid(f"i{self.issued}", "r", "1", campaign_id, "c", user_id,
                            int(campaign.bid_cap_micros * share), now + ttl)
            admissions.append(Admission(bid, self.service.paced_limit(campaign, now), (-1, -1, -1)))
        for admitted, verdict in zip(admissions, self.run(self.delivery.admit(admissions, "", (-1, -1, -1), now)),
                                     strict=True):
            if not verdict:
                self.held.append(admitted.bid)
        self._again()

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 10_000), share=st.sampled_from([1.0, 0.4]))
    def admitted_bid_billed(self, pick, share):
        """An admitted bid is billed (at its price or below, announced as notices do): its reservation becomes
        spend; billed again, nothing changes."""
        bid = self.held.pop(pick % len(self.held))
        price = int(bid.price_micros * share) // 1000

        async def one() -> None:
            self.service.charging(bid.campaign_id)
            try:
                await self.delivery.charge(bid.bid_id, bid.campaign_id, bid.user_id, price,
                                           utc_day(self.clock.now()), self.clock.now())
            except AlreadyCharged:
                pass
            finally:
                self.service.charged(bid.campaign_id)
        self.run(one())
        self._again()

    @rule(charges=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(USERS),
                                      st.sampled_from([600_000, 150_000, 3_000_000, 1_000, 0]), st.booleans()),
                            min_size=1, max_size=3))
    def charge(self, charges):
        """Wins of any campaign charged, today's or (a late one) yesterday's."""
        now = self.clock.now()
        for pick, user_id, price, late in charges:
            self._charge(self._pick(pick).id, user_id, price, utc_day(now - 86_400 if late else now))
        self._again()

    # ---- the clock ----
    @rule(seconds=st.sampled_from([0.001, 1.0, 30.0, 61.0, 900.0, 3_601.0, 4 * 3_600.0, 86_400.0]))
    def time_passes(self, seconds):
        self.clock.at += seconds
        self._again()

    @rule(seconds=st.sampled_from([1.0, 120.0, 3_600.0, 6 * 3_600.0]))
    def clock_steps_back(self, seconds):
        self.clock.at -= seconds
        self._again()

    @rule(offset=st.sampled_from([0.0, -1.0, -0.001, 0.001]), ulps=st.sampled_from([0, 1, -1, 2, -2]))
    def day_turns(self, offset, ulps):
        now = self.clock.now()
        self.clock.at = _nudge(now - now % 86_400 + 86_400 + offset, ulps)
        self._again()

    @rule(pick=st.integers(0, 10_000), ulps=st.sampled_from([1, -1, 0, 3, -3]), forward=st.booleans())
    def pacing_boundary(self, pick, ulps, forward):
        """To the instant (give or take a few ulps) when pacing lets a campaign bid again today: on to it, for
        one closed now, or back to it, for one open now (a clock that goes back should find it closed)."""
        now = self.clock.now()
        day, day_start = utc_day(now), now - now % 86_400
        moments = []
        for c in self.store.all():
            held = self.delivery.spend.get((c.id, day), 0) + self.delivery.reserved.get(c.id, 0)
            share = (held + c.bid_cap_micros // 1000) / c.daily_budget_micros
            if share <= 1.0:
                moments.append(day_start + 86_400 * (share - self.slack))
        moments = sorted((t for t in moments if day_start <= t < day_start + 86_400 and (t > now) == forward),
                         reverse=not forward)  # the nearest first
        if moments:
            self.clock.at = _nudge(moments[pick % len(moments)], ulps)
        self._again()

    @rule(pick=st.integers(0, 10_000), ulps=st.sampled_from([0, 1, -1, 2]), forward=st.booleans())
    def campaign_ends(self, pick, ulps, forward):
        """To the instant (give or take a few ulps) a campaign ends: on to it, for one still running, or back
        to it, for one that has ended (a clock set back finds it running again until the scheduler completes it)."""
        now = self.clock.now()
        ends = sorted((c.ends_at for c in self.store.all() if c.ends_at is not None and (c.ends_at > now) == forward),
                      reverse=not forward)
        if ends:
            self.clock.at = _nudge(ends[pick % len(ends)], ulps)
        self._again()


def _nudge(at: float, ulps: int) -> float:
    for _ in range(abs(ulps)):
        at = math.nextafter(at, math.inf if ulps > 0 else -math.inf)
    return at


TestCandidatesMatchReference = CandidatesMatchReference.TestCase
# One bug reported (and shrunk) at a time keeps a failing run to a minute or so.
TestCandidatesMatchReference.settings = settings(max_examples=75, stateful_step_count=50, deadline=None,
                                                 report_multiple_bugs=False,
                                                 suppress_health_check=[HealthCheck.too_slow])
