"""/openapi.json, generated from the routes and @endpoint declarations the server really uses."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from app import __version__
from handlers.rest.common import EndpointSpec, endpoint, json_response, spec_of

_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 400: "Bad input",
                401: "Unauthenticated", 402: "Payment declined", 403: "Forbidden", 404: "Not found",
                409: "Conflict", 410: "Gone", 413: "Body too large", 422: "Rule violation",
                426: "Upgrade to websocket required", 429: "Rate limited", 503: "Unavailable"}


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


def _query_parameters(query: type, components: dict[str, Any]) -> list[dict[str, Any]]:
    (schema,), comps = msgspec.json.schema_components([query], ref_template="#/components/schemas/{name}")
    components.update(comps)
    target = comps.get(query.__name__, schema)
    required = set(target.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in target.get("properties", {}).items()]


def build_spec(app: web.Application, title: str, version: str) -> dict[str, Any]:
    """Walk the router and turn each declared handler into an OpenAPI 3.1 operation."""
    paths: dict[str, dict[str, Any]] = {}
    types: list[Any] = [ErrorEnvelope]
    operations: list[tuple[str, str, EndpointSpec, list[str]]] = []
    for route in app.router.routes():
        spec = spec_of(route.handler)
        if spec is None or route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        params = re.findall(r"\{(\w+)(?::[^}]*)?\}", path)
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)
        operations.append((path, route.method.lower(), spec, params))
        for t in (spec.body, spec.response):
            if t is not None and t is not str:
                types.append(t)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(map(id, types), schemas))
    error_ref = refs[id(ErrorEnvelope)]
    for path, method, spec, params in operations:
        op: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags),
                              "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}"}
        if spec.description:
            op["description"] = spec.description
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        if spec.query is not None:
            parameters += _query_parameters(spec.query, components)
        if spec.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": refs[id(spec.body)]}}}
            parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                               "schema": {"type": "string", "maxLength": 255},
                               "description": "Replays the first response for a repeated key"})
        if parameters:
            op["parameters"] = parameters
        if spec.roles is not None:
            op["security"] = [{"bearer": []}, {"apiKey": []}]
            op["description"] = (op.get("description", "") + f" Roles: {', '.join(spec.roles)}.").strip()
        ok: dict[str, Any] = {"description": _STATUS_TEXT.get(spec.status, "OK")}
        if spec.response is str:
            ok["content"] = {spec.extra.get("content_type", "text/plain"): {"schema": {"type": "string"}}}
        elif spec.response is not None:
            ok["content"] = {"application/json": {"schema": refs[id(spec.response)]}}
        responses = {str(spec.status): ok}
        for status in spec.errors:
            responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                      "content": {"application/json": {"schema": error_ref}}}
        op["responses"] = responses
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
            },
        },
    }


_SPEC_CACHE = web.AppKey("openapi_cache", dict)


@endpoint("This document: the OpenAPI 3.1 description of the REST API", tags=("platform",))
async def openapi(request: web.Request, principal) -> web.Response:
    cache = request.app[_SPEC_CACHE]
    if "spec" not in cache:
        cache["spec"] = json_response(build_spec(request.app, "Contrail API", __version__)).body
    return web.Response(body=cache["spec"], content_type="application/json")


def setup(app: web.Application) -> None:
    app[_SPEC_CACHE] = {}
    app.router.add_get("/openapi.json", openapi)
