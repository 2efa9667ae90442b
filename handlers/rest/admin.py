"""Admin: API keys, users and the audit log."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.admin import AdminService
from handlers.rest.auth import AccountView, Email
from handlers.rest.common import (
    PageQuery,
    decode_cursor,
    encode_cursor,
    endpoint,
    json_response,
    keyset_after,
    keyset_page,
)

ADMIN = ("admin",)


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    role: Literal["exchange", "partner", "admin"]


class ApiKeyView(msgspec.Struct):
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None
    created_by: str  # who made it through the API, whom it acts for in approvals ("" : made with the CLI)


class CreatedApiKey(msgspec.Struct):
    id: str
    name: str
    role: str
    created_at: float
    key: str


class ApiKeyPage(msgspec.Struct):
    items: list[ApiKeyView]
    next_cursor: str | None


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
    role: Literal["customer", "admin"]


class AuditEntryView(msgspec.Struct):
    id: int
    at: float
    actor: str
    action: str
    target: str
    details: dict


class AuditPage(msgspec.Struct):
    items: list[AuditEntryView]
    next_cursor: str | None


def _key_view(k) -> ApiKeyView:
    return ApiKeyView(k.id, k.name, k.role, k.created_at, k.revoked_at, k.created_by)


class AdminApi:
    """API keys, users and the audit log."""

    def __init__(self, admin: AdminService) -> None:
        self._admin = admin

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/admin/api-keys", self.create_api_key)
        router.add_get("/v1/admin/api-keys", self.list_api_keys)
        router.add_delete("/v1/admin/api-keys/{key_id}", self.revoke_api_key)
        router.add_post("/v1/admin/users", self.create_user)
        router.add_get("/v1/admin/audit", self.audit)

    @endpoint("Create an API key (the key is shown once, in this response)", tags=("admin",), roles=ADMIN,
              body=NewApiKey, response=CreatedApiKey, status=201, credentials=True)
    async def create_api_key(self, request: web.Request, principal, body: NewApiKey) -> web.Response:
        key, plaintext = await self._admin.create_api_key(principal, body.name, body.role)
        return json_response(CreatedApiKey(key.id, key.name, key.role, key.created_at, plaintext), status=201)

    @endpoint("List API keys (never their secrets)", tags=("admin",), roles=ADMIN, query=PageQuery,
              response=ApiKeyPage)
    async def list_api_keys(self, request: web.Request, principal, query: PageQuery) -> web.Response:
        after = await keyset_after(query.after)
        keys = await self._admin.list_api_keys(after, query.limit + 1)
        page, nxt = keyset_page(keys, query.limit, lambda k: (k.created_at, k.id))
        return json_response(ApiKeyPage([_key_view(k) for k in page], nxt))

    @endpoint("Revoke an API key; it stops working at once", tags=("admin",), roles=ADMIN, response=ApiKeyView,
              errors=(404,))
    async def revoke_api_key(self, request: web.Request, principal) -> web.Response:
        key = await self._admin.revoke_api_key(principal, request.match_info["key_id"])
        return json_response(_key_view(key))

    @endpoint("Create a customer or admin account", tags=("admin",), roles=ADMIN, body=NewUser,
              response=AccountView, status=201, errors=(409,))
    async def create_user(self, request: web.Request, principal, body: NewUser) -> web.Response:
        account = await self._admin.create_user(principal, body.email, body.password, body.role)
        return json_response(AccountView(account.id, account.email, account.role, account.created_at), status=201)

    @endpoint("The audit log of admin actions, newest first", tags=("admin",), roles=ADMIN, query=PageQuery,
              response=AuditPage)
    async def audit(self, request: web.Request, principal, query: PageQuery) -> web.Response:
        cursor = decode_cursor(query.after)
        before = cursor.get("before") if cursor else None
        if before is not None and not isinstance(before, int):
            before = None
        entries = await self._admin.audit_page(query.limit, before)
        nxt = encode_cursor({"before": entries[-1].id}) if len(entries) == query.limit else None
        return json_response(AuditPage([AuditEntryView(e.id, e.at, e.actor, e.action, e.target, e.details)
                                        for e in entries], nxt))
