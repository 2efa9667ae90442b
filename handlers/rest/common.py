"""Shared REST plumbing: endpoint declarations, JSON in and out, auth, pagination cursors.

Every route handler is declared with @endpoint: the same declaration enforces the roles,
decodes the body and query into msgspec Structs, and feeds /openapi.json, so the
documentation cannot drift from what the server does.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass, field
from typing import Annotated, Any, Awaitable, Callable, Sequence

import msgspec
from aiohttp import web

from app.auth import Principal, require_role
from app.errors import InvalidInput
from app.jsondepth import check_depth

PRINCIPAL = "contrail.principal"
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


def endpoint(summary: str, *, tags: tuple[str, ...] = (), roles: tuple[str, ...] | None = None,
             body: type | None = None, query: type | None = None, response: Any = None,
             status: int = 200, errors: tuple[int, ...] = (), description: str = "",
             **extra: Any) -> Callable[[Handler], Handler]:
    """Declare a route handler: who may call it, what it takes and what it returns.

    The wrapped handler is called as handler(request, principal, [body], [query]).
    """

    def wrap(fn: Handler) -> Handler:
        auto_errors = set(errors) | {400}
        if roles is not None:
            auto_errors |= {401, 403, 429}

        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            principal = request.get(PRINCIPAL)
            if roles is not None:
                require_role(principal, *roles)
            args: list[Any] = [request, principal]
            if body is not None:
                args.append(decode(await request.read(), body))
            if query is not None:
                args.append(decode_query(request, query))
            return await fn(*args)

        handler.__contrail_spec__ = EndpointSpec(  # type: ignore[attr-defined]
            summary, tags, roles, body, query, response, status, tuple(sorted(auto_errors)), description, extra)
        return handler

    return wrap


def spec_of(handler: Any) -> EndpointSpec | None:
    return getattr(handler, "__contrail_spec__", None)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json",
                        headers=headers)


def encode_json(data: Any) -> bytes:
    return _encoder.encode(data)


def _validation_message(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    text = str(exc)
    path = None
    if " - at `$" in text:
        text, _, where = text.partition(" - at `$")
        path = where.rstrip("`").lstrip(".") or None
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
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message, path = _validation_message(exc)
        raise InvalidInput(f"invalid request body: {message}" + (f" at {path}" if path else ""),
                           {"field": path} if path else None) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed JSON: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def decode_query(request: web.Request, type_: type) -> Any:
    """Turn query parameters into `type_` (strings converted to the declared types)."""
    fields = set(type_.__struct_fields__)
    unknown = sorted(set(request.query) - fields)
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}", {"unknown": unknown})
    try:
        return msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as exc:
        message, path = _validation_message(exc)
        raise InvalidInput(f"invalid query parameter {path}: {message}" if path else f"invalid query: {message}",
                           {"field": path} if path else None) from None


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


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


class PageQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: str | None = None


def paginate(items: Sequence[Any], after: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of a list of things with an `id`, and the opaque cursor of the next page (None at the end)."""
    cursor = decode_cursor(after)
    start = 0
    if cursor is not None:
        start = next((i + 1 for i, item in enumerate(items) if item.id == cursor.get("id")), -1)
        if start < 0:
            raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
    page = items[start:start + limit]
    more = start + limit < len(items)
    return page, (encode_cursor({"id": page[-1].id}) if more and page else None)
