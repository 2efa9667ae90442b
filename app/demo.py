"""Demo data: loaded by `python -m app seed-demo`, idempotently. Each capability adds its set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from state.campaigns import Campaign, Creative, FrequencyCaps, HistoryEntry
from state.catalog import Cabin, Flight, Product, ProductKind
from state.reco import RecoItem

if TYPE_CHECKING:
    from app.platform import Platform

DEMO_ADMIN = ("admin@contrail.demo", "contrail-admin")
DEMO_CUSTOMER = ("traveller@contrail.demo", "contrail-demo")
PAID_CARD = "4242424242424242"
PENDING_CARD = "4000000000000259"   # the simulator leaves it pending; reconciliation settles it
DECLINED_CARD = "4000000000000002"


async def _accounts(platform: Platform) -> str:
    created = 0
    for (email, password), role in ((DEMO_ADMIN, "admin"), (DEMO_CUSTOMER, "customer")):
        if await platform.accounts.by_email(email) is None:
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
            offer_ids=[route], frequency_caps=FrequencyCaps(hour=6, day=20), creatives=creatives,
            # The demo's own campaigns are loaded running, as a carrier's existing campaigns migrate to live.
            state="live", channels=["display"], created_by="demo", edited_by="demo"))
    return out


async def _campaigns(platform: Platform) -> str:
    created = 0
    for campaign in demo_campaigns():
        if await platform.campaign_store.read(campaign.id) is None:  # archived ones included
            # Loaded running, with the step in its history so the console's history says where it came from.
            step = HistoryEntry(platform.clock.now(), "seed-demo", "load", "", campaign.state, "demo data")
            await platform.campaigns.create("seed-demo", campaign, audit=False, step=step)
            created += 1
    return f"demo campaigns: {created} created"


# (origin, destination, block minutes, economy base fare in cents, departures per day as UTC hours)
DEMO_ROUTES = [("LIS", "BCN", 125, 7_900, (7, 17)), ("LIS", "LHR", 160, 9_900, (6, 12, 18)),
               ("LIS", "CDG", 150, 8_900, (8, 19)), ("LIS", "FNC", 105, 5_900, (9, 15, 20)),
               ("LIS", "AMS", 175, 10_900, (7,)), ("LIS", "MAD", 80, 5_400, (7, 13, 19)),
               ("OPO", "LHR", 150, 8_400, (10,)), ("OPO", "CDG", 135, 7_400, (11,)),
               ("FAO", "DUB", 165, 8_900, (14,)), ("LIS", "OPO", 55, 3_900, (7, 12, 17, 21)),
               ("LIS", "PDL", 140, 7_400, (10,)), ("LIS", "FAO", 45, 3_400, (8, 18))]
DEMO_PRODUCTS: list[tuple[str, ProductKind, str, int, int | None]] = [
    ("seat-standard", "Seat", "Seat selection", 1_200, None),
    ("bag-23kg", "Bag", "Checked bag 23 kg", 3_500, None),
    ("meal-hot", "Meal", "Hot meal", 1_400, 40),
    ("lounge-pass", "Lounge", "Lounge access", 3_900, 20),
    ("carbon-offset", "CarbonOffset", "Carbon offset", 400, None),
    ("insurance-travel", "Insurance", "Travel insurance", 1_900, None),
    ("fasttrack", "FastTrack", "Fast-track security", 900, 30),
]


def demo_schedule(start: float, days: int = 30) -> list[Flight]:
    """A small carrier's month: every route both ways from the day after `start`."""
    first_day = (int(start // 86_400) + 1) * 86_400
    flights = []
    for day in range(days):
        midnight = first_day + day * 86_400
        date = time.strftime("%Y-%m-%d", time.gmtime(midnight))
        for n, (a, b, minutes, fare, hours) in enumerate(DEMO_ROUTES):
            for leg, (origin, destination) in enumerate(((a, b), (b, a))):
                for k, hour in enumerate(hours):
                    number = f"CT{100 + n * 20 + leg * 10 + k}"
                    departs = midnight + hour * 3600 + (leg * 2 * 3600)
                    flights.append(Flight(
                        id=f"{number}-{date}", airline="CT", number=number, origin=origin, destination=destination,
                        departure_at=departs, arrival_at=departs + minutes * 60,
                        cabins={"economy": Cabin(150, fare), "premium": Cabin(24, fare * 5 // 2)}))
    return flights


async def load_catalog(platform: Platform) -> str:
    """The demo products and 30 days of flights on the demo routes (those not there yet)."""
    # A bulk load, not an admin's changes: the audit log gets no entry per flight and product.
    catalog, created = platform.catalog, 0
    for pid, kind, name, price, capacity in DEMO_PRODUCTS:
        if platform.catalog_store.product(pid) is None:
            product = Product(pid, kind, name, price, capacity_per_flight=capacity)
            await catalog.put_product("seed-demo", product, audit=False)
            created += 1
    flights = [f for f in demo_schedule(platform.clock.now()) if platform.catalog_store.flight(f.id) is None]
    for start in range(0, len(flights), 500):
        await catalog.put_flights("seed-demo", flights[start:start + 500], audit=False)
    return f"demo catalog: {created} products, {len(flights)} flights on {len(DEMO_ROUTES) * 2} routes over 30 days"


def demo_reco_items() -> list[RecoItem]:
    """The carrier's destinations ("dest-BCN", category destination, tagged with the airports they are flown
    from) and its ancillary products (their product ids, category ancillary, tagged with their kind)."""
    flown_from: dict[str, set[str]] = {}
    for a, b, *_ in DEMO_ROUTES:
        flown_from.setdefault(b, set()).add(a)
        flown_from.setdefault(a, set()).add(b)
    items = [RecoItem(f"dest-{airport}", category="destination", tags=[f"from-{o}" for o in sorted(origins)])
             for airport, origins in sorted(flown_from.items())]
    items += [RecoItem(pid, category="ancillary", tags=[kind]) for pid, kind, *_ in DEMO_PRODUCTS]
    return items


async def _reco(platform: Platform) -> str:
    items = demo_reco_items()
    await platform.reco.put_items(items)
    destinations = sum(i.category == "destination" for i in items)
    return f"demo recommendation items: {destinations} destinations, {len(items) - destinations} ancillaries"


# What the demo's members look at: three tastes, each a few destinations and the extras that go with them.
DEMO_TASTES = (
    (("dest-FNC", "dest-FAO", "dest-PDL", "dest-BCN"), ("bag-23kg", "seat-standard", "insurance-travel")),
    (("dest-LHR", "dest-CDG", "dest-AMS", "dest-MAD"), ("meal-hot", "seat-standard", "carbon-offset")),
    (("dest-LHR", "dest-CDG", "dest-DUB", "dest-OPO"), ("lounge-pass", "fasttrack", "meal-hot")),
)


async def _browsing(platform: Platform) -> str:
    """A day of the members' browsing, as ingest would have heard it: views, clicks, carts and a few extras
    bought, mostly within each member's taste, so that co-views, trends and the trained embeddings have
    something to say; the demo traveller looks at islands. Then the first training of the embeddings."""
    import numpy as np

    from app.reco.service import Feedback

    rng = np.random.default_rng(21)
    now = platform.clock.now()
    events: list[Feedback] = []
    everything = [i.item_id for i in demo_reco_items() if i.item_id != "dest-LIS"]
    for c in range(DEMO_MEMBERS):
        places, extras = DEMO_TASTES[c % len(DEMO_TASTES)]
        at = now - rng.uniform(2, 20) * 3_600
        for _ in range(int(rng.integers(3, 9))):
            liked = rng.random() < 0.85
            item = str(rng.choice(places if liked else everything))
            events.append(Feedback(f"member-{c:04d}", item, "product_view", at))
            if liked and rng.random() < 0.4:
                events.append(Feedback(f"member-{c:04d}", item, "click", at + 20))
            at += rng.uniform(60, 1_800)
        if rng.random() < 0.5:
            events.append(Feedback(f"member-{c:04d}", str(rng.choice(extras)), "cart_add", at))
            if rng.random() < 0.5:
                events.append(Feedback(f"member-{c:04d}", str(rng.choice(extras)), "purchase", at + 120))
    account = await platform.accounts.by_email(DEMO_CUSTOMER[0])
    if account is not None:
        for k, (item, kind) in enumerate((("dest-FNC", "product_view"), ("dest-PDL", "product_view"),
                                          ("dest-FNC", "click"), ("dest-FAO", "product_view"))):
            events.append(Feedback(account.id, item, kind, now - 3_600 + 300 * k))
    events.sort(key=lambda e: e.at)
    recorded = await platform.reco.record(events)
    trained = await platform.reco.train("seed-demo")
    return (f"demo browsing: {recorded} events by {DEMO_MEMBERS} members and the traveller; recommendation model "
            f"{trained['model']} ({trained['status']}: {trained['reason']})")


async def _activity(platform: Platform) -> str:
    """A few days of a small carrier's life, so every console page has something on first open: the demo
    traveller's orders in every state, loyalty history, a promotion, and mail with opens and clicks."""
    from app.errors import PaymentRequired
    from app.retail.offers import SearchQuery
    from state.loyalty import Member, Promotion

    account = await platform.accounts.by_email(DEMO_CUSTOMER[0])
    if account is None:
        return "demo activity: skipped (no demo traveller)"
    user, owner = account.id, f"user:{account.id}"
    clock = platform.clock
    travel = getattr(clock, "advance", None)  # the seed's clock moves on by hand (python -m app seed-demo)

    async def order(route: tuple[str, str], days_ahead: int, passengers: int = 1, bundle: str = "flight_only"):
        day = time.strftime("%Y-%m-%d", time.gmtime(clock.now() + days_ahead * 86_400))
        offers, _ = await platform.offers.search(SearchQuery(route[0], route[1], day, passengers), owner,
                                                  is_guest=False)
        offer = next((o for o in offers if o.bundle == bundle), offers[0])
        return await platform.orders.accept(offer.id, owner)

    await platform.loyalty.put_member(Member(user, email=DEMO_CUSTOMER[0], preferred_channel="email"))
    states = []
    if travel is not None:
        # A trip already taken and an order never paid: booked back in time, on a flight that left longer ago than
        # flown orders are kept (`archive_after_days`), then swept now. Played out in the past, not the future, so
        # that every time they carry is behind the real now.
        back = (2 + platform.config.retail.archive_after_days) * 86_400
        taken = next(f for f in demo_schedule(clock.now() - back, days=1)
                     if (f.origin, f.destination) == ("LIS", "BCN"))
        await platform.catalog.put_flights("seed-demo", [taken], audit=False)
        travel(-back)
        flown = await order(("LIS", "BCN"), 1)
        await platform.orders.pay(flown.id, owner, PAID_CARD)
        await order(("LIS", "BCN"), 1)  # left unpaid
        travel(back)
        await platform.sweep_retail_once()
        states += ["ARCHIVED", "EXPIRED"]
    for route, days, passengers, bundle in ((("LIS", "LHR"), 5, 2, "comfort"), (("LIS", "FNC"), 9, 1, "flight_only")):
        paid = await order(route, days, passengers, bundle)
        await platform.orders.pay(paid.id, owner, PAID_CARD)
    cancelled = await order(("LIS", "CDG"), 6)
    await platform.orders.pay(cancelled.id, owner, PAID_CARD)
    quote = await platform.orders.quote_cancellation(cancelled.id, owner)
    await platform.orders.confirm_cancellation(cancelled.id, quote.id, owner)
    await platform.orders.pay((await order(("LIS", "MAD"), 4)).id, owner, PENDING_CARD)
    with contextlib.suppress(PaymentRequired):  # declined: the order stays PROPOSED for another card
        await platform.orders.pay((await order(("LIS", "AMS"), 7)).id, owner, DECLINED_CARD)
    states += ["FULFILLED", "CANCELLED", "PAYMENT_PENDING", "PROPOSED"]

    loyalty = platform.loyalty
    for n, (amount, channel) in enumerate(((18_000, "in_store"), (9_500, "web"), (32_000, "in_store"))):
        await loyalty.earn(user, amount, channel, f"demo-{n}", is_digital=channel == "web")
    await loyalty.redeem(user, 100)
    now = clock.now()
    await loyalty.put_promotion("seed-demo", Promotion("winter-double", "Winter double stars on the web", 1.0,
                                                       now - 86_400, now + 30 * 86_400, ["web"]))

    # Two of the day's three activations for the traveller: one opened and clicked, one opened.
    clicked = False
    for subject, destination in (("Madeira is calling", "FNC"), ("London, twice a day", "LHR")):
        link = f"{platform.public_urls.links()}/#/shop?destination={destination}"
        result = await platform.activation.activate(
            user, subject, f"Fares to {destination} this winter: {link}",
            f'<h1>{subject}</h1><p>Fares from Lisbon this winter. <a href="{link}">See the fares</a></p>',
            channel="email", campaign="winter-sale")
        message_id = result["provider_message_id"]
        if message_id:
            await platform.email.record("open", message_id)
            if not clicked:
                await platform.email.record("click", message_id, url=link)
                clicked = True
    return f"demo activity: the traveller's orders ({', '.join(states)}), stars, a promotion, 2 emails"




DEMO_MEMBERS = 600
DEMO_HISTORY_DAYS = 720


async def _customers(platform: Platform) -> str:
    """Two years of purchases by 600 loyalty members (each buying at their own rate until they stop, at the
    counter or on the web), so lifetime value has a history to learn from; then its first fit."""
    import numpy as np

    travel = getattr(platform.clock, "advance", None)
    if travel is None:
        return "demo customers: skipped (the clock cannot be moved)"
    rng = np.random.default_rng(20)
    rate = rng.gamma(0.9, 1 / 30, DEMO_MEMBERS)       # purchases a day while they still buy
    stays = rng.exponential(420, DEMO_MEMBERS)        # days until they stop
    first = rng.uniform(0, DEMO_HISTORY_DAYS * 0.8, DEMO_MEMBERS)
    by_day: dict[int, list[tuple[int, int]]] = {}
    for c in range(DEMO_MEMBERS):
        t = first[c]
        while t < min(first[c] + stays[c], DEMO_HISTORY_DAYS):
            by_day.setdefault(int(t), []).append((c, int(rng.gamma(2.0, 90) * 100) + 2_000))
            t += rng.exponential(1 / rate[c])
    moved, purchases = -DEMO_HISTORY_DAYS * 86_400.0, 0
    travel(moved)
    try:
        for day in range(DEMO_HISTORY_DAYS):
            travel(86_400)
            moved += 86_400
            await asyncio.gather(*(platform.loyalty.earn(f"member-{c:04d}", cents, "web" if c % 3 else "in_store",
                                                         f"demo-member-{day}-{c}") for c, cents in by_day.get(day, ())))
            purchases += len(by_day.get(day, ()))
    finally:
        travel(-moved)  # back to now
    fitted = await platform.ltv.refit()
    return (f"demo customers: {purchases} purchases by {DEMO_MEMBERS} members over {DEMO_HISTORY_DAYS} days; "
            f"lifetime value {fitted['model'] or 'not fitted'} ({fitted['reason']})")


DATA_SETS = [("accounts", _accounts), ("campaigns", _campaigns), ("catalog", load_catalog), ("reco", _reco),
             ("activity", _activity), ("customers", _customers), ("browsing", _browsing)]


async def seed_demo(platform: Platform) -> list[str]:
    """Load every demo data set not loaded yet; return a line per set."""
    lines = []
    for name, loader in DATA_SETS:
        if await platform.demo_markers.is_loaded(name):
            lines.append(f"{name}: already loaded")
            continue
        lines.append(await loader(platform))
        await platform.demo_markers.mark_loaded(name, platform.clock.now())
    return lines
