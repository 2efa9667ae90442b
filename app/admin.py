"""Admin actions on the platform, each recorded in the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.auth import AccountService, ApiKeyService, Principal
from app.runtime.clock import Clock
from state.accounts import Account
from state.apikeys import ApiKey
from state.audit import AuditEntry
from state.ports import AuditStore


class AdminService:
    def __init__(self, accounts: AccountService, api_keys: ApiKeyService, audit: AuditStore, clock: Clock,
                 log_event: Callable[[str, Any], object]) -> None:
        self._log_event = log_event
        self._accounts = accounts
        self._api_keys = api_keys
        self._audit = audit
        self._clock = clock

    async def record(self, actor: Principal | str, action: str, target: str, **details: object) -> None:
        """Append one admin action to the audit log."""
        who = actor if isinstance(actor, str) else actor.scope
        await self._audit.append(self._clock.now(), who, action, target, dict(details))
        self._log_event("AdminAction", {"actor": who, "action": action, "target": target})

    async def create_api_key(self, actor: Principal | str, name: str, role: str) -> tuple[ApiKey, str]:
        key, plaintext = await self._api_keys.create(name, role)
        await self.record(actor, "api_key.create", key.id, name=key.name, role=key.role)
        return key, plaintext

    async def revoke_api_key(self, actor: Principal | str, key_id: str) -> ApiKey:
        key = await self._api_keys.revoke(key_id)
        await self.record(actor, "api_key.revoke", key_id)
        return key

    def list_api_keys(self) -> list[ApiKey]:
        """Oldest first (creation order)."""
        return self._api_keys.list()

    async def create_user(self, actor: Principal | str, email: str, password: str, role: str) -> Account:
        account = await self._accounts.create_user(email, password, role)
        await self.record(actor, "user.create", account.id, email=account.email, role=account.role)
        return account

    async def audit_page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        return await self._audit.page(limit, before_id)
