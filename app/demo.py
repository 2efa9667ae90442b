"""Demo data: loaded by `python -m app seed-demo`, idempotently. Each capability adds its set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from state.campaigns import Campaign, Creative, FrequencyCaps

if TYPE_CHECKING:
    from app.platform import Platform

DEMO_ADMIN = ("admin@contrail.demo", "contrail-admin")
DEMO_CUSTOMER = ("traveller@contrail.demo", "contrail-demo")


async def _accounts(platform: "Platform") -> str:
    created = 0
    for (email, password), role in ((DEMO_ADMIN, "admin"), (DEMO_CUSTOMER, "customer")):
        if platform.account_store.by_email(email) is None:
            await platform.admin.create_user("seed-demo", email, password, role)
            created += 1
    return f"demo accounts: {created} created ({DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}, " \
           f"{DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]})"


def demo_campaigns() -> list[Campaign]:
    """A small carrier's advertising: routes and bundles in every format exchanges send."""
    routes = [("LIS-BCN", "Lisbon to Barcelona from $59"), ("OPO-LHR", "Porto to London from $79"),
              ("FAO-DUB", "Faro to Dublin from $69"), ("LIS-FNC", "Lisbon to Madeira from $49"),
              ("OPO-PAR", "Porto to Paris from $65"), ("LIS-AMS", "Lisbon to Amsterdam from $89")]
    banner_sizes = [(300, 250), (728, 90), (320, 50), (300, 600), (160, 600), (1080, 1920)]
    out = []
    for i, (route, line) in enumerate(routes):
        creatives = [Creative(f"{route.lower()}-{w}x{h}", "banner",
                              f'<a href="https://fly.contrail.example/{route}"><img src="https://cdn.contrail.example/'
                              f'{route}-{w}x{h}.png" alt="{line}" width="{w}" height="{h}"></a>', w=w, h=h,
                              mimes=["image/png", "text/html"])
                     for w, h in banner_sizes]
        creatives.append(Creative(f"{route.lower()}-video", "video",
                                  f'<VAST version="4.2"><Ad id="{route}"><InLine><AdTitle>{line}</AdTitle>'
                                  f'</InLine></Ad></VAST>', w=640, h=480, mimes=["video/mp4"]))
        creatives.append(Creative(f"{route.lower()}-native", "native",
                                  '{"native":{"assets":[{"id":1,"title":{"text":"' + line + '"}}]}}'))
        out.append(Campaign(
            id=f"demo-{route.lower()}", name=f"{route} summer sale", advertiser_domain="contrail.example",
            bid_cap_micros=(4 + i) * 1_000_000, daily_budget_micros=(200 + 50 * i) * 1_000_000,
            categories=["IAB20"], app_bundle="com.contrail.app", deal_ids=["123", "333"] if i < 2 else [],
            offer_ids=[route], frequency_caps=FrequencyCaps(hour=6, day=20), creatives=creatives))
    return out


async def _campaigns(platform: "Platform") -> str:
    created = 0
    for campaign in demo_campaigns():
        if platform.campaign_store.get(campaign.id) is None:
            await platform.campaigns.create(campaign)
            created += 1
    return f"demo campaigns: {created} created"


DATA_SETS = [("accounts", _accounts), ("campaigns", _campaigns)]


async def seed_demo(platform: "Platform") -> list[str]:
    """Load every demo data set not loaded yet; return a line per set."""
    lines = []
    for name, loader in DATA_SETS:
        if await platform.demo_markers.is_loaded(name):
            lines.append(f"{name}: already loaded")
            continue
        lines.append(await loader(platform))
        await platform.demo_markers.mark_loaded(name, platform.clock.now())
    return lines
