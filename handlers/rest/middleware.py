"""The REST middlewares: request id, metrics, the error envelope, auth, rate limits, idempotency.

Each is built once with the services it uses (create_app), so a request looks nothing up."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from app import ids
from app.auth import UNDECIDED, Authenticator, require_role
from app.config import ServerConfig
from app.errors import (
    DomainError,
    InvalidInput,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    Unavailable,
)
from app.idempotency import IdempotencyService, Replay
from app.ratelimit import RateLimiter
from app.runtime.logs import request_id
from app.runtime.metrics import Metrics
from app.runtime.tracing import SERVER, Tracing
from handlers.rest.common import CREDENTIALS, PRINCIPAL, STATIC_ROUTE, encode_json, spec_of
from state.ports import StorageUnavailable, UnstorableValue
from state.text import whole

log = logging.getLogger("contrail.http")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID_RE = re.compile(whole(r"[A-Za-z0-9._:\-]{1,128}"))
# Probes and scrapes are never rate limited: an orchestrator must always see the truth.
_UNLIMITED_PREFIXES = ("/health/", "/metrics")


def error_response(exc: DomainError) -> web.Response:
    body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return web.Response(body=encode_json(body), status=exc.status, content_type="application/json",
                        headers=headers)


async def _api_methods(request: web.Request) -> set[str]:
    """The methods the API routes (not the static catch-all) allow on this path."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical != STATIC_ROUTE:
            allowed |= (await resource.resolve(request))[1]
    return allowed


async def _from_http_exception(request: web.Request, exc: web.HTTPException, body_limit: int) -> web.Response:
    status = exc.status
    allowed: set[str] = set()
    if status in (404, 405):
        # The static files take GET on every path: a path no API route knows is not found, whatever the
        # method; a path an API route knows is 405 for other methods, and Allow lists only the API's.
        allowed = await _api_methods(request)
        status = 405 if allowed and request.method not in allowed else 404
    if status == 404:
        err = DomainError(f"no such resource: {request.method} {request.path}", code="not_found")
    elif status == 405:
        err = DomainError(f"method {request.method} is not allowed on {request.path}", code="method_not_allowed")
    elif status == 413:
        err = DomainError(f"request body exceeds the limit of {body_limit} bytes", {"limit_bytes": body_limit},
                          code="payload_too_large")
    else:
        err = DomainError(exc.reason or "request failed", code=re.sub(r"\W+", "_", (exc.reason or "error").lower()))
    err.status = status
    response = error_response(err)
    if status == 405:
        response.headers["Allow"] = ",".join(sorted(allowed))
    return response


class UnreadableBody(Exception):
    """The body could not be read whole; `error` says why, and the connection must close."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.message)
        self.error = error


def _too_large(limit: int) -> UnreadableBody:
    return UnreadableBody(PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", {"limit_bytes": limit}))


async def _read_body(request: web.Request, config: ServerConfig) -> None:
    """Read the whole body before any handler runs (handlers then get it from aiohttp's cache), so that
    every endpoint, whether it reads a body or not, answers an oversized one 413, a wrongly encoded
    one 400 and a stalled one 408."""
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise _too_large(config.max_body_bytes)
    try:
        if request.content.is_eof():  # all of it is here already: the usual case, no timer needed
            await request.read()
        else:
            async with asyncio.timeout(config.body_timeout_s):
                await request.read()
    except TimeoutError:
        request.content.feed_eof()  # stop waiting for it: the connection closes after the answer
        raise UnreadableBody(RequestTimeout(
            f"the request body did not arrive within {config.body_timeout_s:g}s")) from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(config.max_body_bytes) from None
    except (RequestPayloadError, HttpProcessingError) as exc:
        request.content.feed_eof()  # nothing more can be read from it
        reason = str(exc.__cause__ or exc).split("message:", 1)[-1].strip()
        encoding = request.headers.get("Content-Encoding")
        raise UnreadableBody(InvalidInput(f"the request body could not be read: {reason}"
                                          + (f" (Content-Encoding: {encoding})" if encoding else ""))) from None


async def _authenticate(request: web.Request, authenticator: Authenticator) -> None:
    auth = request.headers.get("Authorization")
    api_key = request.headers.get("X-Api-Key")
    # Browsers cannot set headers on websocket upgrades, so streams also take credentials
    # from the query string.
    if request.path.startswith("/v1/stream/"):
        if auth is None and "token" in request.query:
            auth = f"Bearer {request.query['token']}"
        if api_key is None and "api_key" in request.query:
            api_key = request.query["api_key"]
        request[CREDENTIALS] = (api_key, auth)
    principal = authenticator.identify_now(api_key, auth)  # the usual case: known key or token, no I/O
    if principal is UNDECIDED:
        principal = await authenticator.identify(api_key, auth)
    if principal is not None:
        request[PRINCIPAL] = principal


def core_middleware(server: ServerConfig, authenticator: Authenticator, limiter: RateLimiter,
                    metrics: Metrics) -> Middleware:
    """The outermost middleware: request id, timing, auth, rate limits, and the one error envelope."""
    requests, latency = metrics.http_requests, metrics.http_latency

    @web.middleware
    async def core(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id")
        if rid is None or not _REQUEST_ID_RE.match(rid):
            rid = ids.token_hex(16)
        token = request_id.set(rid)
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            try:
                try:
                    await _authenticate(request, authenticator)
                except Unauthenticated:
                    # Refused credentials still cost their address a token: guessing keys is rate limited.
                    limiter.failed_authentication(request.remote or "unknown")
                    raise
                if not request.path.startswith(_UNLIMITED_PREFIXES):
                    limiter.check(request.get(PRINCIPAL), request.remote or "unknown")
                if request.body_exists:  # after the limits: a refused caller's body is never read
                    await _read_body(request, server)
                response = await handler(request)
            except UnreadableBody as exc:
                response = error_response(exc.error)
                response.force_close()  # what is left of the body cannot be told from a next request
            except StorageUnavailable as exc:
                response = error_response(Unavailable(f"storage is unavailable; try again shortly ({exc})"))
            except UnstorableValue as exc:
                response = error_response(InvalidInput(str(exc)))
            except DomainError as exc:
                response = error_response(exc)
                if request.body_exists and not request.content.is_eof():
                    # Refused before its body was read (bad credentials, a rate limit): what is left of it
                    # cannot be told from a next request, and may not even decode.
                    response.force_close()
            except web.HTTPException as exc:
                response = await _from_http_exception(request, exc, server.max_body_bytes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unhandled error", extra={"path": request.path, "method": request.method})
                response = error_response(DomainError("internal error; the request id identifies it in the logs",
                                                      {"request_id": rid}, code="internal"))
                response.set_status(500)
            if not response.prepared:
                response.headers["X-Request-Id"] = rid
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = request.match_info.route.resource
            label = route.canonical if route is not None else "unmatched"
            status = response.status if response is not None else 499
            requests.labels(label, request.method, str(status)).inc()
            latency.labels(label, request.method).observe(elapsed)
            if server.access_log:
                log.info("request", extra={"method": request.method, "path": request.path, "status": status,
                                           "ms": round(elapsed * 1000, 3)})
            request_id.reset(token)

    return core


def tracing_middleware(tracing: Tracing) -> Middleware:
    """Outermost when tracing is on (and absent when off): a server span per request, under the caller's
    `traceparent` when it sent one, named by the route rather than the path so spans group by endpoint."""

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        with tracing.span(f"{request.method} {template}", kind=SERVER, context=Tracing.extract(request.headers),
                          attributes={"http.request.method": request.method, "http.route": template,
                                      "url.path": request.path}) as span:
            response = await handler(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
                rid = response.headers.get("X-Request-Id")
                if rid:
                    span.set_attribute("contrail.request_id", rid)
                if response.status >= 500:
                    Tracing.failed(span, f"HTTP {response.status}")
            return response

    return traced


def _withheld(status: int, body: bytes) -> bytes:
    """What a repeat of a request whose response carried a credential gets instead of that response."""
    try:
        made = msgspec.json.decode(body).get("id")
    except (msgspec.DecodeError, AttributeError):
        made = None
    return encode_json({"error": {
        "code": "idempotency_key_used", "details": {"first_status": status, "id": made},
        "message": "this Idempotency-Key's first request succeeded; its response carried a credential, which "
                   "is shown once and not kept"}})


# Responses never kept for a replay: refusals that say nothing about the operation, and overload.
_NOT_KEPT = frozenset({401, 403, 408, 413, 429, 503})


def idempotency_middleware(service: IdempotencyService) -> Middleware:
    """The middleware after core_middleware: replay the first response for a repeated Idempotency-Key; 409
    for a different body.

    Keys belong to an authenticated caller, who must be allowed to call the endpoint before a key
    is looked at: an anonymous request has no idempotency (callers behind one address are not one
    caller), and a response that carries a credential (a new API key) is never stored: a repeat
    gets 409 naming what the first request made, so a retry never makes a second one."""

    @web.middleware
    async def idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        principal = request.get(PRINCIPAL)
        if key is None or request.method not in MUTATING or principal is None:
            return await handler(request)
        spec = spec_of(request.match_info.handler)
        if spec is None:  # no endpoint of ours (405, 404): nothing to make idempotent
            return await handler(request)
        if spec.roles is not None:
            require_role(principal, *spec.roles)
        secret = spec.extra.get("credentials", False)
        scope = principal.scope
        body = await request.read()
        fingerprint = service.fingerprint(request.method, request.path_qs, body)
        started = await service.begin(scope, key.strip(), fingerprint)
        if isinstance(started, Replay):
            return web.Response(status=started.status, body=started.body, content_type=started.content_type,
                                headers={"Idempotency-Replayed": "true"})
        key = key.strip()
        try:
            response = await handler(request)
        except DomainError as exc:
            response = error_response(exc)
        except BaseException:
            service.abandon(scope, key)
            raise
        body_bytes = response.body if isinstance(response, web.Response) else None
        if not isinstance(body_bytes, bytes) or response.status in _NOT_KEPT:
            service.abandon(scope, key)
            return response
        stored_status, stored_type = response.status, response.content_type
        if secret and response.status < 400:
            stored_status, stored_type, body_bytes = 409, "application/json", _withheld(response.status, body_bytes)
        try:
            await service.finish(scope, key, fingerprint, stored_status, stored_type, body_bytes)
        except Exception:
            log.exception("could not store idempotent response", extra={"key": key})
        return response

    return idempotent
