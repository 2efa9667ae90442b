"""The REST middlewares: request id, metrics, the error envelope, auth, rate limits, idempotency."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time

from aiohttp import web

from app import ids, keys
from app.errors import DomainError, RateLimited
from app.idempotency import Replay
from app.logs import request_id
from handlers.rest.common import PRINCIPAL, encode_json

log = logging.getLogger("contrail.http")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Probes and scrapes are never rate limited: an orchestrator must always see the truth.
_UNLIMITED_PREFIXES = ("/health/", "/metrics")


def error_response(exc: DomainError) -> web.Response:
    body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return web.Response(body=encode_json(body), status=exc.status, content_type="application/json",
                        headers=headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    if status == 404:
        err = DomainError(f"no such resource: {request.method} {request.path}", code="not_found")
    elif status == 405:
        err = DomainError(f"method {request.method} is not allowed on {request.path}", code="method_not_allowed")
    elif status == 413:
        limit = request.app[keys.CONFIG].server.max_body_bytes
        err = DomainError(f"request body exceeds the limit of {limit} bytes", {"limit_bytes": limit},
                          code="payload_too_large")
    else:
        err = DomainError(exc.reason or "request failed", code=re.sub(r"\W+", "_", (exc.reason or "error").lower()))
    err.status = status
    response = error_response(err)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


async def _authenticate(request: web.Request) -> None:
    auth = request.headers.get("Authorization")
    api_key = request.headers.get("X-Api-Key")
    # Browsers cannot set headers on websocket upgrades, so streams also take credentials
    # from the query string.
    if request.path.startswith("/v1/stream/"):
        if auth is None and "token" in request.query:
            auth = f"Bearer {request.query['token']}"
        if api_key is None and "api_key" in request.query:
            api_key = request.query["api_key"]
    principal = await request.app[keys.AUTHENTICATOR].identify(api_key, auth)
    if principal is not None:
        request[PRINCIPAL] = principal


@web.middleware
async def core_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Request id, timing, auth, rate limits, and the one error envelope."""
    rid = request.headers.get("X-Request-Id")
    if rid is None or not _REQUEST_ID_RE.match(rid):
        rid = ids.token_hex(16)
    token = request_id.set(rid)
    started = time.perf_counter()
    response: web.StreamResponse | None = None
    try:
        try:
            await _authenticate(request)
            if not request.path.startswith(_UNLIMITED_PREFIXES):
                request.app[keys.LIMITER].check(request.get(PRINCIPAL), request.remote or "unknown")
            response = await handler(request)
        except DomainError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            response = _from_http_exception(request, exc)
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
        metrics = request.app[keys.METRICS]
        status = response.status if response is not None else 499
        metrics.http_requests.labels(label, request.method, str(status)).inc()
        metrics.http_latency.labels(label, request.method).observe(elapsed)
        if request.app[keys.CONFIG].server.access_log:
            log.info("request", extra={"method": request.method, "path": request.path, "status": status,
                                       "ms": round(elapsed * 1000, 3)})
        request_id.reset(token)


@web.middleware
async def idempotency_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Replay the first response for a repeated Idempotency-Key; 409 for a different body."""
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method not in MUTATING:
        return await handler(request)
    service = request.app[keys.IDEMPOTENCY]
    principal = request.get(PRINCIPAL)
    scope = principal.scope if principal is not None else f"ip:{request.remote}"
    body = await request.read()
    fingerprint = service.fingerprint(request.method, request.path_qs, body)
    started = service.begin(scope, key.strip(), fingerprint)
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
    if not isinstance(body_bytes, bytes) or response.status == 429:
        service.abandon(scope, key)
        return response
    try:
        await service.finish(scope, key, fingerprint, response.status, response.content_type, body_bytes)
    except Exception:
        log.exception("could not store idempotent response", extra={"key": key})
    return response

