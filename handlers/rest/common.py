"""Shared REST plumbing: endpoint declarations, JSON in and out, auth, pagination cursors.

Every route handler is declared with @endpoint: the same declaration enforces the roles,
decodes the body and query into msgspec Structs, and feeds /openapi.json, so the
documentation cannot drift from what the server does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from app.auth import require_role
from app.errors import InvalidInput
from app.jsondepth import check_depth, refuse_left_open
from state.accounts import EMAIL_PATTERN
from state.reco import ITEM_ID_PATTERN, ITEM_ID_RULE
from state.text import whole

T = TypeVar("T")
PRINCIPAL = "contrail.principal"
CREDENTIALS = "contrail.credentials"  # a stream's (api_key, authorization), which its socket checks again later
STATIC_ROUTE = "/{path}"  # the web console's files: a GET catch-all registered after every API route
_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class EndpointSpec:
    summary: str
    tags: tuple[str, ...]
    roles: tuple[str, ...] | None
    body: type | None
    query: type | None
    response: Any
    status: int
    errors: tuple[int, ...]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    also: tuple[int, ...] = ()                 # other success statuses, answered with `response` too
    empty: tuple[int, ...] = ()                # statuses answered with no body at all
    raw_body: Any = None                       # the body a handler reads itself: documented, not decoded
    params: type | None = None                 # query parameters a handler reads itself: checked, not passed
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)  # success response headers: name -> schema
    websocket: bool = False                    # a websocket endpoint: 101 on a handshake, 426 to anything else


# The websocket versions aiohttp speaks; RFC 6455 (version 13) is the one advertised.
WEBSOCKET_VERSIONS = ("13", "8", "7")


def _upgrade_required(request: web.Request) -> web.Response | None:
    """The answer to a request to a websocket endpoint that is no websocket handshake, or None.

    A request that does not ask to upgrade at all is refused 426 Upgrade Required, naming the protocol
    (RFC 9110 15.5.22: a 426 MUST send Upgrade); one that asks for a websocket version this server does
    not speak is 426 with the version it does (RFC 6455 4.4). A handshake that asks for a
    websocket but is malformed otherwise (no key, no Connection: Upgrade) is 400 (RFC 6455 4.2.1), from
    aiohttp.
    """
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    if request.headers.get("Upgrade", "").strip().lower() != "websocket":
        message = "this is a websocket endpoint: open it with a websocket handshake (Upgrade: websocket)"
    elif request.headers.get("Sec-WebSocket-Version", "").strip() not in WEBSOCKET_VERSIONS:
        message = f"websocket version {WEBSOCKET_VERSIONS[0]} is required (Sec-WebSocket-Version)"
        headers["Sec-WebSocket-Version"] = WEBSOCKET_VERSIONS[0]
    else:
        return None
    body = {"error": {"code": "upgrade_required", "message": message, "details": None}}
    return web.Response(body=_encoder.encode(body), status=426, content_type="application/json", headers=headers)


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    return value


def _decode_body(raw: bytes, type_: type) -> Any:
    """`decode`, where an integer may also be written as a whole float.

    JSON has one kind of number, and JSON Schema (2020-12, as /openapi.json uses) counts 2.0 as the
    integer 2; msgspec's strict decoding refuses a float wherever an int is declared. A body it refuses
    so is decoded again with its whole floats as ints (only then: the usual body pays nothing)."""
    try:
        return decode(raw, type_)
    except InvalidInput as exc:
        if "got `float`" not in exc.message:
            raise
    try:
        return msgspec.convert(_whole_floats_as_ints(msgspec.json.decode(raw)), type_)
    except msgspec.ValidationError as exc:
        message, path = _validation_message(exc)
        raise InvalidInput(f"invalid request body: {message}" + (f" at {path}" if path else ""),
                           {"field": path} if path else None) from None


def endpoint(summary: str, *, tags: tuple[str, ...] = (), roles: tuple[str, ...] | None = None,
             body: type | None = None, query: type | None = None, response: Any = None,
             status: int = 200, errors: tuple[int, ...] = (), description: str = "",
             also: tuple[int, ...] = (), empty: tuple[int, ...] = (), raw_body: Any = None,
             params: type | None = None, headers: dict[str, dict[str, Any]] | None = None,
             websocket: bool = False, any_body: bool = False, **extra: Any) -> Callable[[Handler], Handler]:
    """Declare a route handler: who may call it, what it takes and what it returns.

    The wrapped handler is called as handler(request, principal, [body], [query]), or as a method of a
    handler class, which holds its services, with `self` first. What the handler
    reads itself is declared too: `raw_body`, a body it decodes itself (documented only), and `params`,
    query parameters it reads itself (checked against the declaration before it runs, 400 when they do
    not fit; parameters it does not name are let through, as links carry what others add to them).
    `also` names other success statuses answered with `response`, `empty` the statuses answered with
    no body, `headers` the success responses' headers. A `websocket` endpoint answers anything but a
    websocket handshake 426 before its handler runs. An endpoint that declares no body takes none: a body other
    than `{}` or `null` is 400, as an unknown field would be, unless `any_body` says nobody reads it (RFC 8058's
    one-click form). Likewise an endpoint that declares no `query` and no `params` takes no query parameters: any is
    400 naming it, as an unknown one is where some are declared (a websocket endpoint takes its credentials there,
    `token` or `api_key`; the probes, the metrics scrape and the OpenAPI document take any query and read none).
    """

    def wrap(fn: Handler) -> Handler:
        auto_errors = set(errors) | {400}
        takes_no_body = raw_body is None and not any_body and not websocket
        takes_no_query = query is None and params is None
        query_taken = STREAM_CREDENTIALS if websocket else frozenset()
        if roles is not None:
            auto_errors |= {401, 403, 429}

        @functools.wraps(fn)
        async def handler(*bound: Any) -> web.StreamResponse:
            # (request) for a function, (self, request) for a method of a handler class
            request: web.Request = bound[-1]
            principal = request.get(PRINCIPAL)
            if roles is not None:
                require_role(principal, *roles)
            if websocket:
                refusal = _upgrade_required(request)
                if refusal is not None:
                    return refusal
            args: list[Any] = [*bound, principal]
            if body is not None:
                args.append(_decode_body(await request.read(), body))
            elif takes_no_body and request.body_exists and request.method in _WITH_BODY:
                _refuse_a_body(await request.read())
            if query is not None:
                args.append(decode_query(request, query))
            elif params is not None:
                decode_query(request, params, only_declared=False)
            elif takes_no_query and request.query_string:
                _refuse_a_query(request, query_taken)
            return await fn(*args)

        handler.__contrail_spec__ = EndpointSpec(  # type: ignore[attr-defined]
            summary, tags, roles, body, query, response, status, tuple(sorted(auto_errors)), description, extra,
            also=tuple(also), empty=tuple(empty), raw_body=raw_body, params=params, headers=dict(headers or {}),
            websocket=websocket)
        return handler

    return wrap


def spec_of(handler: Any) -> EndpointSpec | None:
    return getattr(handler, "__contrail_spec__", None)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json",
                        headers=headers)


def encode_json(data: Any) -> bytes:
    return _encoder.encode(data)


# A page's `after`: the `next_cursor` of the page before, unpadded URL-safe base64 (empty: the first page).
CURSOR_PATTERN = whole(r"[A-Za-z0-9_-]*")
# The patterns strings are held to, said in words: a client is told what form a value takes, not a regular expression
# (one that is not here is "in the form /openapi.json gives", where its schema has the pattern).
_PATTERN_WORDS = {
    ITEM_ID_PATTERN: ITEM_ID_RULE,
    whole(r"[A-Za-z0-9_\-]{1,64}"): "of 1 to 64 letters, digits, '_' or '-'",
    EMAIL_PATTERN: "that is an email address (name@domain)",
    CURSOR_PATTERN: "that is the next_cursor of a previous page",
    whole(r"[A-Z]{3}"): "of 3 capital letters",
    whole(r"[A-Z0-9]{2}"): "of 2 capital letters or digits",
    whole(r"\d{3,4}"): "of 3 or 4 digits",
    whole(r"\d{4}-\d{2}-\d{2}"): "that is a date, YYYY-MM-DD",
    whole(r"\+[1-9]\d{6,14}"): "that is a phone number in E.164 form ('+' and 7 to 15 digits)",
    whole(r"[a-z][a-z0-9_]{0,31}"): "of 1 to 32 lowercase letters, digits or '_', starting with a letter",
    whole(r"[0-9a-f]*"): "of hexadecimal digits (0-9, a-f)",
    whole(r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-9])|(?:0[13-9]|1[0-2])-30|(?:0[13578]|1[02])-31)"):
        "that is a month and day, MM-DD",
}
_PATTERN_SAID = {repr(pattern): words for pattern, words in _PATTERN_WORDS.items()}  # as msgspec quotes them
_MATCHING_REGEX = re.compile(r"Expected `str` matching regex ('.*')", re.DOTALL)


def _validation_message(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    text = str(exc)
    path = None
    if " - at `$" in text:
        text, _, where = text.partition(" - at `$")
        path = where.rstrip("`").lstrip(".") or None
    regex = _MATCHING_REGEX.fullmatch(text)
    if regex is not None:
        text = f"Expected `str` {_PATTERN_SAID.get(regex[1], 'in the form /openapi.json gives')}"
    return text, path


def decode(raw: bytes, type_: type) -> Any:
    """Decode a JSON body into `type_`, or raise InvalidInput saying what is wrong and where."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    if not raw.strip():
        raise InvalidInput("request body is empty; expected a JSON object")
    check_depth(raw)
    try:
        refuse_left_open(raw)
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError as exc:
            # The typed decoder stops at the first field it refuses, before it reaches JSON that breaks off
            # further on: a body that is not JSON at all is said to be malformed (below), not blamed on a field.
            msgspec.json.decode(raw)
            message, path = _validation_message(exc)
            raise InvalidInput(f"invalid request body: {message}" + (f" at {path}" if path else ""),
                               {"field": path} if path else None) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {_surrogate_problem(raw, str(exc)) or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed JSON: invalid UTF-8 ({_invalid_utf8(raw, exc)})") from None
    except RecursionError:  # brackets opened and never closed (balanced deep ones are refused above)
        raise InvalidInput("malformed JSON: brackets left open") from None


def _invalid_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    """What is wrong with a body msgspec found invalid UTF-8 in, and where: msgspec's error holds only the JSON
    string the bytes are in and counts from its start, so the offset in the body is found again from the body."""
    try:
        raw.decode()
    except UnicodeDecodeError as in_body:
        return f"{in_body.reason} at byte {in_body.start}"
    return exc.reason


# A JSON escape: \uXXXX (group 1 the code unit) or a one-character one (which is how `\\` is told from `\u`).
_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)


def _surrogate_problem(raw: bytes, error: str) -> str | None:
    """The body's first lone UTF-16 surrogate escape (`\\ud800` with no `\\udc00`-`\\udfff` right after it, or one of
    those with none before), said plainly; None when there is none. msgspec refuses one as "invalid utf-16 surrogate
    pair", or after a high surrogate as "Input data was truncated", which it is not."""
    if "surrogate" not in error and "truncated" not in error:
        return None
    high: re.Match[bytes] | None = None
    for escape in _ESCAPE.finditer(raw):
        unit = int(escape[1], 16) if escape[1] is not None else None
        if high is not None:
            if unit is not None and 0xDC00 <= unit <= 0xDFFF and escape.start() == high.end():
                high = None  # a pair: one character
                continue
            break
        if unit is not None and 0xD800 <= unit <= 0xDBFF:
            high = escape
        elif unit is not None and 0xDC00 <= unit <= 0xDFFF:
            return (f"a lone UTF-16 surrogate {escape[0].decode()} at byte {escape.start()} (an escape \\udc00 to "
                    "\\udfff is the second half of a character: it must follow one \\ud800 to \\udbff)")
    if high is None:
        return None
    return (f"a lone UTF-16 surrogate {high[0].decode()} at byte {high.start()} (an escape \\ud800 to \\udbff is the "
            "first half of a character: one \\udc00 to \\udfff must follow it)")


@functools.cache
def _field_names(type_: type) -> frozenset[str]:
    """A query Struct's field names (msgspec works them out anew on every call, 30 us and more)."""
    return frozenset(field.encode_name for field in msgspec.structs.fields(type_))  # as a query spells them


_WITH_BODY = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class _NoBody(msgspec.Struct, forbid_unknown_fields=True):
    pass


def _refuse_a_body(raw: bytes) -> None:
    """An endpoint that takes no body accepts none, `{}` or `null`: anything else was meant for something else."""
    if not raw.strip():
        return
    try:
        decode(raw, _NoBody | None)  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; this endpoint takes no request body (send none, or {{}})",
                           exc.details, code=exc.code) from None


# What infrastructure calls, which may add parameters of its own (a Prometheus scrape's `params`, a probe's or a
# cache-buster's): these take any query and read none.
ANY_QUERY_PATHS = frozenset({"/health/live", "/health/ready", "/metrics", "/openapi.json"})
# Browsers cannot set headers on a websocket handshake: a stream takes its credentials from the query
# (handlers/rest/middleware.py reads them there, on /v1/stream/ only).
STREAM_CREDENTIALS = frozenset({"token", "api_key"})


def _refuse_a_query(request: web.Request, taken: frozenset[str]) -> None:
    """An endpoint that declares no query parameters takes none but `taken`: a parameter sent to it was meant for
    something else, and is refused as an unknown one is where some are declared."""
    if request.path in ANY_QUERY_PATHS:
        return
    unknown = sorted(set(request.query) - taken)
    if unknown:
        takes = f"only {' or '.join(sorted(taken))}" if taken else "no query parameters"
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}; this endpoint takes {takes}",
                           {"unknown": unknown})


def optional_body(raw: bytes, type_: type) -> Any:
    """A body that may be left out: empty means every field's default."""
    return type_() if not raw.strip() else decode(raw, type_)


def decode_query(request: web.Request, type_: type, *, only_declared: bool = True) -> Any:
    """Turn query parameters into `type_` (strings converted to the declared types); with only_declared,
    a parameter `type_` does not name is refused. A parameter in the type's `comma_lists` is a comma-separated
    list, which may also be given several times (`category=a&category=b` is `category=a,b`); any other given twice
    is refused rather than one of its values silently dropped."""
    fields = _field_names(type_)
    lists: frozenset[str] = getattr(type_, "comma_lists", frozenset())
    query = request.query
    unknown = sorted(set(query) - fields)
    if unknown and only_declared:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}", {"unknown": unknown})
    values: dict[str, str] = {}
    for k in query.keys():
        if k in fields and k not in values:
            given = query.getall(k)
            if len(given) > 1 and k not in lists:
                raise InvalidInput(f"query parameter {k} is given {len(given)} times; give it once", {"field": k})
            values[k] = ",".join(given)
    try:
        return msgspec.convert(values, type_, strict=False)
    except msgspec.ValidationError as exc:
        message, path = _validation_message(exc)
        raise InvalidInput(f"invalid query parameter {path}: {message}" if path else f"invalid query: {message}",
                           {"field": path} if path else None) from None


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque pagination cursor."""
    return base64.urlsafe_b64encode(_encoder.encode(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page") from None
    if not isinstance(value, dict):
        raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
    return value


Cursor = Annotated[str, msgspec.Meta(
    pattern=CURSOR_PATTERN, max_length=2048,
    description="The next_cursor of the previous page (opaque, URL-safe base64); omit it for the first page")]


class PageQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: Cursor | None = None


def keyset_position(cursor: dict[str, Any]) -> tuple[float, str] | None:
    """The (at, id) a keyset cursor names, or None when it is not one (e.g. a cursor naming only an id)."""
    at, item_id = cursor.get("at"), cursor.get("id")
    if isinstance(at, int | float) and not isinstance(at, bool) and isinstance(item_id, str):
        try:
            position = float(at)
        except OverflowError:  # an integer past any float
            return None
        return (position, item_id) if math.isfinite(position) else None
    return None


async def keyset_after(after: str | None, position_of: Callable[[str], Awaitable[tuple[float, str] | None]]
                       | None = None) -> tuple[float, str] | None:
    """The position a page's `after` names (None for the first page): a keyset cursor's or, given `position_of`,
    that of the item a cursor from before keyset pages names by id; InvalidInput for anything else."""
    cursor = decode_cursor(after)
    if cursor is None:
        return None
    position = keyset_position(cursor)
    if position is None and position_of is not None and isinstance(cursor.get("id"), str):
        position = await position_of(cursor["id"])
    if position is None:
        raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
    return position


def keyset_page(rows: Sequence[T], limit: int,
                position: Callable[[T], tuple[float, str]]) -> tuple[list[T], str | None]:
    """A page of `rows` read from the store in (at, id) order after a position, asking for one row more than
    `limit` (to know whether another page follows), and the cursor of the next page (None at the end)."""
    page = list(rows[:limit])
    if len(rows) <= limit or not page:
        return page, None
    at, item_id = position(page[-1])
    return page, encode_cursor({"at": at, "id": item_id})


def paginate(items: Sequence[Any], after: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of a list of things with an `id`, and the opaque cursor of the next page (None at the end)."""
    cursor = decode_cursor(after)
    start = 0
    if cursor is not None:
        start = next((i + 1 for i, item in enumerate(items) if item.id == cursor.get("id")), -1)
        if start < 0:
            raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
    page = list(items[start:start + limit])
    more = start + limit < len(items)
    return page, (encode_cursor({"id": page[-1].id}) if more and page else None)
