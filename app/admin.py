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


class AuditTrail:
    """The audit log as the services that change things write it: who did what to which target."""

    def __init__(self, store: AuditStore, clock: Clock, log_event: Callable[[str, Any], object]) -> None:
        self._store = store
        self._clock = clock
        self._log_event = log_event

    async def record(self, actor: Principal | str, action: str, target: str, **details: object) -> None:
        """Append one admin action to the audit log (durable before it returns)."""
        who = actor if isinstance(actor, str) else actor.scope
        await self._store.append(self._clock.now(), who, action, target, dict(details))
        self._log_event("AdminAction", {"actor": who, "action": action, "target": target})

    async def page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        return await self._store.page(limit, before_id)


class AdminService:
    def __init__(self, accounts: AccountService, api_keys: ApiKeyService, audit: AuditTrail) -> None:
        self._accounts = accounts
        self._api_keys = api_keys
        self._audit = audit

    async def record(self, actor: Principal | str, action: str, target: str, **details: object) -> None:
        await self._audit.record(actor, action, target, **details)

    async def create_api_key(self, actor: Principal | str, name: str, role: str) -> tuple[ApiKey, str]:
        # A key acts for whoever made it: an admin cannot approve their own campaign with a key they made.
        key, plaintext = await self._api_keys.create(name, role, actor.person if isinstance(actor, Principal) else "")
        await self.record(actor, "api_key.create", key.id, name=key.name, role=key.role)
        return key, plaintext

    async def revoke_api_key(self, actor: Principal | str, key_id: str) -> ApiKey:
        key = await self._api_keys.revoke(key_id)
        await self.record(actor, "api_key.revoke", key_id)
        return key

    async def list_api_keys(self, after: tuple[float, str] | None, limit: int) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first: in (created_at, id) order after that position."""
        return await self._api_keys.page(after, limit)

    async def create_user(self, actor: Principal | str, email: str, password: str, role: str) -> Account:
        account = await self._accounts.create_user(email, password, role)
        # The account's id, not its email: the audit log is kept after an erasure, personal data is not.
        await self.record(actor, "user.create", account.id, role=account.role)
        return account

    async def audit_page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        return await self._audit.page(limit, before_id)
