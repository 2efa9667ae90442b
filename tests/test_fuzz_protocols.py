"""Protocol fuzzing of the real app, seeded: every REST route, every gRPC method and every websocket stream gets
malformed, oversized, deeply nested, wrongly encoded, out-of-range and unauthorised input.

What must hold, whatever comes in:
- REST: never a 5xx; every 4xx carries {"error": {"code", "message", "details"}} (POST /v1/bid may answer 400
  with no body, as OpenRTB does); a body over the limit is 413; bad credentials are 401 everywhere.
- gRPC: never UNKNOWN or INTERNAL; bad credentials are UNAUTHENTICATED, a message over the limit
  RESOURCE_EXHAUSTED.
- websockets: one bad message never closes a stream or stops it answering: it gets an answer, and a good
  message after it gets its own. Only what RFC 6455 says fails a connection closes one: a frame over the size
  limit (1009) and a text frame that is not UTF-8 (1007); the next connection works.
- the server is still ready (`/health/ready` 200) at the end of each sweep.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import random
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jwt
import msgspec
import msgspec.inspect as mi
import pytest
from aiohttp import WSMsgType
from google.protobuf.descriptor import FieldDescriptor
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from yarl import URL

from app.keys import CONFIG
from app.main import GRPC, PLATFORM
from app.retail.payments import sign_webhook
from handlers.rest.common import spec_of
from handlers.rpc import bidding_grpc, bidding_pb2, platform_pb2, ranking_pb2
from tests.conftest import ADMIN, CUSTOMER, bearer
from tests.retail_helpers import (
    PAID_CARD,
    booked,
    departure_date,
    pay,
    search,
    seed_catalog,
)
from tests.test_bidding import _client, banner_request, post_bid

SEED = 20260514
MIB = 1_048_576
DEEP = "[" * 1000 + "]" * 1000
OPEN = "[" * 50_000  # brackets opened and never closed: no depth check counts them, a decoder recurses on them
# The fuzz must reach the code behind the limiter, and SendGrid's events the code that reads them.
FUZZ_CONFIG = {"ratelimit__ip_per_s": "1000000", "ratelimit__ip_burst": "10000000",
               "ratelimit__principal_per_s": "1000000", "ratelimit__principal_burst": "10000000",
               "sendgrid__allow_unsigned": "true"}
OPENRTB_ROUTES = {("POST", "/v1/bid")}


def _b64(obj: Any) -> str:
    """What the server's cursors are: unpadded URL-safe base64 of a JSON document."""
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# Values one field (or a whole body) is pushed to.
EDGE_VALUES: list[Any] = [None, True, -1, 0, 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 5e-324, 0.5, "NaN", "",
                          "x" * 100_000, "\u0000", "\U0001F4BA\u2708\u202e", "\\ud800", "2026-13-45",
                          "${AUCTION_PRICE}", [], {}, [None], {"a": [1, {"b": None}]}]
# Bytes spliced into a JSON document as they are: what no encoder writes. The first is a string that is not UTF-8.
RAW: list[bytes] = [b'"\xff\xfe"', b"", b"{", b"[1,", b"NaN", b"-Infinity", b"1e999", b'"\\ud800"', b'"\x00\n"',
                    DEEP.encode(), ("[" * 2000).encode(), b"tru"]
# `after` cursors a client can write: not base64, base64 of no JSON, of JSON that is no position, of far positions.
BAD_CURSORS = ["!!!", _b64("junk")[:-1] + "!", base64.urlsafe_b64encode(b"\xff\xfe\x00junk").decode().rstrip("="),
               _b64({"id": 2**70}), _b64({"id": -(2**70)}), _b64({"before": 2**70}), _b64({"before": "x"}),
               _b64([1, 2]), _b64(None), _b64({"id": None, "before": []}), _b64({"id": 1e308, "before": -1e308}),
               _b64({"id": "x" * 1500}), "A" * 3000, "=", "%FF"]
# Path parameters (as they go in the URL): unknown, huge, encoded nonsense, ids that exist (the demo campaign).
PATH_EDGES = ["no-such-id-0", "x" * 5000, "%00", "%FF%FE", quote("\u2708\U0001F4BA"), "%2F..%2F", "-1", "0",
              str(2**64), "1e308", "NaN", "%20", "demo-lis-bcn", "CT101-test"]
# Query parameter values (as they go in the URL).
QUERY_EDGES = ["", "-1", "0", str(2**63), "1e308", "NaN", "inf", "2026-13-45", "0000-00-00", "true", "x" * 3000,
               "%00", "%FF", quote("\u2708"), "%5B%5D", "1,2,3"]


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


def _generic_bodies(rng: random.Random):
    """(label, raw body, extra headers, the status it must get or None) for any route, whatever it takes."""
    json_ct = {"Content-Type": "application/json"}
    for label, body in (("empty", b""), ("brace", b"{"), ("null", b"null"), ("array", b"[]"), ("object", b"{}"),
                        ("string", b'"x"'), ("NaN", b"NaN"), ("invalid utf-8", b"\xff\xfe"),
                        ("invalid utf-8 in a string", b'{"id": "\xff\xfe"}'), ("deep", DEEP.encode()),
                        ("open brackets", OPEN.encode())):
        yield label, body, json_ct, None
    for i in range(3):
        yield f"random json #{i}", _encode(_random_json(rng)), json_ct, None
    yield "form", b"a=1&b=%FF", {"Content-Type": "application/x-www-form-urlencoded"}, None
    yield "no content type", b'{"id": "x"}', {}, None
    yield "bad deflate", b"not deflate at all", {**json_ct, "Content-Encoding": "deflate"}, None
    yield "unknown encoding", b"{}", {**json_ct, "Content-Encoding": "br2"}, None
    yield "over the limit", b" " * (MIB + 1), json_ct, 413
    yield "deflate bomb", zlib.compress(b" " * (4 * MIB), 9), {**json_ct, "Content-Encoding": "deflate"}, 413


def _bad_credentials(world: World) -> dict[str, dict[str, str]]:
    """Credentials that must be refused 401 on every route: each kind of bad token and key."""
    app = world.client.app
    secret = app[CONFIG].auth.jwt_secret
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
        secret = world.client.app[CONFIG].payments.webhook_secret
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


# ---------------------------------------------------------------------------------------------------------
# Well-formed bodies from each route's declared type, to push one field at a time to an edge.

STRING_CANDIDATES = ["fz-1", "economy", "CT", "USD", "LIS", "03-14", "+351912345678", "fuzz@example.com", "123",
                     "2030-01-01", "4242424242424242", "x"]


def _python_type(t: mi.Type) -> Any:
    """From inspect's type back to one msgspec.convert takes, its constraints included."""
    if isinstance(t, mi.StrType):
        return Annotated[str, msgspec.Meta(min_length=t.min_length, max_length=t.max_length, pattern=t.pattern)]
    if isinstance(t, mi.IntType):
        return Annotated[int, msgspec.Meta(ge=t.ge, gt=t.gt, le=t.le, lt=t.lt)]
    if isinstance(t, mi.FloatType):
        return Annotated[float, msgspec.Meta(ge=t.ge, gt=t.gt, le=t.le, lt=t.lt)]
    if isinstance(t, mi.LiteralType):
        return Literal[t.values]
    return t.cls if isinstance(t, mi.StructType) else Any


def _conforms(t: mi.Type, value: Any) -> bool:
    try:
        msgspec.convert(value, _python_type(t))
    except (msgspec.ValidationError, TypeError, ValueError):
        return False
    return True


def _sample(t: mi.Type, name: str, hints: dict[str, Any], depth: int = 0) -> Any:
    """A value of type `t` that passes its constraints (a hint by field name where one fits)."""
    if name in hints and _conforms(t, hints[name]):
        return hints[name]
    if isinstance(t, mi.StructType):
        return {f.encode_name: _sample(f.type, f.name, hints, depth + 1) for f in t.fields if f.required or depth < 2}
    if isinstance(t, mi.UnionType):
        options = [o for o in t.types if not isinstance(o, mi.NoneType)]
        return _sample(options[0], name, hints, depth) if options else None
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.StrType):
        return next((c for c in STRING_CANDIDATES if _conforms(t, c)), "x" * (t.min_length or 1))
    if isinstance(t, (mi.IntType, mi.FloatType)):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        value = max(1, low) if low is not None else 1
        value = min(value, t.le) if t.le is not None else value
        return value if isinstance(t, mi.IntType) else float(value)
    if isinstance(t, mi.BoolType):
        return False
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return [_sample(t.item_type, name, hints, depth + 1) for _ in range(max(1, t.min_length or 0))]
    if isinstance(t, mi.DictType):
        return {_sample(t.key_type, "key", hints, depth + 1): _sample(t.value_type, name, hints, depth + 1)}
    return None if isinstance(t, mi.NoneType) else {}


def _hints(world: World) -> dict[str, Any]:
    ids, now = world.ids, time.time()
    return {"user_id": ids["user_id"], "origin": "LIS", "destination": "BCN", "departure_date": ids["date"],
            "order_id": ids["order_id"], "offer_id": ids["offer_id"], "number": PAID_CARD, "exp_year": 2099,
            "exp_month": 12, "cvc": "123", "email": "fuzz@example.com", "password": "correct horse battery",
            "transaction_id": "tx-fuzz", "source": "web", "type": "page_view", "stars": 25, "role": "partner",
            "status": "active", "channel": "web", "signal_type": "clicked", "kind": "Meal", "id": "fz-1",
            "format": "banner", "markup": "<b>ad</b>", "w": 300, "h": 250, "birthday": "03-14",
            "departure_at": now + 86_400 * 10, "arrival_at": now + 86_400 * 10 + 7200,
            "cabins": {"economy": {"capacity": 10, "base_fare_cents": 5000}}, "bonus_rate": 0.5,
            "starts_at": now, "ends_at": now + 3600, "identifier": "fuzz@example.com", "event": "open",
            "name": "fuzz", "advertiser_domain": "example.com", "subject": "s", "text": "t", "path": None,
            "creatives": [{"id": "cr-fz", "format": "banner", "markup": "<b>ad</b>", "w": 300, "h": 250}],
            "interests": [0.5] * 64, "loyalty": [0.5] * 8, "segments": [1, 63]}


def _templates(world: World, routes) -> dict[tuple[str, str], Any]:
    """A body each body-taking route accepts (or nearly), from its declared type."""
    hints = _hints(world)
    out: dict[tuple[str, str], Any] = {}
    for method, path, spec in routes:
        declared = spec.body or spec.raw_body if spec is not None else None
        if declared is not None:
            out[(method, path)] = _sample(mi.type_info(declared), "", hints)
    out[("POST", "/v1/bid")] = banner_request(request_id="tpl", user_id="fz")
    out[("POST", "/v1/webhooks/payments")] = {"id": "evt-fz", "payment_id": "pay-fz", "order_id": world.ids["order_id"],
                                              "status": "approved"}
    out[("POST", "/v1/webhooks/sendgrid")] = [{"event": "open", "email": "fuzz@example.com", "sg_event_id": "e1",
                                               "timestamp": int(time.time()), "contrail_message_id": "m"}]
    out[("POST", "/v1/channels/ingest")] = [{"source": "web", "type": "purchase", "user_id": world.ids["user_id"],
                                             "amount_cents": 1000, "transaction_id": "tx-ingest", "category": "c",
                                             "attributes": {"k": "v"}}]
    return out


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


# ---------------------------------------------------------------------------------------------------------
# REST sweeps.

async def test_every_rest_route_survives_junk_bodies_from_every_caller(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    for method, route, _spec in _routes(world.client.app):
        url = _plausible_path(world, route)
        for who, headers in world.creds.items():
            for label, body, extra, expect in _generic_bodies(world.rng):
                if expect == 413 and who not in ("admin", "anonymous"):
                    continue  # a MiB, or a bomb, to every route twice is enough
                await _call(world, method, route, url, data=body, headers={**headers, **extra}, expect=expect,
                            label=f"{who}, {label}")
    _report(world, "junk-body requests")
    await _still_ready(world)


async def test_every_rest_route_refuses_bad_credentials_with_401(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    bad = _bad_credentials(world)
    for method, route, _spec in _routes(world.client.app):
        url = _plausible_path(world, route)
        for who, headers in bad.items():
            await _call(world, method, route, url, data=b"{}", expect=401, label=who,
                        headers={**headers, "Content-Type": "application/json"})
    # Streams take credentials from the query string too: the same refusals.
    for stream in ("/v1/stream/bids", "/v1/stream/events", "/v1/stream/inapp"):
        for query in ("api_key=ck_nobody", "api_key=", "token=not.a.jwt", "token=", "token=%00", "token=%FF",
                      "token=" + "x" * 5000):
            await _call(world, "GET", stream, f"{stream}?{query}", expect=401, label=query[:20])
    _report(world, "bad-credential requests")
    await _still_ready(world)


async def test_every_rest_route_survives_edge_values_in_well_formed_bodies(aiohttp_client, tmp_path, clock):
    """Bodies that decode, each with one field pushed to an edge, dropped or made malformed, from a caller the
    route lets in, so that the fuzz reaches the services behind the decoder."""
    world = await _world(aiohttp_client, tmp_path, clock)
    routes = _routes(world.client.app)
    templates = _templates(world, routes)
    for method, route, spec in routes:
        template = templates.get((method, route))
        if template is None:
            continue
        url = _plausible_path(world, route)
        who = _allowed(spec)
        headers = {**world.creds[who], "Content-Type": "application/json"}
        await _call(world, method, route, url, data=_encode(template), headers=headers, label=f"{who}, template")
        for path in _leaves(template):
            where = ".".join(map(str, path))
            values = EDGE_VALUES + RAW if len(path) <= 2 else world.rng.sample(EDGE_VALUES + RAW, 8)
            for value in values:
                await _call(world, method, route, url, data=_encode(_replace(template, path, value)), headers=headers,
                            label=f"{who}, {where}={_short(value)}")
            await _call(world, method, route, url, data=_encode(_replace(template, path, None, drop=True)),
                        headers=headers, label=f"{who}, without {where}")
        for value in EDGE_VALUES + RAW:  # the whole body at an edge
            await _call(world, method, route, url, data=_encode(value), headers=headers,
                        label=f"{who}, body={_short(value)}")
    _report(world, "edge-value requests")
    await _still_ready(world)


async def test_every_rest_route_survives_odd_paths_queries_methods_and_headers(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    json_ct = {"Content-Type": "application/json"}
    for method, route, spec in _routes(world.client.app):
        params, who = _params(route), _allowed(spec)
        # Path parameters at their edges, for every caller.
        for name in params:
            for value in PATH_EDGES:
                url = _fill(route, {p: value if p == name else quote(world.ids.get(p, "x"), safe="") for p in params})
                for caller, headers in world.creds.items():
                    await _call(world, method, route, url, data=b"{}", headers={**headers, **json_ct},
                                label=f"{caller}, {name}={value[:20]}")
        url = _plausible_path(world, route)
        # Query parameters: each declared one at its edges (the others plausible), bad cursors, unknown ones.
        declared = (spec.query or spec.params) if spec is not None else None
        names = [f.encode_name for f in mi.type_info(declared).fields] if declared is not None else []
        base = {n: world.ids.get(n, "LIS" if n in ("origin", "destination") else "") for n in names}
        base = {n: v for n, v in base.items() if v}
        queries = [{**base, n: v} for n in names for v in QUERY_EDGES + (BAD_CURSORS if n == "after" else [])]
        queries += [{"after": c} for c in BAD_CURSORS[:4]] + [{"limit": "-1"}, {"limit": str(2**63)}, {"zzz": "1"},
                                                               {"%FF": "%FF"}, {"limit": "1", "after": ""}]
        for query in queries:
            qs = "&".join(f"{k}={v}" for k, v in query.items())
            await _call(world, method, route, f"{url}?{qs}", headers=world.creds[who], label=f"{who}, ?{qs[:40]}")
        for caller, headers in world.creds.items():
            await _call(world, method, route, f"{url}?after=!!!&limit=0&date=2026-13-45&since=-1&before=nan",
                        headers=headers, label=f"{caller}, junk query")
        # Every other method on the path: 405 (or 404) in the envelope.
        for other in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            if other != method:
                await _call(world, other, route, url, data=b"{}", headers={**world.creds[who], **json_ct},
                            label=f"{who}, {other} on a {method} route")
        # Headers at their edges.
        for extra in ({"Idempotency-Key": "k" * 5000}, {"Idempotency-Key": ""}, {"Idempotency-Key": " "},
                      {"Idempotency-Key": "same-key-everywhere"}, {"Idempotency-Key": "✈".encode().decode("latin-1")},
                      {"X-Request-Id": "x" * 2000}, {"Content-Type": "application/json; charset=latin-1"},
                      {"Content-Type": "multipart/form-data; boundary=x"}, {"Accept-Encoding": "gzip, br, zstd"},
                      {"x-openrtb-version": "9" * 1000}, {"Accept": "text/html"}):
            name, value = next(iter(extra.items()))
            await _call(world, method, route, url, data=b'{"id": "x"}',
                        headers={**world.creds[who], **json_ct, **extra},
                        label=f"{who}, {name}={value[:20]!r}", sign=False)
    _report(world, "odd path, query, method and header requests")
    await _still_ready(world)


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


async def test_malformed_http_on_the_wire_gets_a_4xx_in_the_envelope(aiohttp_client, tmp_path, clock):
    """What aiohttp itself cannot parse, and header bytes that are not UTF-8: never a 5xx, always the envelope."""
    world = await _world(aiohttp_client, tmp_path, clock)
    admin = world.creds["admin"]["Authorization"].encode()
    raws = [
        b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/offers/search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/offers/search HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(2**70).encode() + b"\r\n\r\n",
        b"POST /v1/offers/search HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /v1/offers/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"POST /v1/offers/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /v1/ping\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/admin/campaigns/\xff HTTP/1.1\r\nHost: x\r\nAuthorization: " + admin + b"\r\n\r\n",
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xc3(\r\n\r\n",
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \xff\r\nAuthorization: " + admin + b"\r\n\r\n",
        b"POST /v1/auth/guest HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \xff\xfe\r\nAuthorization: " + admin
        + b"\r\nContent-Length: 0\r\n\r\n",
        b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Request-Id: \xff\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
        b"GET /v1/ping HTTP/9.9\r\nHost: x\r\n\r\n",
        b"BREW /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
        b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\nContent-Length: 4\r\n\r\nnope",
    ]
    for raw in raws:
        status, body = await _raw_http(world.client.server.port, raw)
        world.sent += 1
        if status >= 500:
            world.problems.append(f"{raw[:70]!r}: {status} {body[:200]!r}")
        elif status >= 400 and not _envelope_ok("application/json", body):
            world.problems.append(f"{raw[:70]!r}: {status} without the envelope: {body[:200]!r}")
    _report(world, "raw requests")
    await _still_ready(world)


# ---------------------------------------------------------------------------------------------------------
# gRPC.

def _grpc_methods(app) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(path, handler, the roles its service takes: () for any caller) of every method of every service."""
    return [(path, handler, getattr(service, "ROLES", ())) for service in app[GRPC].services
            for path, handler in service.__mapping__().items()]


def _frame(payload: bytes) -> bytes:
    return struct.pack(">?I", False, len(payload)) + payload


async def _raw_call(channel: Channel, path: str, handler: Any, metadata: dict[str, str] | None,
                    frames: list[bytes] | None, timeout: float = 5.0) -> tuple[Status, Any]:
    """A call carrying these bytes exactly (None: no message at all); its status and replies (or message)."""
    stream = channel.request(path, handler.cardinality, handler.request_type, handler.reply_type,
                             metadata=metadata, timeout=timeout)
    replies = []
    try:
        async with stream:
            await stream.send_request()
            if not frames:  # grpclib's API will not end a unary call without a message
                await stream._stream.end()
            for i, frame in enumerate(frames or []):
                await stream._stream.send_data(frame, end_stream=i == len(frames) - 1)
            stream._end_done = True  # the frames went around grpclib's bookkeeping: the request has ended
            while (reply := await stream.recv_message()) is not None:
                replies.append(reply)
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status, exc.message
    except StreamTerminatedError as exc:
        return Status.CANCELLED, str(exc)
    return Status.OK, replies


_PB2 = {"campaign.bidding.v1": bidding_pb2, "contrail.platform.v1": platform_pb2, "ranking": ranking_pb2}
STRING_EDGES = ["", "x" * 100_000, "\u0000", "\U0001F4BA" * 200, "2026-13-45", "9999-12-31", "NaN", "-1",
                "${AUCTION_PRICE}", DEEP, OPEN, '{"id": "x", "imp": [{"id": "1", "banner": {}, "ext": ' + OPEN,
                '{"id": "x", "imp": []}', "null", "[1, 2, 3]", "LIS", "economy"]


def _mutated_bid(rng: random.Random) -> Any:
    body = banner_request(request_id=f"m{rng.randrange(10**6)}", user_id=f"u{rng.randrange(50)}")
    return _replace(body, rng.choice(_leaves(body)), rng.choice(EDGE_VALUES))


def _edge_scalar(f: Any, rng: random.Random) -> Any:
    t, T = f.type, FieldDescriptor
    if t == T.TYPE_STRING:
        if f.name == "openrtb_json":
            return rng.choice(STRING_EDGES + [json.dumps(_mutated_bid(rng))] * 4)
        return rng.choice(STRING_EDGES)
    if t == T.TYPE_BYTES:
        return rng.choice([b"", b"\xff" * 100])
    if t in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
        return rng.choice([-(2**31), -1, 0, 1, 51, 2**31 - 1])
    if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
        return rng.choice([-(2**63), -1, 0, 2**63 - 1])
    if t in (T.TYPE_UINT32, T.TYPE_FIXED32):
        return rng.choice([0, 2**32 - 1])
    if t in (T.TYPE_UINT64, T.TYPE_FIXED64):
        return rng.choice([0, 2**64 - 1])
    if t == T.TYPE_DOUBLE:
        return rng.choice([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 100.0, 1e7])
    if t == T.TYPE_FLOAT:
        return rng.choice([math.nan, math.inf, -math.inf, 3.4e38, -1.0])
    if t == T.TYPE_BOOL:
        return rng.random() < 0.5
    return rng.choice([0, 999, -1])  # an enum: proto3 keeps numbers it does not know


def _extreme(message_type: Any, rng: random.Random, depth: int = 0) -> Any:
    """A well-formed message with every field at a random edge (repeated ones 0 to 150 times)."""
    message = message_type()
    for f in message_type.DESCRIPTOR.fields:
        for _ in range(rng.choice([0, 1, 3, 150]) if f.is_repeated else 1):
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= 3 or f.message_type.GetOptions().map_entry:
                    break
                sub = _extreme(getattr(_PB2[f.message_type.file.package], f.message_type.name), rng, depth + 1)
                target = getattr(message, f.name)
                (target.add() if f.is_repeated else target).CopyFrom(sub)
            elif f.is_repeated:
                getattr(message, f.name).append(_edge_scalar(f, rng))
            else:
                setattr(message, f.name, _edge_scalar(f, rng))
    return message


def _big_message(message_type: Any, size: int) -> bytes | None:
    """A well-formed message of at least `size` bytes: its first string field that long."""
    for f in message_type.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated:
            return message_type(**{f.name: "x" * size}).SerializeToString()
    return None


MALFORMED_PROTOBUF = [
    b"\xff\xff\xff",                              # no such wire type
    b"\x0a\x05\xff\xfe\xfd\xfc\xfb",              # field 1, wire type 2: invalid UTF-8 (a string in most messages)
    b"\x0a\x02\xc3\x28",                          # field 1: a broken two-byte sequence
    b"\x0a\xff\xff\xff\x0f",                      # field 1: a length past the end
    b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a varint of 11 bytes
    b"\x0b\x0c",                                  # a group start and end (deprecated wire types)
    b"\x0b",                                      # a group that never ends
    b"\x00\x00",                                  # field number 0
    b"\x12\x03\x0a\x01\xff",                      # field 2, a message holding invalid UTF-8 in its field 1
    b"\x1a\x64" + b"\x1a\x62" + b"\x1a\x60" * 48,  # nested far deeper than the fields go
    b"\x0d\x00\x00\x00",                          # a fixed32 cut short
    b"\xfa\xff\xff\xff\x0f\x00",                  # the largest field number
]
GOOD_GRPC = {
    "/contrail.platform.v1.PlatformService/Echo": platform_pb2.EchoRequest(message="still here"),
    "/contrail.platform.v1.PlatformService/GetStatus": platform_pb2.StatusRequest(),
    "/campaign.bidding.v1.BiddingService/ProcessBid": bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id="after", user_id="after"))),
    "/campaign.bidding.v1.BiddingService/StreamBids": bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id="after-s", user_id="after-s")), request_id="after-s"),
    "/campaign.bidding.v1.BiddingService/HealthCheck": bidding_pb2.HealthCheckRequest(),
    "/ranking.RankingService/PredictConversion": ranking_pb2.PredictConversionRequest(
        search_context=ranking_pb2.SearchContext(passengers=1),
        offer_features=ranking_pb2.OfferFeatures(offer_id="o", total_price_nuc=100)),
    "/ranking.RankingService/RankOffers": ranking_pb2.RankOffersRequest(
        search_context=ranking_pb2.SearchContext(passengers=1),
        offers=[ranking_pb2.OfferFeatures(offer_id="o", total_price_nuc=100)]),
}


async def test_every_grpc_method_survives_bad_credentials_bytes_sizes_and_values(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    app, rng = world.client.app, world.rng
    channel = Channel("127.0.0.1", app[GRPC].port)
    admin = {"authorization": world.creds["admin"]["Authorization"]}
    others = {"customer": {"authorization": world.creds["customer"]["Authorization"]},
              "exchange": {"x-api-key": world.creds["exchange"]["X-Api-Key"]},
              "partner": {"x-api-key": world.creds["partner"]["X-Api-Key"]}}
    bad = [None, {"x-api-key": "ck_nobody"}, {"x-api-key": " "}, {"authorization": "Bearer not.a.jwt"},
           {"authorization": "Basic YWRtaW4="}, {"x-api-key": "k" * 4000}]
    bad += [{k.lower(): v for k, v in headers.items()} for headers in _bad_credentials(world).values()
            if all(headers.values())]  # grpclib sends no empty metadata values

    async def check(path: str, handler: Any, md: Any, frames: list[bytes] | None, label: str,
                    expect: set[Status] | None = None) -> None:
        world.sent += 1
        status, detail = await _raw_call(channel, path, handler, md, frames)
        if status in (Status.UNKNOWN, Status.INTERNAL) or (expect is not None and status not in expect):
            world.problems.append(f"{path} [{label}]: {status.name} {str(detail)[:200]}")

    try:
        for path, handler, roles in _grpc_methods(app):
            empty = [_frame(handler.request_type().SerializeToString())]
            good = [_frame(GOOD_GRPC[path].SerializeToString())]
            for md in bad:
                await check(path, handler, md, empty, f"credentials {str(md)[:40]}", {Status.UNAUTHENTICATED})
            for who, md in others.items():  # each caller's role is its name
                await check(path, handler, md, good, f"as {who}",
                            {Status.PERMISSION_DENIED} if roles and who not in roles else None)
            for payload in MALFORMED_PROTOBUF:
                await check(path, handler, admin, [_frame(payload)], f"bytes {payload[:12]!r}")
            await check(path, handler, admin, [struct.pack(">?I", False, MIB + 1) + b"\x0a"], "prefix over the limit",
                        {Status.RESOURCE_EXHAUSTED})
            await check(path, handler, admin, [struct.pack(">?I", False, 2**32 - 1)], "prefix of 4 GiB",
                        {Status.RESOURCE_EXHAUSTED})
            big = _big_message(handler.request_type, MIB + 1)
            if big is not None:
                await check(path, handler, admin, [_frame(big)], "a message over the limit",
                            {Status.RESOURCE_EXHAUSTED, Status.CANCELLED})
            await check(path, handler, admin, [b"\x01" + struct.pack(">I", 3) + b"abc"], "compressed flag")
            await check(path, handler, admin, [b"\x00\x00"], "a prefix cut short")
            await check(path, handler, admin, [struct.pack(">?I", False, 50) + b"x"], "a message cut short")
            await check(path, handler, admin, good + [b"\x00"], "a good message, then a cut prefix")
            await check(path, handler, admin, None, "no message",
                        {Status.OK} if handler.cardinality == Cardinality.STREAM_STREAM else None)
            for i in range(40):  # well-formed messages with out-of-range values
                count = 4 if handler.cardinality == Cardinality.STREAM_STREAM else 1
                payloads = [_extreme(handler.request_type, rng).SerializeToString() for _ in range(count)]
                if sum(map(len, payloads)) < MIB:
                    await check(path, handler, admin, [_frame(p) for p in payloads], f"edge values #{i}")
        # A bid stream answers every message, whatever its values, and bids on the good ones among them.
        path = "/campaign.bidding.v1.BiddingService/StreamBids"
        handler = next(h for p, h, _ in _grpc_methods(app) if p == path)
        messages = []
        for i in range(60):
            bid = banner_request(request_id=f"g{i}", user_id=f"gu{i}") if i % 2 else _mutated_bid(rng)
            messages.append(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(bid), request_id=f"s{i}"))
        status, replies = await _raw_call(channel, path, handler, admin, [_frame(m.SerializeToString())
                                                                           for m in messages])
        assert status == Status.OK and sorted(r.request_id for r in replies) == sorted(f"s{i}" for i in range(60))
        assert all(r.has_bid for r in replies if int(r.request_id[1:]) % 2), [r for r in replies if not r.has_bid]
        # Every method still answers a good call.
        for path, handler, _ in _grpc_methods(app):
            good = [_frame(GOOD_GRPC[path].SerializeToString())]
            status, replies = await _raw_call(channel, path, handler, admin, good)
            assert status == Status.OK and len(replies) == 1, (path, status, replies)
    finally:
        channel.close()
    _report(world, "gRPC calls")
    await _still_ready(world)


# ---------------------------------------------------------------------------------------------------------
# Websockets.

async def _answers(ws, want, others: int, timeout: float = 5.0) -> None:
    """Read until `want` accepts one message and `others` other messages came (answers to what was sent before,
    or live events); an AssertionError when the stream closes or falls silent first."""
    deadline, seen, matched = time.monotonic() + timeout, 0, False
    while not matched or seen < others:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no answer in time (the good one {'came' if matched else 'did not'}, "
                                 f"{seen} of {others} others)")
        msg = await ws.receive(timeout=left)
        if msg.type != WSMsgType.TEXT:
            raise AssertionError(f"the stream closed or failed: {msg.type.name} {msg.data!r} {msg.extra!r}")
        data = json.loads(msg.data)
        if not matched and any(want(item) for item in (data if isinstance(data, list) else [data])):
            matched = True
        else:
            seen += 1


def _ws_junk(rng: random.Random) -> list[tuple[str, Any]]:
    """(label, a text str or binary bytes) messages no stream takes as they are."""
    return [
        ("empty text", ""), ("not json", "not json"), ("brace", "{"), ("null", "null"), ("number", "1e308"),
        ("NaN", "NaN"), ("string", '"ping"'), ("empty array", "[]"), ("empty object", "{}"),
        ("deep", DEEP), ("deep object", '{"type": ' * 500 + '"ping"' + "}" * 500),
        ("deep escaped", '{"a": "\\"", "b": ' + DEEP + "}"), ("open brackets", OPEN),
        ("open brackets in a field", '{"type": "ping", "id": "x", "imp": [{"id": "1", "banner": {}, "ext": ' + OPEN),
        ("open brackets in an array", "[" + json.dumps(banner_request(request_id="arr")) + ", " + OPEN),
        ("junk array", json.dumps([_random_json(rng) for _ in range(50)])),
        ("long junk array", json.dumps([rng.choice([1, None, "x", {}, []]) for _ in range(2000)])),
        ("junk object", json.dumps({str(i): _random_json(rng) for i in range(20)})),
        ("wrong type", '{"type": "subscribe", "events": "all"}'), ("unknown type", '{"type": "rm -rf"}'),
        ("huge events", json.dumps({"type": "subscribe", "events": ["x" * 100] * 5000})),
        ("near the limit", json.dumps({"type": "x" * (MIB - 100)})),
        ("lone surrogate escape", '{"type": "\\ud800"}'), ("NaN value", '{"type": "ping", "x": NaN}'),
        ("binary", b"\x00\x01\xff"), ("binary json", b'{"type": "ping"}'), ("empty binary", b""),
    ]


async def _ws_fuzz(world: World, url: str, good, is_answer, label: str) -> None:
    """Every junk message gets an answer and a good one after it gets its own; a burst of junk, then a good one;
    then what RFC 6455 fails a connection for closes this one (1007, 1009), and the next connection works."""
    client, rng = world.client, world.rng
    async with client.ws_connect(url, max_msg_size=0) as ws:
        for i, (name, junk) in enumerate(_ws_junk(rng)):
            world.sent += 1
            await (ws.send_bytes(junk) if isinstance(junk, bytes) else ws.send_str(junk))
            await ws.send_str(good(i))
            try:
                await _answers(ws, lambda m, i=i: is_answer(m, i), others=1)
            except (AssertionError, TimeoutError) as exc:
                world.problems.append(f"{label} after {name}: {exc!r}")
                return
        for _ in range(300):
            await ws.send_str(rng.choice(["{", "[]", "null", '{"type": 1}', OPEN[:100]]))
        await ws.send_str(good(9999))
        try:
            await _answers(ws, lambda m: is_answer(m, 9999), others=300, timeout=15)
        except (AssertionError, TimeoutError) as exc:
            world.problems.append(f"{label} after a burst of junk: {exc!r}")
        await ws.ping(b"x" * 100)  # a control frame: aiohttp answers it, the stream goes on
        await ws.send_str(good(10_000))
        await _answers(ws, lambda m: is_answer(m, 10_000), others=0)
    for name, send, code in (("a text frame that is not UTF-8", lambda ws: ws.send_frame(b'{"\xff"}', WSMsgType.TEXT),
                              1007),
                             ("a frame over the size limit", lambda ws: ws.send_str("x" * (MIB + 1)), 1009)):
        async with client.ws_connect(url) as ws:
            world.sent += 1
            await send(ws)
            msg = await ws.receive(timeout=5)
            if msg.type != WSMsgType.CLOSE or ws.close_code != code:
                world.problems.append(f"{label}: {name} gave {msg.type.name} {str(msg.data)[:100]}, not a close {code}")
    async with client.ws_connect(url) as ws:
        await ws.send_str(good(20_000))
        await _answers(ws, lambda m: is_answer(m, 20_000), others=0)


async def test_every_websocket_stream_answers_a_good_message_after_any_bad_one(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    key = world.creds["exchange"]["X-Api-Key"]
    admin = world.creds["admin"]["Authorization"].split()[1]
    customer = world.creds["customer"]["Authorization"].split()[1]

    def ping(i: int) -> str:
        return '{"type": "ping"}'

    def pong(m: Any, i: int) -> bool:
        return m == {"type": "pong"}

    await _ws_fuzz(world, f"/v1/stream/bids?api_key={key}",
                   lambda i: json.dumps(banner_request(request_id=f"good-{i}", user_id=f"g{i}")),
                   lambda m, i: m.get("request_id") == f"good-{i}" and m.get("type") == "bid_response", "bids")
    await _ws_fuzz(world, f"/v1/stream/events?token={admin}", ping, pong, "events")
    await _ws_fuzz(world, f"/v1/stream/events?token={admin}&types=" + ",".join(["x" * 50] * 100), ping, pong,
                   "events with many types")
    await _ws_fuzz(world, f"/v1/stream/inapp?token={customer}", ping, pong, "inapp")
    # Bid requests at their edges, alone and in arrays: each answered, and the stream goes on.
    async with world.client.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        for i in range(150):
            edge = _mutated_bid(world.rng)
            await ws.send_str(_encode(edge if i % 3 else [edge, _mutated_bid(world.rng)]).decode())
            await ws.send_str(json.dumps(banner_request(request_id=f"ok-{i}", user_id=f"ok{i}")))
            try:
                await _answers(ws, lambda m, i=i: m.get("request_id") == f"ok-{i}", others=1)
            except (AssertionError, TimeoutError) as exc:
                world.problems.append(f"bids after {json.dumps(edge)[:200]}: {exc!r}")
                break
    # Callers a stream does not take are refused at the handshake, in the envelope.
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for url, expect in ((f"/v1/stream/events?api_key={key}", 403), (f"/v1/stream/inapp?token={admin}", 403),
                        (f"/v1/stream/bids?token={customer}", 403), ("/v1/stream/bids", 401),
                        ("/v1/stream/events?token=x.y.z", 401), ("/v1/stream/inapp?token=", 401)):
        await _call(world, "GET", url.split("?")[0], url, headers=handshake, expect=expect, label="handshake")
    _report(world, "websocket checks")
    await _still_ready(world)


# ---------------------------------------------------------------------------------------------------------
# Regressions: what the sweeps found, fixed in app/ and state/, one focused test each.

async def test_a_bid_request_with_invalid_utf8_or_open_brackets_is_invalid_on_every_protocol(
        aiohttp_client, tmp_path, clock):
    """Was a 500 on REST, INTERNAL on gRPC (the whole stream), and an unanswered message on the websocket:
    msgspec raises UnicodeDecodeError and RecursionError, which decode_request did not turn into invalid."""
    client = await _client(aiohttp_client, tmp_path, clock)
    open_ext = '{"id": "o", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "ext": ' + OPEN
    for raw in (b'{"id": "\xff\xfe", "imp": []}', open_ext.encode()):
        resp = await post_bid(client, raw)
        assert resp.status == 400 and await resp.read() == b""
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    md = {"x-api-key": client.headers["X-Api-Key"]}
    try:
        stub = bidding_grpc.BiddingServiceStub(channel)
        with pytest.raises(GRPCError) as err:
            await stub.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=open_ext), metadata=md, timeout=5)
        assert err.value.status == Status.INVALID_ARGUMENT
        async with stub.StreamBids.open(metadata=md, timeout=5) as stream:
            await stream.send_message(bidding_pb2.BidRequestProto(openrtb_json=open_ext, request_id="open"))
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id="ok")), request_id="ok"))
            await stream.end()
            replies = {r.request_id: r async for r in stream}
        assert replies["open"].error == "invalid_request: not_json" and replies["ok"].has_bid
    finally:
        channel.close()
    async with client.ws_connect(f"/v1/stream/bids?api_key={md['x-api-key']}") as ws:
        await ws.send_str(open_ext)
        assert (await ws.receive_json(timeout=5))["type"] == "error"
        await ws.send_str(json.dumps(banner_request(request_id="after")))
        assert (await ws.receive_json(timeout=5))["request_id"] == "after"


@pytest.mark.parametrize("raw", [b'{"source": "web", "type": "page_view", "user_id": "\xff\xfe"}',
                                 b'[{"source": "web", "type": "page_view", "user_id": "u", "attributes": '
                                 + OPEN.encode(),
                                 b'[{"source": "web", "type": "x", "bad": 1}, ' + OPEN.encode()],
                         ids=["invalid utf-8 in a string", "open brackets in attributes",
                              "open brackets after a bad event"])
async def test_ingest_answers_invalid_utf8_and_open_brackets_400(aiohttp_client, tmp_path, clock, raw):
    """Were 500s: UnicodeDecodeError and RecursionError from msgspec escaped IngestService.ingest."""
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = await bearer(client, *ADMIN, "admin")
    resp = await client.post("/v1/channels/ingest", data=raw, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["message"].startswith("malformed JSON")


async def test_sendgrid_events_json_loads_took_are_refused_and_no_timestamp_poisons_the_report(
        aiohttp_client, tmp_path, clock):
    """json.loads took brackets left open (RecursionError: 500), lone surrogates (stored, then a 500 on encoding)
    and NaN (dropped as a duplicate); a timestamp past a float was a 500, and 1e400 (infinity) was stored as null,
    after which every analytics report was a 500."""
    client = await _client(aiohttp_client, tmp_path, clock, sendgrid__allow_unsigned="true")
    admin = await bearer(client, *ADMIN, "admin")
    for raw in (b'[{"event": "open", "x": ' + OPEN.encode(), b'[{"event": "bounce", "email": "\\ud800"}]',
                b'[{"event": "open", "email": "\xff"}]', b'[{"event": "open", "sg_event_id": "n", "timestamp": NaN}]',
                b'[{"event": "open", "sg_event_id": "i", "timestamp": 1e400}]'):
        resp = await client.post("/v1/webhooks/sendgrid", data=raw)
        assert resp.status == 400 and (await resp.json())["error"]["message"].startswith("malformed JSON"), raw
    for i, timestamp in enumerate((b"1" + b"0" * 400, b"1.7e308", b"true", b"-1e308")):
        raw = b'[{"event": "open", "email": "a@example.com", "sg_event_id": "e%d", "timestamp": %s}]' % (i, timestamp)
        resp = await client.post("/v1/webhooks/sendgrid", data=raw)
        assert resp.status == 200 and (await resp.json())["recorded"] == 1, await resp.text()
    resp = await client.get("/v1/channels/email/analytics", headers=admin)
    assert resp.status == 200 and (await resp.json())["opens"] == 4, await resp.text()


async def test_a_signed_sendgrid_webhook_timestamp_is_checked_as_the_bytes_that_came(aiohttp_client, tmp_path,
                                                                                     clock):
    """A timestamp header that is not UTF-8 was a 500 (encoding the str aiohttp made of it); it is checked as the
    bytes sent: a bad signature is 403, a good one over those bytes verifies."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    client = await _client(aiohttp_client, tmp_path, clock, sendgrid__verification_key=public)
    body, timestamp = b'[{"event": "open", "email": "a@example.com", "sg_event_id": "s1"}]', b"\xff\xfe1700000000"
    good = base64.b64encode(private.sign(timestamp + body, ec.ECDSA(hashes.SHA256()))).decode().encode()
    for signature, expect in ((base64.b64encode(b"nonsense"), 403), (good, 200)):
        status, answer = await _raw_http(client.server.port, (
            b"POST /v1/webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Twilio-Email-Event-Webhook-Signature: " + signature + b"\r\n"
            b"X-Twilio-Email-Event-Webhook-Timestamp: " + timestamp + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body))
        assert status == expect, answer


async def test_credentials_that_are_not_utf8_are_401(aiohttp_client, tmp_path, clock):
    """Were 500s: aiohttp gives such header bytes as lone surrogates, which hashing the key or decoding the JWT
    could not encode."""
    client = await _client(aiohttp_client, tmp_path, clock)
    for header in (b"X-Api-Key: \xc3(", b"X-Api-Key: ck_\xff", b"Authorization: Bearer \xff\xfe",
                   b"Authorization: Bearer eyJ\xe2\x9c\x88.x.y"):
        raw = b"GET /v1/me HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
        status, body = await _raw_http(client.server.port, raw)
        assert status == 401 and _envelope_ok("application/json", body), (header, status, body)


async def test_notices_for_negative_bid_ids_are_404_and_loss_reasons_past_int32_are_400(aiohttp_client, tmp_path,
                                                                                        clock):
    """A bid id whose sequence number parses negative indexed the ledger from its end (IndexError, a 500); a loss
    reason past 64 bits reached SQLite (OverflowError, a 500)."""
    client = await _client(aiohttp_client, tmp_path, clock)
    bid = await (await post_bid(client, banner_request())).json()
    bid_id = bid["seatbid"][0]["bid"][0]["id"]
    for kind in ("win", "billing", "loss"):
        for bad_id in ("-1", "-1e308", "-0000000001f" + bid_id[12:]):
            resp = await client.get(f"/v1/notices/{kind}", params={"bid": bad_id, "price": "1"})
            assert resp.status == 404 and _envelope_ok(resp.content_type, await resp.read()), (kind, bad_id)
    for reason in (str(2**63), str(2**31), "-1"):
        resp = await client.get("/v1/notices/loss", params={"bid": bid_id, "reason": reason})
        assert resp.status == 400 and "loss reason" in (await resp.json())["error"]["message"]
    resp = await client.get("/v1/notices/loss", params={"bid": bid_id, "reason": "102"})
    assert resp.status == 200 and (await resp.json())["recorded"]


async def test_cursors_holding_integers_past_64_bits_page_instead_of_failing(aiohttp_client, tmp_path, clock):
    """A cursor is base64 JSON a client can write; its integer reached SQLite (OverflowError, a 500)."""
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = await bearer(client, *ADMIN, "admin")
    await client.post("/v1/admin/api-keys", json={"name": "n", "role": "partner"}, headers=admin)  # an audit entry
    await client.post("/v1/channels/ingest", json={"source": "web", "type": "page_view", "user_id": "u"},
                      headers=admin)  # an event
    await client.app[PLATFORM].event_log.flush()
    for after, items in ((_b64({"before": 2**70}), True), (_b64({"before": -(2**70)}), False)):
        resp = await client.get("/v1/admin/audit", params={"after": after}, headers=admin)
        assert resp.status == 200 and bool((await resp.json())["items"]) == items, await resp.text()
    for after, items in ((_b64({"id": 2**70}), False), (_b64({"id": -(2**70)}), True)):
        resp = await client.get("/v1/analytics/events", params={"after": after}, headers=admin)
        assert resp.status == 200 and bool((await resp.json())["items"]) == items, await resp.text()


# ---------------------------------------------------------------------------------------------------------
# Inputs that once reached a 500 or INTERNAL through the handlers.

async def test_invalid_utf8_inside_a_json_string_is_400_on_every_route_that_decodes_a_body(aiohttp_client, tmp_path,
                                                                                           clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    routes = [(m, r, spec) for m, r, spec in _routes(world.client.app) if (m, r) in world.decoded]
    templates, world.decoded = _templates(world, routes), set()  # send what the sweeps leave out
    for method, route, spec in routes:
        template, who = templates[(method, route)], _allowed(spec)
        strings = [path for path in _leaves(template) if isinstance(_at(template, path), str)]
        bodies = [b'{"\xff\xfe": 1}']  # a key that is not UTF-8, and a string value that is not
        if strings:
            bodies.append(_encode(_replace(template, strings[0], RAW[0])))
        for raw in bodies:
            await _call(world, method, route, _plausible_path(world, route), data=raw, expect=400,
                        headers={**world.creds[who], "Content-Type": "application/json"}, label=f"{who}, {raw[:30]!r}")
    _report(world, "invalid UTF-8 requests")


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


async def test_a_grpc_stream_that_ends_inside_a_message_is_invalid_argument(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = {"authorization": (await bearer(client, *ADMIN, "admin"))["Authorization"]}
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        for path, handler, _ in _grpc_methods(client.app):
            for frames in ([b"\x00\x00"], [struct.pack(">?I", False, 50) + b"x"]):
                status, detail = await _raw_call(channel, path, handler, admin, frames)
                assert status == Status.INVALID_ARGUMENT, (path, frames, status, detail)
    finally:
        channel.close()
