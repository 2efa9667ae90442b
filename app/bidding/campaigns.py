"""Campaign rules: validation, eligibility for an impression, and budget pacing.

Pacing: a campaign may bid while today's spend is below
    daily_budget × min(1, elapsed_fraction_of_UTC_day + pacing_slack)
so spend follows the clock through the day instead of draining in the first minutes, with
`pacing_slack` (default 5% of the budget) as head-room for bursts. At the full budget it
stops until the next UTC day.
"""

from __future__ import annotations

import time
import uuid

from app.bidding.openrtb import BidRequest, Imp
import msgspec

from app.errors import Conflict, InvalidInput, NotFound
from state.campaigns import Campaign, CampaignStore, Creative
from state.clock import Clock
from state.delivery import DeliveryStore

WINDOWS = {"minute": 60, "hour": 3600, "day": 86_400}


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class CampaignService:
    def __init__(self, store: CampaignStore, delivery: DeliveryStore, clock: Clock, *, pacing_slack: float) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._slack = pacing_slack

    # ---- admin ----
    async def create(self, campaign: Campaign) -> Campaign:
        _check(campaign)
        if self._store.get(campaign.id) is not None:
            raise Conflict(f"campaign {campaign.id} already exists")
        campaign = msgspec.structs.replace(campaign, created_at=self._clock.now())
        await self._store.put(campaign, self._clock.now())
        return campaign

    async def update(self, campaign_id: str, **changes) -> Campaign:
        current = self.get(campaign_id)
        updated = msgspec.structs.replace(current, **{k: v for k, v in changes.items() if v is not None})
        _check(updated)
        await self._store.put(updated, self._clock.now())
        return updated

    async def add_creative(self, campaign_id: str, creative: Creative) -> Campaign:
        current = self.get(campaign_id)
        if any(c.id == creative.id for c in current.creatives):
            raise Conflict(f"creative {creative.id} already exists in campaign {campaign_id}")
        return await self.update(campaign_id, creatives=[*current.creatives, creative])

    def get(self, campaign_id: str) -> Campaign:
        campaign = self._store.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    def list(self) -> list[Campaign]:
        return self._store.all()

    @staticmethod
    def new_id() -> str:
        return f"cmp_{uuid.uuid4().hex[:12]}"

    # ---- bidding ----
    def budget_open(self, campaign: Campaign, now: float) -> bool:
        """Below the paced share of today's budget."""
        spent = self._delivery.spent(campaign.id, utc_day(now))
        fraction = (now % 86_400) / 86_400
        return spent < campaign.daily_budget_micros * min(1.0, fraction + self._slack)

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

    def candidates(self, request: BidRequest, user_id: str | None, now: float, limit: int
                   ) -> list[tuple[int, Campaign, Creative, float]]:
        """(imp index, campaign, creative, frequency use) for every eligible pair, up to `limit`."""
        device = request.device
        country = (device.geo.country if device and device.geo else None) or \
                  (request.user.geo.country if request.user and request.user.geo else None)
        device_type = device.devicetype if device else None
        bcat, badv, bapp = set(request.bcat or ()), set(request.badv or ()), set(request.bapp or ())
        out: list[tuple[int, Campaign, Creative, float]] = []
        for campaign in self._store.all():
            if campaign.status != "active" or not campaign.creatives:
                continue
            t = campaign.targeting
            if t.countries and country not in t.countries:
                continue
            if t.device_types and device_type not in t.device_types:
                continue
            if bcat.intersection(campaign.categories) or campaign.advertiser_domain in badv \
                    or (campaign.app_bundle and campaign.app_bundle in bapp):
                continue
            if not self.budget_open(campaign, now):
                continue
            use = self.frequency_use(campaign, user_id, now)
            if use is None:
                continue
            for index, imp in enumerate(request.imp or ()):
                for creative in campaign.creatives:
                    if (not t.formats or creative.format in t.formats) and fits(imp, creative):
                        out.append((index, campaign, creative, use))
                        if len(out) >= limit:
                            return out
        return out


def fits(imp: Imp, creative: Creative) -> bool:
    """Does the creative fit the impression's media and size?"""
    if creative.format == "banner" and imp.banner is not None:
        b = imp.banner
        sizes = [(f.w, f.h) for f in b.format or ()] + ([(b.w, b.h)] if b.w and b.h else [])
        return not sizes or (creative.w, creative.h) in sizes
    if creative.format == "video" and imp.video is not None:
        return not creative.mimes or bool(set(creative.mimes) & set(imp.video.mimes or ()))
    if creative.format == "audio" and imp.audio is not None:
        return not creative.mimes or bool(set(creative.mimes) & set(imp.audio.mimes or ()))
    return creative.format == "native" and imp.native is not None


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
    for window in WINDOWS:
        cap = getattr(c.frequency_caps, window)
        if cap is not None and cap < 1:
            problems.append(f"frequency_caps.{window} must be at least 1")
    if problems:
        raise InvalidInput("; ".join(problems), {"problems": problems})
