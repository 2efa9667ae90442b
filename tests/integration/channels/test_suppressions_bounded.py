"""The suppression list is read from the store on demand (channels.suppression_cache_entries bounds what memory
remembers of it): with one answer remembered, a suppressed address still receives nothing; a node hears another's
change and reads it again; lists are keyset pages of the store; a start reads no entry."""

from __future__ import annotations

import asyncio

import pytest

from adapters.sqlite.suppressions import SqliteSuppressionStore
from app.main import PLATFORM, create_app
from handlers.rest.common import encode_cursor
from state.suppressions import Suppression
from tests.conftest import make_config
from tests.integration.channels.helpers import Relay, activate

SUPPRESSED = [f"gone{n}@example.com" for n in range(6)]


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.stop()


async def test_a_suppressed_address_is_never_sent_to_with_one_answer_in_memory(aiohttp_client, tmp_path, clock,
                                                                               relay):
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05,
                         channels__suppression_cache_entries=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    resp = await client.post("/v1/suppressions", headers=staff, json={"entries": [
        *({"identifier": a, "channel": "email"} for a in SUPPRESSED[:3]),
        *({"identifier": a, "channel": "all"} for a in SUPPRESSED[3:]),
        {"identifier": "mia", "channel": "all"}]})
    assert resp.status == 201, await resp.text()
    store = platform.suppression_store
    assert len(store.cache) == 1
    for n, address in enumerate([*SUPPRESSED, "Kept@Example.com", *reversed(SUPPRESSED)]):
        await platform.email.enqueue(address.upper() if n % 2 else address, "Your trip", "See you on board.")
    mails = await relay.wait_for(1)
    assert [m["To"] for m in mails] == ["Kept@Example.com"]
    query = "SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state"
    for _ in range(100):  # the relay has the mail; the outbox row says so once the sender has written it
        states = [tuple(r) for r in await platform.records_db.fetchall(query)]
        if ("pending", 1) not in states:
            break
        await asyncio.sleep(0.05)
    assert states == [("sent", 1), ("suppressed", 12)]
    # Activation checks the customer's id and contacts the same way.
    await client.put("/v1/loyalty/members/mia", json={"email": "mia@example.com", "preferred_channel": "email"},
                     headers=staff)
    assert (await activate(client, staff, user_id="mia"))["status"] == "suppressed"
    assert len(store.cache) == 1 and store.cache.evictions > 10
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_cache_capacity{cache="suppressions"} 1.0' in metrics
    await client.close()

    # After a restart, nothing is read until a send asks; the entries still hold.
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    assert len(platform.suppression_store.cache) == 0
    for address in SUPPRESSED:
        assert await platform.suppression.is_suppressed([address], "email") is not None
    assert await platform.suppression.is_suppressed(["kept@example.com", "someone"], "email") is None


class Wire:
    """What NATS does between two nodes: a notice one node's store sends is applied by the other's."""

    def __init__(self) -> None:
        self.to: SqliteSuppressionStore | None = None
        self.pending: list[list[str]] = []

    def changed(self, kind: str, ids) -> None:
        assert kind == "suppression"
        self.pending.append(list(ids))

    async def deliver(self) -> None:
        assert self.to is not None
        while self.pending:
            await self.to.refresh(self.pending.pop(0))


async def test_a_node_hears_another_nodes_suppression_and_reads_it_again(client, clock):
    """Two nodes' stores over one database (PostgreSQL with --storage=postgres): a node that remembered "none" for
    an address suppresses it once the other node's notice drops what it remembered."""
    platform = client.app[PLATFORM]
    wires = Wire(), Wire()
    a, b = (SqliteSuppressionStore(platform.records_db, platform.pii, wire, capacity=2) for wire in wires)
    wires[0].to, wires[1].to = b, a
    assert await b.get("ana@example.com", "email") is None  # remembered: none
    await a.put([Suppression("ana@example.com", "email", "hard_bounce", clock.now())])
    assert await b.get("ana@example.com", "email") is None  # not told yet: what it remembered
    await wires[0].deliver()
    entry = await b.get("ana@example.com", "email")
    assert entry is not None and entry.reason == "hard_bounce"
    # Lifted and anonymised on the other node: heard too.
    assert await a.remove([("ana@example.com", "email")]) == 1
    await wires[0].deliver()
    assert await b.get("ana@example.com", "email") is None
    await b.put([Suppression("+351912345678", "sms", "manual", clock.now())])
    assert await a.get("+351912345678", "sms") is not None
    assert await b.anonymise(["+351912345678"]) == 1
    await wires[1].deliver()
    kept = await a.get("+351912345678", "sms")
    assert kept is not None and kept.identifier == platform.pii.lookup("+351912345678")  # under the hash alone


async def test_a_read_that_raced_a_change_is_not_remembered(client, clock):
    """A check that read the store before a change committed here answers what it read, but memory keeps the
    change: the next check sees the entry."""
    store = client.app[PLATFORM].suppression_store
    db = store._db
    fetchall = db.fetchall
    entry = Suppression("raced@example.com", "email", "manual", clock.now())

    async def slow_read(sql, params=()):
        rows = await fetchall(sql, params)
        if "FROM suppressions" in sql:
            db.fetchall = fetchall
            await store.put([entry])  # committed while the check's read was on its way back
        return rows

    db.fetchall = slow_read
    assert await store.get("raced@example.com", "email") is None
    assert await store.get("raced@example.com", "email") == entry


async def test_the_list_is_read_in_keyset_pages_and_expired_entries_are_purged(client, admin_headers, clock):
    platform = client.app[PLATFORM]
    entries = [{"identifier": f"p{n:02d}@example.com", "channel": ("email", "sms", "all")[n % 3]}
               for n in range(25)]
    entries += [{"identifier": "short@example.com", "channel": "email", "expires_at": clock.now() + 60}]
    resp = await client.post("/v1/suppressions", headers=admin_headers, json={"entries": entries})
    assert resp.status == 201, await resp.text()
    seen, after = [], None
    while True:
        params = {"limit": "7", **({"after": after} if after else {})}
        page = await (await client.get("/v1/suppressions", params=params, headers=admin_headers)).json()
        seen += page["items"]
        after = page["next_cursor"]
        if after is None:
            break
    assert len(seen) == 26 and len({s["id"] for s in seen}) == 26
    assert {s["identifier"] for s in seen} == {e["identifier"] for e in entries}
    assert all(s["id"] == f"{s['identifier']}|{s['channel']}" for s in seen)
    pii = platform.pii
    keys = [(pii.lookup(s["identifier"]), s["channel"]) for s in seen]
    assert keys == sorted(keys)  # the store's order: the identifier's keyed hash, then the channel
    # A cursor naming an entry lifted meanwhile goes on after where it was. (The order follows the keyed hash, so
    # which entry is where differs run to run: the one lifted is never one the checks below need.)
    k = next(k for k in range(9, 20) if seen[k]["identifier"] not in ("p00@example.com", "short@example.com"))
    cursor = encode_cursor({"id": seen[k]["id"]})
    await client.request("DELETE", "/v1/suppressions", headers=admin_headers,
                         json={"entries": [{"identifier": seen[k]["identifier"], "channel": seen[k]["channel"]}]})
    page = await (await client.get("/v1/suppressions", params={"limit": "3", "after": cursor},
                                   headers=admin_headers)).json()
    assert [s["id"] for s in page["items"]] == [s["id"] for s in seen[k + 1:k + 4]]
    # Filters.
    sms = await (await client.get("/v1/suppressions", params={"channel": "sms"}, headers=admin_headers)).json()
    assert sorted(s["id"] for s in sms["items"]) == sorted(s["id"] for s in seen if s["channel"] == "sms"
                                                           and s["id"] != seen[k]["id"])
    one = await (await client.get("/v1/suppressions", params={"identifier": seen[0]["identifier"].upper()},
                                  headers=admin_headers)).json()
    assert [s["id"] for s in one["items"]] == [seen[0]["id"]] and one["next_cursor"] is None
    bad = await client.get("/v1/suppressions", params={"after": encode_cursor({"id": "nothing"})},
                           headers=admin_headers)
    assert bad.status == 400
    # The cleanup reads the list a page at a time and lifts what expired.
    clock.advance(61)
    assert await platform.suppression.purge_expired() == 1
    assert await platform.suppression.is_suppressed(["short@example.com"], "email") is None
    assert await platform.suppression.is_suppressed(["p00@example.com"], "email") is not None
