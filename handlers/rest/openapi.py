"""/openapi.json, generated from the routes and @endpoint declarations the server really uses.

Besides what each endpoint declares, every operation documents what the server answers whatever
the endpoint (handlers/rest/middleware.py and connections.py): 400 for a body that cannot be read
(not in its Content-Encoding, JSON nested too deeply), 401 for credentials that were sent and do
not verify (checked on every request, public endpoints included), 408 for a body that stalls,
413 for one over `server.max_body_bytes` (every request's body is read first, whether the
endpoint takes one or not), 429 with Retry-After (per address, and per caller when there is one;
probes and /metrics are never limited) and 503 (too many open connections). Every POST, PUT,
PATCH and DELETE takes an Idempotency-Key, and answers 409 when the key was used for another
request, is in flight, or first made a credential that is not kept for replay. An operation with
path parameters answers 404 for one naming nothing, and 405 (with Allow) when a parameter of "."
or ".." turns the URL into another resource's. A websocket endpoint answers 101 to a handshake,
426 (with Upgrade) to anything else, and 400 to a malformed handshake.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from app import __version__
from app.idempotency import MAX_KEY_LENGTH
from handlers.rest.common import EndpointSpec, encode_json, endpoint, spec_of
from handlers.rest.middleware import _UNLIMITED_PREFIXES as UNLIMITED_PREFIXES  # never rate limited

MUTATING = frozenset({"post", "put", "patch", "delete"})

_STATUS_TEXT = {101: "Switching to the websocket protocol", 200: "OK", 201: "Created", 202: "Accepted",
                204: "No content", 302: "Found: redirect to Location", 400: "Bad input",
                401: "Unauthenticated: credentials missing, or sent and not valid",
                402: "Payment declined", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed on the URL this names (a path parameter of . or .. names another)",
                408: "The request body did not arrive in time (server.body_timeout_s)",
                409: "Conflict", 410: "Gone",
                413: "The request body is larger than server.max_body_bytes", 422: "Rule violation",
                426: "Upgrade required: not a websocket handshake, or a websocket version this server does not "
                     "speak",
                429: "Rate limited: retry after Retry-After seconds",
                503: "Unavailable: too many open connections, or a dependency is down"}
_IDEMPOTENCY_CONFLICT = ("the Idempotency-Key was already used for a different request, a request with it is "
                         "still in progress, or its first request made a credential, which is never replayed")


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without the `null` of an optional field: absent is how it is left out."""
    if "default" in schema and schema["default"] is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s != {"type": "null"}]
            rest = {k: v for k, v in schema.items() if k != key}
            return {**rest, **options[0]} if len(options) == 1 else {**rest, key: options}
    if isinstance(schema.get("type"), list):
        types = [t for t in schema["type"] if t != "null"]
        schema = {**schema, "type": types[0] if len(types) == 1 else types}
    if "enum" in schema:
        schema = {**schema, "enum": [v for v in schema["enum"] if v is not None]}
    return schema


def _query_parameters(query: type, components: dict[str, Any]) -> list[dict[str, Any]]:
    (schema,), comps = msgspec.json.schema_components([query], ref_template="#/components/schemas/{name}")
    target = comps.pop(query.__name__, schema)  # its fields become parameters; the struct itself is no schema
    components.update(comps)
    required = set(target.get("required", []))
    parameters = []
    for name, prop in target.get("properties", {}).items():
        prop = _without_null(prop)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _path_parameter(name: str) -> dict[str, Any]:
    # A segment of "." or ".." is no value: URLs drop it (RFC 3986 5.2.4), naming another path.
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "not": {"enum": [".", ".."]}}}


def _idempotency_key() -> dict[str, Any]:
    return {"name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": r"\S"},
            "description": "Makes a retry safe: a repeat of the same request with the same key (by the same "
                           "authenticated caller) gets the first response again, with Idempotency-Replayed: true; "
                           "the same key with a different request is 409 idempotency_key_reused. Ignored for "
                           f"anonymous callers. 1 to {MAX_KEY_LENGTH} characters."}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _headers(spec: EndpointSpec) -> dict[str, Any]:
    return {name: {"required": True, "schema": schema} for name, schema in spec.headers.items()}


def _error_reasons(status: int, spec: EndpointSpec, method: str) -> str:
    text = _STATUS_TEXT.get(status, "Error")
    if status == 409 and method in MUTATING:
        text = (f"{text}: " if status in spec.errors else "Conflict: ") + _IDEMPOTENCY_CONFLICT
    if status == 400 and spec.websocket:
        text += ", or a malformed websocket handshake"
    return text


def _responses(spec: EndpointSpec, path: str, method: str, has_path_params: bool, refs: dict[int, Any],
               error_ref: dict[str, Any]) -> dict[str, Any]:
    """Every status the operation can answer, with what it carries."""
    success = {spec.status, *spec.also}
    errors = set(spec.errors) | {400, 401, 408, 413, 503}
    if not path.startswith(UNLIMITED_PREFIXES):
        errors.add(429)
    if spec.roles is not None:
        errors.add(403)
    if has_path_params:
        # A path parameter naming nothing; one that is a dot segment makes the URL another resource's,
        # which may not take this method.
        errors |= {404, 405}
    if method in MUTATING:
        errors.add(409)  # Idempotency-Key
    if spec.websocket:
        errors |= {400, 426}  # a malformed handshake (RFC 6455 4.2.1); no handshake, or a version not spoken
    described = spec.extra.get("descriptions", {})
    responses: dict[str, Any] = {}
    for status in sorted(success | errors):
        if status in spec.empty:
            responses[str(status)] = {"description": described.get(status, _STATUS_TEXT.get(status, "No body")
                                                                   + " (no body)")}
            if status in success and spec.headers:
                responses[str(status)]["headers"] = _headers(spec)
            continue
        schemas = []
        response: dict[str, Any] = {"description": described.get(status, _STATUS_TEXT.get(status, "OK"))}
        if status in success:
            if spec.response is str or spec.response is bytes:
                media = spec.extra.get("content_type", "text/plain")
                body = {"type": "string"} if spec.response is str else {"type": "string",
                                                                         "contentMediaType": media}
                response["content"] = {media: {"schema": body}}
            elif spec.response is not None:
                schemas.append(refs[id(spec.response)])
            if spec.headers:
                response["headers"] = _headers(spec)
        if status in errors:
            schemas.append(error_ref)
            response["description"] = described.get(status, _error_reasons(status, spec, method))
        if schemas:
            response["content"] = _json(schemas[0] if len(schemas) == 1 else {"anyOf": schemas})
        if status == 429:
            response["headers"] = {"Retry-After": {
                "required": True, "description": "Seconds until a request would be allowed",
                "schema": {"type": "integer", "minimum": 1}}}
        if status == 405:
            response["headers"] = {"Allow": {"required": True, "description": "The methods the URL takes",
                                             "schema": {"type": "string"}}}
        if status == 426:
            response["headers"] = {
                "Upgrade": {"required": True, "schema": {"type": "string", "const": "websocket"}},
                "Sec-WebSocket-Version": {"required": False, "schema": {"type": "string"},
                                          "description": "The websocket version to use, when the one asked for "
                                                         "is not spoken"}}
        responses[str(status)] = response
    return responses


def build_spec(router: web.UrlDispatcher, title: str, version: str) -> dict[str, Any]:
    """Walk the router and turn each declared handler into an OpenAPI 3.1 operation."""
    paths: dict[str, dict[str, Any]] = {}
    types: list[Any] = [ErrorEnvelope]
    operations: list[tuple[str, str, EndpointSpec, list[str]]] = []
    for route in router.routes():
        spec = spec_of(route.handler)
        if spec is None or route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        params = re.findall(r"\{(\w+)(?::[^}]*)?\}", path)
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)
        operations.append((path, route.method.lower(), spec, params))
        for t in (spec.body, spec.raw_body, spec.response):
            if t is not None and t is not str and t is not bytes:
                types.append(t)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(map(id, types), schemas, strict=True))
    error_ref = refs[id(ErrorEnvelope)]
    for path, method, spec, params in operations:
        op: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags),
                              "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}"}
        if spec.description:
            op["description"] = spec.description
        parameters = [_path_parameter(p) for p in params]
        for query in (spec.query, spec.params):
            if query is not None:
                parameters += _query_parameters(query, components)
        parameters += spec.extra.get("request_headers", [])
        body = spec.body if spec.body is not None else spec.raw_body
        if body is not None:
            op["requestBody"] = {"required": True, "content": _json(refs[id(body)])}
        if method in MUTATING:
            parameters.append(_idempotency_key())
        if parameters:
            op["parameters"] = parameters
        if spec.roles is not None:
            op["security"] = [{"bearer": []}, {"apiKey": []}]
            if spec.websocket:  # browsers cannot set headers on a websocket handshake
                op["security"] += [{"bearerQuery": []}, {"apiKeyQuery": []}]
            op["description"] = (op.get("description", "") + f" Roles: {', '.join(spec.roles)}.").strip()
        op["responses"] = _responses(spec, path, method, bool(params), refs, error_ref)
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Contrail: retailing and real-time marketing for small airlines."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "bearerQuery": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "A bearer token, on websocket handshakes only"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                                "description": "An API key, on websocket handshakes only"},
            },
        },
    }


class OpenApiDocument:
    """/openapi.json: built from `router`'s routes on the first request (every route is added by then), then
    served as it was built."""

    def __init__(self, router: web.UrlDispatcher, title: str = "Contrail API", version: str = __version__) -> None:
        self._router = router
        self._title = title
        self._version = version
        self._body: bytes | None = None

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/openapi.json", self.openapi)

    @endpoint("This document: the OpenAPI 3.1 description of the REST API", tags=("platform",), response=dict)
    async def openapi(self, request: web.Request, principal) -> web.Response:
        if self._body is None:
            self._body = encode_json(build_spec(self._router, self._title, self._version))
        return web.Response(body=self._body, content_type="application/json")
