"""Protocol fuzzing, REST: every route gets junk bodies, bad credentials, edge values in well-formed bodies, odd
paths, queries, methods and headers, and HTTP that is malformed on the wire."""

from __future__ import annotations

import base64
import random
import time
import zlib
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec
import msgspec.inspect as mi

from tests.integration.bidding.helpers import banner_request
from tests.integration.fuzz.helpers import (
    DEEP,
    EDGE_VALUES,
    MIB,
    OPEN,
    World,
    _allowed,
    _b64,
    _bad_credentials,
    _call,
    _encode,
    _envelope_ok,
    _fill,
    _leaves,
    _params,
    _plausible_path,
    _random_json,
    _raw_http,
    _replace,
    _report,
    _routes,
    _short,
    _still_ready,
    _world,
)
from tests.integration.retail.helpers import PAID_CARD

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
