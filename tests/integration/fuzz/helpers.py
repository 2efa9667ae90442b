"""What the protocol fuzz shares: the seeded world it runs against (tests/integration/fuzz/__init__.py has the
contract), how a request is sent and judged, values at their edges, and raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
from yarl import URL

from app.main import PLATFORM
from app.retail.payments import sign_webhook
from handlers.rest.common import spec_of
from tests.conftest import ADMIN, CUSTOMER, bearer
from tests.integration.bidding.helpers import _client, banner_request, post_bid
from tests.integration.retail.helpers import booked, departure_date, pay, search, seed_catalog

SEED = 20260514
MIB = 1_048_576
DEEP = "[" * 1000 + "]" * 1000
OPEN = "[" * 50_000  # brackets opened and never closed: no depth check counts them, a decoder recurses on them
# The fuzz must reach the code behind the limiter, and SendGrid's events the code that reads them.
FUZZ_CONFIG = {"ratelimit__ip_per_s": "1000000", "ratelimit__ip_burst": "10000000",
               "ratelimit__principal_per_s": "1000000", "ratelimit__principal_burst": "10000000",
               "sendgrid__allow_unsigned": "true"}
OPENRTB_ROUTES = {("POST", "/v1/bid"), ("POST", "/v1/dsp/bid")}


def _b64(obj: Any) -> str:
    """What the server's cursors are: unpadded URL-safe base64 of a JSON document."""
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# Values one field (or a whole body) is pushed to.
EDGE_VALUES: list[Any] = [None, True, -1, 0, 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 5e-324, 0.5, "NaN", "",
                          "x" * 100_000, "\u0000", "\U0001F4BA\u2708\u202e", "\\ud800", "2026-13-45",
                          "${AUCTION_PRICE}", [], {}, [None], {"a": [1, {"b": None}]}]


@dataclass
class World:
    """The app with real data in it, its callers, and what the sweeps found."""

    client: Any
    creds: dict[str, dict[str, str]]      # caller (named after its role, or anonymous) -> its headers
    ids: dict[str, str]                   # path (and some query) parameter -> an id that exists
    decoded: set[tuple[str, str]]         # (method, route) of the routes that decode a JSON body
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    problems: list[str] = field(default_factory=list)
    sent: int = 0


def _routes(app) -> list[tuple[str, str, Any]]:
    """(method, canonical route, spec) of every route declared with @endpoint (HEAD and static files aside)."""
    out = []
    for route in app.router.routes():
        spec = spec_of(route.handler)
        if route.method != "HEAD" and spec is not None:
            out.append((route.method, route.resource.canonical, spec))
    return out


def _allowed(spec: Any) -> str:
    """A caller the route lets in: the admin where it may, anonymous on a public route."""
    if spec is None or spec.roles is None:
        return "anonymous"
    return next(who for who in ("admin", "customer", "exchange", "partner") if who in spec.roles)


def _params(route: str) -> list[str]:
    """The route's path parameters."""
    return re.findall(r"\{(\w+)\}", route)


def _fill(route: str, values: dict[str, str]) -> str:
    """The route with its path parameters replaced (the values as they go in the URL)."""
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route)


def _plausible_path(world: World, route: str) -> str:
    return _fill(route, {p: quote(world.ids.get(p, "x"), safe="") for p in _params(route)})


def _encode(value: Any) -> bytes:
    """JSON of a Python value, where bytes are spliced in as they are (RAW)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return b"{" + b", ".join(json.dumps(str(k)).encode() + b": " + _encode(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b", ".join(_encode(v) for v in value) + b"]"
    return json.dumps(value).encode()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)})"


def _envelope_ok(content_type: str, body: bytes) -> bool:
    """Is this {"error": {"code", "message", "details"}}, as JSON?"""
    if content_type != "application/json":
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    error = doc.get("error") if isinstance(doc, dict) and set(doc) == {"error"} else None
    return (isinstance(error, dict) and set(error) == {"code", "message", "details"}
            and isinstance(error["code"], str) and bool(error["code"])
            and isinstance(error["message"], str) and bool(error["message"]))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([v for v in EDGE_VALUES if not isinstance(v, str) or len(v) < 1000])
    if kind == 1:
        return rng.randint(-10, 10**6)
    if kind == 2:
        return rng.choice(["id", "admin", "banner", "economy", "LIS", "web", "1", ""])
    if kind == 3:
        return rng.random() * 100
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["id", "name", "role", "email", "password", "status", "user_id", "amount_cents", "channel", "type",
            "source", "entries", "identifier", "origin", "departure_date", "card", "imp", "event", "path"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _bad_credentials(world: World) -> dict[str, dict[str, str]]:
    """Credentials that must be refused 401 on every route: each kind of bad token and key."""
    app = world.client.app
    secret = app[PLATFORM].config.auth.jwt_secret
    token = world.creds["admin"]["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    head, body, signature = token.split(".")

    def segment(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    tampered = segment(json.dumps({**claims, "sub": "usr_other"}).encode())
    tokens = {
        "forged JWT": jwt.encode(claims, "not-the-server-secret-" * 2, algorithm="HS256"),
        "expired JWT": jwt.encode({**claims, "exp": int(app[PLATFORM].clock.now()) - 3600}, secret, algorithm="HS256"),
        "JWT for no such account": jwt.encode({**claims, "sub": "usr_nobody"}, secret, algorithm="HS256"),
        "JWT with an unknown role": jwt.encode({**claims, "role": "root"}, secret, algorithm="HS256"),
        "JWT with alg none": f"{segment(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}.",
        "JWT with a tampered payload": f"{head}.{tampered}.{signature}",
        "JWT whose header is not UTF-8": ".".join((segment(b"\xff\xfe{}"), body, signature)),
        "malformed JWT": "not.a.jwt",
    }
    bad = {label: {"Authorization": f"Bearer {value}"} for label, value in tokens.items()}
    bad.update({
        "wrong scheme": {"Authorization": "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()},
        "empty bearer": {"Authorization": "Bearer "},
        "empty Authorization": {"Authorization": ""},
        "unknown API key": {"X-Api-Key": "ck_" + "A" * 43},
        "revoked API key": {"X-Api-Key": world.ids["revoked_key"]},
        "empty API key": {"X-Api-Key": ""},
    })
    return bad


async def _world(aiohttp_client, tmp_path, clock) -> World:
    """The app with a catalog, the demo campaigns, an order (paid, with barcodes and a cancellation quote), an
    offer, a bid and an activation, and a caller of each kind."""
    client = await _client(aiohttp_client, tmp_path, clock, **FUZZ_CONFIG)
    app = client.app
    platform = app[PLATFORM]
    flight = await seed_catalog(platform, clock)
    admin = await bearer(client, *ADMIN, "admin")
    customer = await bearer(client, *CUSTOMER, "customer")
    _, partner = await platform.api_keys.create("fuzz partner", "partner")
    spare, _ = await platform.api_keys.create("fuzz spare", "partner")  # the one {key_id} names: the sweeps revoke it
    revoked, revoked_key = await platform.api_keys.create("fuzz revoked", "partner")
    await platform.api_keys.revoke(revoked.id)
    me = await (await client.get("/v1/me", headers=customer)).json()
    offer = (await search(client, customer, clock))[0]
    order = await booked(client, customer, clock)
    resp = await pay(client, customer, order["id"])
    assert resp.status == 200, await resp.text()
    fulfilment = await (await client.get(f"/v1/orders/{order['id']}/fulfillment", headers=customer)).json()
    resp = await client.post(f"/v1/orders/{order['id']}/cancellations", headers=customer)
    assert resp.status == 201, await resp.text()
    quote_id = (await resp.json())["id"]
    resp = await post_bid(client, banner_request(request_id="world", user_id="world"))
    assert resp.status == 200, await resp.text()
    bid_id = (await resp.json())["seatbid"][0]["bid"][0]["id"]
    resp = await client.post("/v1/channels/activate", headers=admin,
                             json={"user_id": me["id"], "subject": "Fuzz", "text": "t", "channel": "in_app"})
    assert resp.status == 201, await resp.text()
    activation_id = (await resp.json())["activation_id"]
    products = await (await client.get("/v1/admin/products", headers=admin)).json()
    ids = {"user_id": me["id"], "order_id": order["id"], "offer_id": offer["id"], "quote_id": quote_id,
           "barcode": fulfilment["barcodes"][0]["code"], "bid": bid_id, "activation_id": activation_id,
           "campaign_id": "demo-lis-bcn", "flight_id": flight.id, "product_id": products["items"][0]["id"],
           "key_id": spare.id, "message_id": "msg-fuzz", "date": departure_date(clock),
           "revoked_key": revoked_key}
    creds = {"admin": admin, "customer": customer, "exchange": dict(client.headers),
             "partner": {"X-Api-Key": partner}, "anonymous": {}}
    decoded = {(method, route) for method, route, spec in _routes(app)
               if spec.body is not None or spec.raw_body is not None}
    return World(client, creds, ids, decoded)


async def _call(world: World, method: str, route: str, url: str, *, data: Any = None,
                headers: dict[str, str] | None = None, expect: int | None = None, label: str = "",
                sign: bool = True) -> int | None:
    """Send one request and record what breaks the contract; the status (None: not sent, a known defect)."""
    if route == "/v1/webhooks/payments" and isinstance(data, bytes) and sign:  # past the signature, to the body
        secret = world.client.app[PLATFORM].config.payments.webhook_secret
        headers = {**(headers or {}), "X-Contrail-Signature": sign_webhook(secret, data)}
    world.sent += 1
    resp = await world.client.request(method, URL(url, encoded=True), data=data, headers=headers)
    body = await resp.read()
    where = f"{method} {url[:100]} [{label}]"
    if resp.status >= 500:
        world.problems.append(f"{where}: {resp.status} {body[:300]!r}")
    elif expect is not None and resp.status != expect:
        world.problems.append(f"{where}: expected {expect}, got {resp.status} {body[:200]!r}")
    elif resp.status >= 400 and not (
            (method, route) in OPENRTB_ROUTES and resp.status == 400 and body == b"") and \
            not _envelope_ok(resp.content_type, body):
        world.problems.append(f"{where}: {resp.status} without the error envelope: {body[:200]!r}")
    return resp.status


def _report(world: World, what: str) -> None:
    problems = sorted(set(world.problems))
    assert not problems, f"{len(problems)} of {world.sent} {what} broke the contract:\n" + "\n".join(problems[:60])


async def _still_ready(world: World) -> None:
    resp = await world.client.get("/health/ready")
    assert resp.status == 200, await resp.text()


def _leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every node of a JSON document but the root (of a list, its first and last items)."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        if isinstance(doc, list) and 0 < key < len(doc) - 1:
            continue
        out.append(path + (key,))
        out.extend(_leaves(value, path + (key,)))
    return out


def _replace(doc: Any, path: tuple, value: Any, drop: bool = False) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if drop and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _mutated_bid(rng: random.Random) -> Any:
    body = banner_request(request_id=f"m{rng.randrange(10**6)}", user_id=f"u{rng.randrange(50)}")
    return _replace(body, rng.choice(_leaves(body)), rng.choice(EDGE_VALUES))


async def _raw_http(port: int, raw: bytes) -> tuple[int, bytes]:
    """One request as these bytes exactly: the status and body of the answer (0: closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        body = await asyncio.wait_for(reader.readexactly(int(length.group(1))), 5) if length else b""
        return int(head.split(b" ", 2)[1]), body
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return 0, b""
    finally:
        writer.close()
