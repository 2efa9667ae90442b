"""Activation messages through the real app carry the customer's recommended items: destinations as links to the
console's shop, ancillaries by name, in the email's text and HTML and in the in-app message."""

import asyncio
from urllib.parse import parse_qs, urlparse

import pytest

from app.demo import DEMO_PRODUCTS
from app.main import PLATFORM, create_app
from state.catalog import Product
from tests.conftest import make_config
from tests.integration.channels.helpers import activate

NAMES = {pid: name for pid, _, name, _, _ in DEMO_PRODUCTS}


@pytest.fixture
async def crm(aiohttp_client, tmp_path, clock):
    """The app with the embedded SMTP sink, the catalog's products, and destinations and ancillaries as items."""
    config = make_config(tmp_path, smtp__port=0, smtp__embedded_sink="true")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    for pid, kind, name, price, capacity in DEMO_PRODUCTS:
        await platform.catalog.put_product("test", Product(pid, kind, name, price, capacity_per_flight=capacity),
                                           audit=False)
    _, key = await platform.api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    items = [{"item_id": f"dest-{d}", "category": "destination"} for d in ("BCN", "MAD", "LHR")]
    items += [{"item_id": "lounge-pass", "category": "ancillary"}, {"item_id": "bag-23kg", "category": "ancillary"}]
    resp = await client.post("/v1/reco/items", json=items, headers=staff)
    assert resp.status == 200, await resp.text()
    now = clock.now()
    # Shoppers who look at Barcelona look at Madrid; Ola looked at Barcelona and put a lounge pass in the cart.
    events = []
    for u in range(5):
        events += [{"source": "web", "type": "product_view", "user_id": f"s{u}", "product_id": d, "at": now - 900 + u}
                   for d in ("dest-BCN", "dest-MAD")]
    events += [{"source": "web", "type": "product_view", "user_id": "ola", "product_id": "dest-BCN", "at": now - 60},
               {"source": "web", "type": "cart_add", "user_id": "ola", "product_id": "lounge-pass", "at": now - 30}]
    resp = await client.post("/v1/channels/ingest", json=events, headers=staff)
    assert resp.status == 200 and (await resp.json())["rejected"] == [], await resp.text()
    await platform.bus.idle()
    return client, staff


async def mail_to(client, staff, address: str) -> dict:
    for _ in range(200):
        box = await (await client.get("/v1/admin/mailbox", headers=staff)).json()
        found = [m for m in box["items"] if m["to"] == [address]]
        if found:
            return found[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no mail to {address}")


async def expected(client, user_id: str) -> list[tuple[str, str]]:
    """(item id, how the message names it) for the top three of the customer's list, as the engine answers it."""
    answer = await client.app[PLATFORM].reco.recommend(user_id, "personalized", 5, ["destination", "ancillary"])
    assert answer["model"] != "popular"
    return [(i["item_id"], f"Flights to {i['item_id'][5:]}" if i["item_id"].startswith("dest-")
             else NAMES[i["item_id"]]) for i in answer["items"][:3]]


async def test_an_activation_email_carries_the_customers_recommended_items(crm):
    client, staff = crm
    platform = client.app[PLATFORM]
    await client.put("/v1/loyalty/members/ola", json={"email": "ola@example.com", "preferred_channel": "email"},
                     headers=staff)
    picks = await expected(client, "ola")
    assert any(item_id.startswith("dest-") for item_id, _ in picks)
    result = await activate(client, staff, user_id="ola")
    assert result["status"] == "queued"
    mail = await mail_to(client, staff, "ola@example.com")
    text, html = mail["text"], mail["html"]
    assert text.startswith("Fly to Lisbon from $49.") and "Recommended for you:" in text
    base = platform.public_urls.links()
    for item_id, label in picks:
        if item_id.startswith("dest-"):
            link = f"{base}/#/shop?destination={item_id[5:]}"
            assert f"- {label}: {link}" in text
            # In the HTML the link goes through click tracking, which leads to the shop's page for it.
            tracked = [u for u in _hrefs(html) if "/v1/email/click/" in u]
            assert link in [parse_qs(urlparse(u).query)["u"][0] for u in tracked]
        else:
            assert f"- {label}" in text
        assert label in html
    assert "Recommended for you" in html and "Lisbon</a>" in html
    # The outbox keeps what was sent, and the Activation event names the items.
    await platform.event_log.flush()
    [event] = [e for e in await platform.event_log.query("Activation", None, 0, 100)
               if result["activation_id"] in bytes(e.payload).decode()]
    assert all(item_id in bytes(event.payload).decode() for item_id, _ in picks)


async def test_the_in_app_message_carries_them_too(crm):
    client, staff = crm
    platform = client.app[PLATFORM]
    await client.put("/v1/loyalty/members/ola", json={"preferred_channel": "in_app"}, headers=staff)
    picks = await expected(client, "ola")
    result = await activate(client, staff, user_id="ola", channel="in_app")
    assert result["status"] == "delivered"
    [message] = await platform.inapp.inbox("ola", 10, None)
    assert message.text.startswith("Fly to Lisbon from $49.")
    for _, label in picks:
        assert label in message.text


async def test_customers_without_history_get_the_message_as_written(crm):
    client, staff = crm
    await client.put("/v1/loyalty/members/max", json={"email": "max@example.com"}, headers=staff)
    await activate(client, staff, user_id="max")
    mail = await mail_to(client, staff, "max@example.com")
    assert "Recommended" not in mail["text"] and "Recommended" not in mail["html"]
    assert mail["text"].split("\n")[:2] == ["Fly to Lisbon from $49.", ""]
    assert mail["text"].split("\n")[2].startswith("Unsubscribe: ")  # the sender's own footer comes next


def _hrefs(html: str) -> list[str]:
    import html as html_lib
    import re
    return [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
