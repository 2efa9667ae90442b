"""Frequency caps are worked out for the campaigns that showed the user something, not for every capped campaign
a request could go to: with many capped campaigns a bid for a user with impressions reads the use of those few,
and selects what the plain reference selects (test_candidates_reference.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.sqlite import migrations
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore
from app.admin import AuditTrail
from app.bidding.campaigns import CampaignService, utc_day
from app.bidding.openrtb import Banner, BidRequest, Device, Geo, Imp
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting
from tests.unit.app.bidding.test_candidates_reference import candidate_rows, reference_candidates

DAY0 = 1_790_000_000 // 86_400 * 86_400 + 43_200  # midday UTC


class _Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def _campaign(i: int, caps: FrequencyCaps) -> Campaign:
    return Campaign(id=f"c{i:03d}", name="x", advertiser_domain="a.example", state="live",
                    bid_cap_micros=1_000_000 + i, daily_budget_micros=10**12, targeting=Targeting(),
                    frequency_caps=caps, creatives=[Creative(f"k{i}", "banner", "<b>", w=300, h=250)])


@pytest.fixture
def service(tmp_path: Path):
    loop = asyncio.new_event_loop()
    db = Database(tmp_path / "records.db", migrations.RECORDS, synchronous="OFF")
    loop.run_until_complete(db.open())
    store, delivery, clock = SqliteCampaignStore(db), SqliteDeliveryStore(db), _Clock(DAY0)
    loop.run_until_complete(store.load())
    loop.run_until_complete(delivery.load(clock.now()))
    audit = AuditTrail(SqliteAuditStore(db), clock, lambda *_: None)
    svc = CampaignService(store, delivery, clock, audit, pacing_slack=0.05)
    yield svc, store, delivery, clock, loop
    loop.run_until_complete(db.close())
    loop.close()


def test_caps_are_read_for_the_campaigns_the_user_was_shown(service, monkeypatch):
    svc, store, delivery, clock, loop = service
    for i in range(300):  # every one capped, a few at 2 an hour
        caps = FrequencyCaps(hour=2) if i % 50 == 0 else FrequencyCaps(day=50)
        loop.run_until_complete(svc.create("test", _campaign(i, caps), audit=False))
    # A cap below 1 (stored as it was loaded, not through the checks): shut for any user with impressions.
    loop.run_until_complete(store.put(_campaign(300, FrequencyCaps(minute=0)), clock.now()))
    request = BidRequest(id="r", imp=[Imp(id="1", banner=Banner(w=300, h=250))],
                         device=Device(devicetype=1, geo=Geo(country="USA")))
    day = utc_day(clock.now())
    shown = ["c000", "c000", "c050", "c007"]  # c000 reaches its cap of 2 an hour
    for n, campaign_id in enumerate(shown):
        loop.run_until_complete(delivery.charge(f"b{n}", campaign_id, "u1", 1_000, day, clock.now() - 60 * n))
    loop.run_until_complete(delivery.charge("old", "c100", "u1", 1_000, day, clock.now() - 2 * 86_400))

    looked_at: list[str] = []
    use = svc.frequency_use

    def counted(campaign, user_id, now):
        looked_at.append(campaign.id)
        return use(campaign, user_id, now)
    monkeypatch.setattr(svc, "frequency_use", counted)
    for user_id in ("u1", "u2", None):
        found = candidate_rows(svc.candidates(request, user_id, clock.now(), 400), store)
        monkeypatch.setattr(svc, "frequency_use", use)  # the reference reads every capped campaign's use
        assert found == reference_candidates(svc, request, user_id, clock.now(), 400)
        monkeypatch.setattr(svc, "frequency_use", counted)
        ids = [row[1] for row in found or ()]
        if user_id == "u1":
            assert "c000" not in ids and "c300" not in ids and "c050" in ids and len(ids) == 299
            assert sorted(looked_at) == ["c000", "c007", "c050"]  # not the 298 others, nor a day-old impression's
        else:  # no impressions: no cap is looked at, and the cap below 1 shuts nothing
            assert "c300" in ids and len(ids) == 301
            assert looked_at == []
        looked_at.clear()
