"""A customer's right to erasure (GDPR article 17): their personal data removed or anonymised everywhere Contrail
keeps it, their financial records kept.

Removed: the account's email and password (the row stays as a tombstone: orders and the loyalty ledger name its
id; nobody can sign in as it and the email can open a new account), the loyalty member's contact details and
birthday, the bidding profile, the in-app inbox, stored idempotent replies. Anonymised: the mail sent to them (the
messages carrying their id) and the email events about that mail or, for a provider's event that names only an
address, about their addresses (rows kept, blanked: reports count them), the events in the analytics log that name
them ("erased" in place of their id), their suppression entries (kept under the keyed hash alone, so an erased
person is never contacted again). Only their own: contact details are whatever the customer typed, so an address
that is another account's email, or that another customer's mail went to, is not theirs to erase. Kept: orders,
payments, refunds and the loyalty ledger (the law obliges an airline to keep its accounting records), and the audit
log (who erased whom, by account id).

The account is tombstoned last: if a step fails, the customer still exists and erasing again redoes every step
(each is idempotent). Once erased, the customer is unknown (404), so a repeated request changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import Forbidden, NotFound
from state.loyalty import Member
from state.ports import (
    AccountStore,
    EventLogStore,
    IdempotencyStore,
    InboxStore,
    OutboxStore,
    SuppressionStore,
)

ERASED_ROLE = "erased"


class Erasure(msgspec.Struct):
    """What one erasure did, per place (rows or entries)."""
    customer_id: str
    mail_cancelled: int
    mail_rows_blanked: int
    suppressions_anonymised: int
    events_anonymised: int
    inbox_deleted: int
    replies_deleted: int
    member_forgotten: bool
    profile_deleted: bool


class CustomerErasure:
    def __init__(self, accounts: AccountStore, members: Callable[[str], Awaitable[Member | None]],
                 forget_member: Callable[[str], Awaitable[bool]],
                 suppressions: SuppressionStore, outbox: OutboxStore, cancel_mail: Callable[[list[str]], None],
                 inbox: InboxStore, forget_profile: Callable[[str], Awaitable[bool]],
                 forget_pending: Callable[[str], None], idempotency: IdempotencyStore, events: EventLogStore,
                 flush_events: Callable[[], Awaitable[object]], audit: AuditTrail,
                 forget_value: Callable[[str], None] = lambda customer_id: None,
                 forget_decisions: Callable[[str], Awaitable[None]] | None = None) -> None:
        """`members`: a member's contact details by id (loyalty); `forget_pending`: profile updates not yet
        written (ingest); `flush_events`: the analytics log's queue written out first, so none escapes;
        `forget_value`: the customer's lifetime value dropped from memory (once erased, none is predicted);
        `forget_decisions`: the offer-selection decisions made for them (app/campaigns/policies.py)."""
        self._accounts = accounts
        self._members = members
        self._forget_member = forget_member
        self._suppressions = suppressions
        self._outbox = outbox
        self._cancel_mail = cancel_mail
        self._inbox = inbox
        self._forget_profile = forget_profile
        self._forget_pending = forget_pending
        self._idempotency = idempotency
        self._events = events
        self._flush_events = flush_events
        self._audit = audit
        self._forget_value = forget_value
        self._forget_decisions = forget_decisions

    async def _anothers_address(self, contact: str, customer_id: str) -> bool:
        """Whether this contact is the email of an account other than the customer's."""
        if "@" not in contact:
            return False
        other = self._accounts.by_email(contact) or await self._accounts.fetch_by_email(contact)
        return other is not None and other.id != customer_id

    async def erase(self, actor: Principal, customer_id: str) -> Erasure:
        """Erase a customer: an admin may erase anyone's, a customer only their own (403 otherwise); 404 for an
        id that is no customer (or one erased already)."""
        if not actor.is_admin and not (actor.kind == "user" and actor.id == customer_id):
            raise Forbidden("customers can only erase their own data")
        account = self._accounts.get(customer_id) or await self._accounts.fetch(customer_id)
        if account is None or account.role != "customer":
            raise NotFound(f"no customer {customer_id}")
        member = await self._members(customer_id)
        # A member's contact details are whatever the customer typed (never verified): one naming an address
        # another account signs in with is someone else's, and erasing this customer must not touch it.
        contacts = [c for c in (account.email, *((member.email, member.phone, member.push_token) if member else ()))
                    if c and not await self._anothers_address(c, customer_id)]
        addresses = [c for c in contacts if "@" in c]
        cancelled, blanked = await self._outbox.erase(customer_id, addresses)
        self._cancel_mail(cancelled)
        anonymised = await self._suppressions.anonymise([*contacts, customer_id])
        member_forgotten = await self._forget_member(customer_id)
        self._forget_pending(customer_id)
        profile_deleted = await self._forget_profile(customer_id)
        inbox = await self._inbox.forget(customer_id)
        replies = await self._idempotency.forget_scope(f"user:{customer_id}")
        await self._flush_events()
        events = await self._events.anonymise(customer_id)
        await self._accounts.erase(customer_id)
        self._forget_value(customer_id)  # after the tombstone: a history read from now on finds no purchase
        if self._forget_decisions is not None:
            await self._forget_decisions(customer_id)
        done = Erasure(customer_id, len(cancelled), blanked, anonymised, events, inbox, replies, member_forgotten,
                       profile_deleted)
        await self._audit.record(actor, "customer.erase", customer_id, **msgspec.structs.asdict(done))
        return done
