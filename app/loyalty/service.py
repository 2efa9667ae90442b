"""Loyalty: stars earned and spent on an append-only ledger; tiers from qualifying stars.

Tiers: Green; Gold from `loyalty.gold_stars` (500) and Reserve from `loyalty.reserve_stars`
(2,500) qualifying stars in a rolling 12 months; a tier reached is kept for 12 months.
Earn: stars = ceil(ceil(amount_cents / 100) × rate), rate = (tier multiplier 1.0 / 1.2 / 1.7
+ active promotions' bonus + the channel's bonus) × 2 for a referral × 1.2 for a digital
purchase, computed in exact decimals. Redemptions, reversals and expiry take stars from the
oldest lots first. Stars earned as Green expire at the end of the sixth month after the month
they were earned.

A balance never goes below zero: a debit (in practice a reversal of stars already spent) takes
what is left and the rest becomes the member's debt, which later earns pay before the balance
grows. So balance - debt is the sum of the member's ledger entries, and one of the two is 0.
A reversed purchase stops counting toward tiers, and so does a tier only it reached.

Memory holds members' states (app/loyalty/accounts.py), not their entries: a ledger page is read from the store,
and the state is stored with each entry appended, so a start reads states, not history. At most
`loyalty.max_accounts_in_memory` states are held (an LRU); another member's is read back from the store when a
decision or a read needs it. Transactions earned and reversed lately are remembered (an LRU each); for the others
the ledger's row by transaction id decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import numpy as np

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleViolation
from app.eventlog import written_behind
from app.loyalty.accounts import TIERS, Holds, TierRules, standing
from app.loyalty.events import RewardSignalled, StarsEarned, StarsReversed
from app.loyalty.states import PAGE, MemberStates
from app.persist import atomically, commit_or_undo
from app.runtime.clock import Clock
from app.runtime.locks import KeyedLocks
from app.runtime.lru import LRU
from state.loyalty import LedgerEntry, LoyaltyAccount, Member, Promotion
from state.ports import LoyaltyStore, UnitOfWork, WriteConflict

log = logging.getLogger("contrail.loyalty")
_UNREAD: Any = object()  # a member whose details memory does not hold (None: held, and they have none)

MULTIPLIER = {"Green": Decimal("1.0"), "Gold": Decimal("1.2"), "Reserve": Decimal("1.7")}
BIRTHDAY_WINDOW_DAYS = {"Green": 1, "Gold": 7, "Reserve": 30}
CATALOGUE = {25: 80, 60: 200, 100: 350, 200: 650, 300: 800, 400: 1_500, 500: 2_500}  # stars -> value in cents
GOLD_REWARD = 500  # the reward only Gold and Reserve members may take
SIGNALS = {"clicked": 1.0, "redeemed": 2.0, "ignored": -0.1}
CHANNEL_CODES = ("in_store", "push", "in_app", "sms", "email", "web", "paid_media")
MAX_ATTEMPTS = 10  # decisions on a member's stars retried after another writer's append, before a 409

T = TypeVar("T")


class _Stale(Exception):
    """Another writer appended to this member's ledger first: nothing was written; catch up and decide again."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id


@dataclass(frozen=True)
class EarnResult:
    transaction_id: str
    stars_earned: int
    balance: int
    tier: str
    tier_changed: bool
    replayed: bool = False
    debt_paid: int = 0          # of stars_earned, what went to the member's debt instead of the balance
    debt_stars: int = 0         # the debt left after this earn


def green_expiry(at: float, months: int) -> float:
    """00:00 UTC on the first day of the (months + 1)th month after the month of `at`."""
    t = time.gmtime(at)
    month = t.tm_mon + months + 1
    year = t.tm_year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return float(_timegm(year, month))


def _timegm(year: int, month: int, day: int = 1) -> int:
    import calendar
    return calendar.timegm((year, month, day, 0, 0, 0))


class LoyaltyService:
    def __init__(self, config, store: LoyaltyStore, clock: Clock, log_event, audit: AuditTrail, uow: UnitOfWork,
                 publish: Callable[[object], Awaitable[None]], metrics=None,
                 log_kept: Callable[[str, Any], Awaitable[None]] | None = None) -> None:
        """`log_kept`: logs an event and returns once it is written (EventLog.log_kept), for reward signals: an
        acknowledged signal then counts in the campaign reports whatever becomes of the process."""
        self._log_kept = log_kept or written_behind(log_event)
        self._publish = publish
        self._config = config
        self._store = store
        self._uow = uow
        self._clock = clock
        self._log_event = log_event
        self._audit = audit
        self.rules = TierRules(config.gold_stars, config.reserve_stars)
        self._states = MemberStates(store, self.rules, config.max_accounts_in_memory, self._remember)
        # Members' details (birthday, contact, preferred channel) as the accounts are: the most recently used, None
        # for a user known to have none; another's is read from the store when needed (member, hold).
        self.details: LRU[str, Member | None] = LRU(config.max_accounts_in_memory, "loyalty_member_details")
        self._forgotten = 0  # erasures so far: a read that an erasure overtook holds nothing
        self._promotions: dict[str, Promotion] = {}
        # Transactions earned and reversed lately -> their entry; the ledger decides for the others (read by
        # transaction id). The ones being committed wait in _earning / _reversing, so concurrent replays wait too.
        self.earned: LRU[str, LedgerEntry] = LRU(config.transactions_in_memory, "loyalty_earned")
        self.reversals: LRU[str, LedgerEntry] = LRU(config.transactions_in_memory, "loyalty_reversed")
        self._earning: dict[str, asyncio.Future[LedgerEntry]] = {}
        self._reversing: dict[str, asyncio.Future[LedgerEntry]] = {}
        self._locks = KeyedLocks()  # by member: see _member

    @property
    def accounts(self) -> LRU[str, LoyaltyAccount]:
        """The accounts held (an LRU)."""
        return self._states.accounts

    @property
    def loaded(self) -> dict[str, int]:
        """What the last start read: states, entries replayed after them, members rebuilt from their ledger."""
        return self._states.loaded

    def members_known(self) -> int:
        """Members with an account, held or not (their ids' hashes: 8 bytes each)."""
        return len(self._states.ids)

    async def load(self) -> None:
        """Promotions (read in pages and held whole), then the members' states (MemberStates.load); members' details
        are read as they are needed."""
        await self._store.prepare()
        self._promotions = {p.id: p for p in await self._promotions_stored()}
        await self._states.load()

    async def _promotions_stored(self) -> list[Promotion]:
        found: list[Promotion] = []
        while page := await self._store.promotions(found[-1].id if found else None, PAGE):
            found += page
        return found

    def _remember(self, entry: LedgerEntry) -> None:
        """Remember the transaction of an entry another writer appended as a recent one."""
        if entry.kind == "earn" and entry.transaction_id:
            self.earned.put(entry.transaction_id, entry)
        elif entry.kind == "reverse" and entry.transaction_id:
            self.reversals.put(entry.transaction_id, entry)

    async def hold(self, user_id: str) -> bool:
        """Hold the member's account and details (read back if memory let them go), so that the reads after it
        (balance, debt, tier, last activity, birthday) answer with no await in between; whether they have one."""
        await self.member(user_id)
        return await self._states.held(user_id) is not None

    async def refresh(self, kind: str, ids: list[str]) -> None:
        """Another node changed these members (their ledger or details) or promotions: read them back."""
        if kind == "promotion":
            self._promotions = {p.id: p for p in await self._promotions_stored()}
            return
        for user_id in ids:
            await self._states.catch_up(user_id)
            self.details.pop(user_id)  # read again when next needed

    @contextlib.asynccontextmanager
    async def _member(self, user_id: str) -> AsyncIterator[None]:
        """One decision on a member's stars at a time on this node, from reading the balance to its commit (so
        no undo of a failed write can drop another's); a lock exists only while a decision waits or runs."""
        async with self._locks.hold(user_id):
            yield

    async def _decide(self, user_id: str, attempt: Callable[[bool], Awaitable[T]]) -> T:
        """Run a decision on a member's stars; when another node appended to their ledger first, catch up and
        decide again on what is now true. `attempt(unexplained)`: True when the last attempt was refused and the
        member's ledger had no new entry to explain it (so its transaction was taken: ask the ledger)."""
        async with self._member(user_id):
            unexplained = False
            for tries in range(MAX_ATTEMPTS):
                try:
                    return await attempt(unexplained)
                except _Stale:
                    # A random pause, twice as long at most with each try (up to 50 ms): a node racing another's
                    # stream of writes to the same member gets its turn, at the latest once the stream is through.
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** tries)))
                    unexplained = not await self._states.catch_up(user_id)
        raise Conflict("this member's stars kept changing meanwhile; try again")

    # ---- state ----
    def tier(self, account: LoyaltyAccount, at: float) -> str:
        return self.rules.tier(account, at)

    async def _earn_entry(self, transaction_id: str, ask_ledger: bool = True) -> LedgerEntry | None:
        """A transaction's earn entry: one being committed (awaited), a recent one, else read from the ledger."""
        pending = self._earning.get(transaction_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _Stale:
                pass  # that attempt was refused (another writer's append): as if there had been none
        entry = self.earned.get(transaction_id)
        if entry is None and ask_ledger:
            entry = await self._store.transaction("earn", transaction_id)
            if entry is not None:
                self.earned.put(transaction_id, entry)
        return entry

    async def _reversal_entry(self, transaction_id: str, ask_ledger: bool = True) -> LedgerEntry | None:
        """A transaction's reversal entry, the same way."""
        pending = self._reversing.get(transaction_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _Stale:
                pass
        entry = self.reversals.get(transaction_id)
        if entry is None and ask_ledger:
            entry = await self._store.transaction("reverse", transaction_id)
            if entry is not None:
                self.reversals.put(transaction_id, entry)
        return entry

    async def _append(self, account: LoyaltyAccount, entry: LedgerEntry, holds: Holds | None = None) -> None:
        """Apply in memory, then commit as the member's next entry with the state it leaves; restore the account if
        the commit fails, and raise _Stale if another writer appended to the member's ledger first."""
        snapshot = msgspec.structs.replace(account)
        seq = account.seq + 1
        self.rules.apply(account, entry, holds)

        def undo() -> None:
            self._states.accounts.put(account.user_id, snapshot)
        tx = self._uow.begin()
        tx.loyalty.append(entry, seq)
        tx.loyalty.save_account(account)
        try:
            await commit_or_undo(tx.commit(), undo)
        except WriteConflict:
            raise _Stale(account.user_id) from None
        self._states.committed(account)  # held again if memory let it go meanwhile

    # ---- earning ----
    def rate(self, tier: str, channel: str, at: float) -> Decimal:
        bonus = sum((Decimal(repr(p.bonus_rate)) for p in self._promotions.values()
                     if p.starts_at <= at < p.ends_at and (not p.channels or channel in p.channels)), Decimal(0))
        channel_bonus = Decimal(repr(self._config.channel_bonus.get(channel, 0.0)))
        return MULTIPLIER[tier] + bonus + channel_bonus

    async def earn(self, user_id: str, amount_cents: int, channel: str, transaction_id: str, *,
                   is_referral: bool = False, is_digital: bool = False, qualifying: bool = True,
                   fixed_stars: int | None = None) -> EarnResult:
        """Earn stars for a purchase, once per transaction_id (a replay returns the first result)."""
        _check_id("user_id", user_id)
        _check_id("transaction_id", transaction_id)
        if not 0 <= amount_cents <= 10**10:
            raise InvalidInput("amount_cents must be 0 to 10,000,000,000")
        # Memory, else the ledger, before taking the member's turn: a retry after another node's append then
        # decides with no read in between (unless nothing explains why it was refused).
        known = await self._earn_entry(transaction_id)
        if known is not None:
            return _replayed(known, user_id)
        return await self._decide(user_id, lambda unexplained: self._earn(
            user_id, amount_cents, channel, transaction_id, is_referral, is_digital, qualifying, fixed_stars,
            unexplained))

    async def _earn(self, user_id: str, amount_cents: int, channel: str, transaction_id: str, is_referral: bool,
                    is_digital: bool, qualifying: bool, fixed_stars: int | None, ask_ledger: bool) -> EarnResult:
        known = await self._earn_entry(transaction_id, ask_ledger)
        if known is not None:
            return _replayed(known, user_id)
        entry_id = await self._store.new_id()
        account = await self._states.held(user_id, create=True)  # the last await: none between deciding and applying
        assert account is not None
        if transaction_id in self._earning or transaction_id in self.earned:  # being earned, or earned, meanwhile
            return await self._earn(user_id, amount_cents, channel, transaction_id, is_referral, is_digital,
                                    qualifying, fixed_stars, False)
        now = self._clock.now()
        before = self.tier(account, now)
        if fixed_stars is None:
            rate = self.rate(before, channel, now) * (2 if is_referral else 1) * (Decimal("1.2") if is_digital else 1)
            stars = math.ceil(math.ceil(Decimal(amount_cents) / 100) * rate)
        else:
            rate, stars = Decimal(0), fixed_stars
        pending: asyncio.Future[LedgerEntry] = asyncio.get_running_loop().create_future()
        self._earning[transaction_id] = pending  # concurrent replays wait for this one's commit
        # Earning only ever raises the tier: the rolling tier with these stars, or the one held already.
        q_after = self.rules.qualifying(account, now) + (stars if qualifying else 0)
        after = max(self.rules.rolling(q_after), before, key=TIERS.index)
        # The result goes in the entry, so a replay after a restart answers exactly the same.
        paid = min(stars, account.debt)  # apply() pays a debt before the balance grows
        details: dict[str, str | int | float | bool] = {
            "rate": str(rate), "channel": channel, "amount_cents": amount_cents, "referral": is_referral,
            "digital": is_digital, "balance_after": account.balance + stars - paid,
            "tier_after": after, "tier_changed": after != before}
        if account.debt:
            details.update(debt_paid=paid, debt_after=account.debt - paid)
        entry = LedgerEntry(entry_id, user_id, "earn", stars, now, transaction_id, qualifying,
                            green_expiry(now, self._config.green_expiry_months) if before == "Green" else None,
                            details)
        try:
            await self._append(account, entry)
        except BaseException as exc:
            if not pending.done():
                pending.set_exception(exc)
                pending.exception()  # retrieved: replays that were waiting see it
            raise
        else:
            self.earned.put(transaction_id, entry)
            pending.set_result(entry)
        finally:
            del self._earning[transaction_id]
        self._log_event("StarsEarned", {"user_id": user_id, "transaction_id": transaction_id, "stars": stars,
                                        "tier": after, "tier_changed": after != before})
        await self._publish(StarsEarned(user_id, transaction_id, stars, after, after != before, now))
        return _earn_result(entry)

    async def reverse(self, transaction_id: str, reason: str = "refund") -> LedgerEntry:
        """Take back what an earn transaction gave (`reason`: a refund, or the order it was for changed and earns
        anew); a repeat returns the first reversal."""
        _check_id("transaction_id", transaction_id)
        recent = transaction_id in self._earning or transaction_id in self.earned
        earned = await self._earn_entry(transaction_id)
        if earned is None:
            raise NotFound(f"no earn transaction {transaction_id}")
        if not recent:  # read from the ledger: earned through another node, perhaps not heard of yet
            await self._states.catch_up(earned.user_id)
        known = await self._reversal_entry(transaction_id)
        if known is not None:
            return known
        return await self._decide(earned.user_id, lambda unexplained: self._reverse(earned, unexplained, reason))

    async def _reverse(self, earned: LedgerEntry, ask_ledger: bool, reason: str) -> LedgerEntry:
        transaction_id = earned.transaction_id
        assert transaction_id is not None
        known = await self._reversal_entry(transaction_id, ask_ledger)
        if known is not None:
            return known
        entry_id = await self._store.new_id()
        account = await self._states.held(earned.user_id, create=True)
        assert account is not None
        seq = account.seq + 1
        # The tiers held once it is reversed are those the purchases still standing reach, read from the ledger.
        holds = self.rules.holds(standing(await self._store.purchases(earned.user_id, seq), without=transaction_id))
        if transaction_id in self._reversing or transaction_id in self.reversals:  # reversed meanwhile
            return await self._reverse(earned, False, reason)
        if self._states.accounts.peek(earned.user_id) is not account or account.seq + 1 != seq:
            raise _Stale(earned.user_id)  # another node's entry applied, or the account let go, meanwhile: again
        # The entry takes back the whole earn; what the balance could not cover is the shortfall (apply() owes it).
        reversed_stars = min(earned.stars, account.balance)
        shortfall = earned.stars - reversed_stars
        entry = LedgerEntry(entry_id, earned.user_id, "reverse", -earned.stars, self._clock.now(),
                            transaction_id, details={"earn_entry": earned.id, "reason": reason,
                                                     "reversed": reversed_stars,
                                                     "shortfall": shortfall, "debt_after": account.debt + shortfall})
        pending: asyncio.Future[LedgerEntry] = asyncio.get_running_loop().create_future()
        self._reversing[transaction_id] = pending
        try:
            await self._append(account, entry, holds)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()
            raise
        else:
            self.reversals.put(transaction_id, entry)
            pending.set_result(entry)
        finally:
            del self._reversing[transaction_id]
        self._log_event("StarsReversed", {"user_id": earned.user_id, "transaction_id": transaction_id,
                                          "stars": earned.stars, "reversed": reversed_stars, "shortfall": shortfall})
        await self._publish(StarsReversed(earned.user_id, transaction_id, earned.stars, entry.at))
        return entry

    # ---- spending ----
    async def redeem(self, user_id: str, stars: int) -> LedgerEntry:
        _check_id("user_id", user_id)
        if stars not in CATALOGUE:
            raise InvalidInput(f"stars must be one of {', '.join(map(str, CATALOGUE))}")
        return await self._decide(user_id, lambda _: self._redeem(user_id, stars))

    async def _redeem(self, user_id: str, stars: int, caught_up: bool = False) -> LedgerEntry:
        entry_id = await self._store.new_id()
        account = await self._states.held(user_id) or LoyaltyAccount(user_id)  # a refused redeem creates no account
        now = self._clock.now()
        short = stars == GOLD_REWARD and self.tier(account, now) == "Green" or account.balance < stars
        if short and not caught_up:  # refuse only on what is stored: another node may have earned for them
            await self._states.catch_up(user_id)
            return await self._redeem(user_id, stars, caught_up=True)
        if stars == GOLD_REWARD and self.tier(account, now) == "Green":
            raise RuleViolation("the 500-star reward needs Gold or Reserve")
        if account.balance < stars:
            raise RuleViolation(f"not enough stars: {account.balance} available, {stars} needed",
                                {"balance": account.balance, "needed": stars})
        entry = LedgerEntry(entry_id, user_id, "redeem", -stars, now,
                            details={"value_cents": CATALOGUE[stars]})
        await self._append(account, entry)
        self._log_event("StarsRedeemed", {"user_id": user_id, "stars": stars, "value_cents": CATALOGUE[stars]})
        return entry

    async def expire_due(self) -> int:
        """Expire what is left of every lot past its expiry; returns the stars expired. The members due are read
        from their stored states (each stored with its lots' earliest expiry), a page at a time."""
        now = self._clock.now()
        total = 0
        after: str | None = None
        while due := await self._store.due(now, after, PAGE):
            for user_id in due:
                held = self._states.accounts.peek(user_id)
                if held is not None and not _due(held, now):  # stored by another node since this one heard
                    await self._states.catch_up(user_id)
                while (left := await self._decide(user_id, functools.partial(self._expire_lot, user_id, now))) \
                        is not None:
                    total += left
            after = due[-1]
        return total

    async def _expire_lot(self, user_id: str, now: float, unexplained: bool) -> int | None:
        """Expire one lot of a member past its expiry: the stars it took, or None when none is due."""
        new_id = await self._store.new_id()
        account = await self._states.held(user_id)
        if account is None:
            return None
        due = next((lot for lot in account.lots if lot.expires_at is not None and lot.expires_at <= now), None)
        if due is None:
            return None
        await self._append(account, LedgerEntry(new_id, user_id, "expire", -due.left, now,
                                                details={"lot": due.entry_id}))
        return due.left

    # ---- birthday, promotions, members ----
    def birthday_eligible(self, user_id: str, at: float) -> bool:
        """Whether a birthday reward is open; False for a member whose details are not held (hold first)."""
        member = self.details.peek(user_id)
        if member is None or not member.birthday:
            return False
        window = BIRTHDAY_WINDOW_DAYS[self.tier(self._states.accounts.peek(user_id) or LoyaltyAccount(user_id), at)]
        month, day = map(int, member.birthday.split("-"))
        year = time.gmtime(at).tm_year
        for y in (year - 1, year):
            try:
                start = _timegm(y, month, day)
            except ValueError:
                continue
            if start <= at < start + window * 86_400:
                return True
        return False

    async def birthday_reward(self, user_id: str) -> EarnResult:
        await self.hold(user_id)  # the window depends on the tier
        now = self._clock.now()
        if not self.birthday_eligible(user_id, now):
            raise RuleViolation("no birthday reward is open for this member now")
        return await self.earn(user_id, 0, "birthday", f"birthday:{user_id}:{time.gmtime(now).tm_year}",
                               qualifying=False, fixed_stars=self._config.birthday_stars)

    async def put_member(self, member: Member) -> Member:
        _check_id("user_id", member.user_id)
        if member.birthday is not None:
            try:
                month, day = map(int, member.birthday.split("-"))
                _timegm(2024, month, day)  # a leap year accepts 02-29
            except (ValueError, TypeError):
                raise InvalidInput("birthday must be MM-DD") from None
        if member.preferred_channel is not None and member.preferred_channel not in CHANNEL_CODES:
            raise InvalidInput(f"preferred_channel must be one of {', '.join(CHANNEL_CODES)}")
        async with atomically(self._uow) as tx:
            tx.loyalty.put_member(member)
        self.details.put(member.user_id, member)
        return member

    async def member(self, user_id: str) -> Member | None:
        """The member's details, held or read from the store (and held)."""
        held = self.details.get(user_id, _UNREAD)
        if held is not _UNREAD:
            return held
        forgotten = self._forgotten
        member = await self._store.member(user_id)
        # Nothing newer held meanwhile (put_member, another read), and no erasure overtook this read.
        if forgotten == self._forgotten and user_id not in self.details:
            self.details.put(user_id, member)
        return member

    async def forget_member(self, user_id: str) -> bool:
        """Delete a member's birthday and contact details (erasure); their stars and ledger stay."""
        self._forgotten += 1
        held = self.details.pop(user_id)
        forgotten = await self._store.forget_member(user_id)
        self.details.pop(user_id)  # read while the store forgot it
        return held is not None or forgotten

    async def put_promotion(self, actor: Principal | str, promotion: Promotion) -> Promotion:
        """Create or replace a promotion (recorded in the audit log as `actor`'s)."""
        if promotion.ends_at <= promotion.starts_at:
            raise InvalidInput("ends_at must be after starts_at")
        if not 0 < promotion.bonus_rate <= 10:
            raise InvalidInput("bonus_rate must be above 0 and at most 10")
        async with atomically(self._uow) as tx:
            tx.loyalty.put_promotion(promotion)
        self._promotions[promotion.id] = promotion
        await self._audit.record(actor, "promotion.put", promotion.id)
        return promotion

    def program(self) -> dict:
        """The programme's rules as members see them: tiers by qualifying stars, and what stars buy."""
        thresholds = {"Green": 0, "Gold": self._config.gold_stars, "Reserve": self._config.reserve_stars}
        return {"tiers": [{"name": t, "qualifying_stars": thresholds[t]} for t in TIERS],
                "rewards": [{"stars": stars, "value_cents": value,
                             "min_tier": "Gold" if stars == GOLD_REWARD else "Green"}
                            for stars, value in CATALOGUE.items()]}

    def promotions(self) -> list[Promotion]:
        return list(self._promotions.values())

    # ---- reading ----
    async def member_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` members whose user id starts with `prefix` (case-insensitive), in id order: from the stored
        states, which every member has."""
        return await self._store.member_ids(prefix, limit)

    def balance(self, user_id: str) -> dict:
        account = self._states.accounts.get(user_id)
        if account is None:
            raise NotFound(f"no loyalty account for {user_id}")
        now = self._clock.now()
        tier = self.tier(account, now)
        return {"user_id": user_id, "balance": account.balance, "tier": tier, "lifetime_stars": account.lifetime,
                "qualifying_stars_12m": self.rules.qualifying(account, now),
                "tier_kept_until": account.held_until if account.held_tier != "Green" else None,
                "birthday_eligible": self.birthday_eligible(user_id, now)}

    def debt(self, user_id: str) -> int:
        """Stars the member owes: reversals their balance could not cover; their next earns pay it."""
        account = self._states.accounts.get(user_id)
        if account is None:
            raise NotFound(f"no loyalty account for {user_id}")
        return account.debt

    async def ledger(self, user_id: str, after: object, limit: int) -> tuple[list[LedgerEntry], bool]:
        """A page of a member's ledger in its order, read from the store: up to `limit` entries after the entry whose
        id is `after` (None: from the first), and whether more follow."""
        if not await self.hold(user_id):
            raise NotFound(f"no loyalty account for {user_id}")
        if isinstance(after, float) and after.is_integer():
            after = int(after)
        if after is not None and not (isinstance(after, int) and not isinstance(after, bool) and 0 <= after < 2**63):
            raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
        page = await self._store.page(user_id, after, limit + 1)
        if page is None:
            raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
        return page[:limit], len(page) > limit

    def last_activity(self, user_id: str) -> float | None:
        """When the member's latest ledger entry was made (None for no member)."""
        account = self._states.accounts.get(user_id)
        return account.last_at if account is not None else None

    def features(self, user_id: str) -> np.ndarray | None:
        """The 8 loyalty numbers of the bidding feature layout, or None for a non-member. A member whose account memory
        let go is priced as a non-member while it is read back (in the background: a bid never waits for it)."""
        account = self._states.accounts.get(user_id)
        if account is None:
            self._states.read_back(user_id)
            return None
        now = self._clock.now()
        tier = self.tier(account, now)
        qualifying = self.rules.qualifying(account, now)
        progress = {"Green": qualifying / self._config.gold_stars,
                    "Gold": qualifying / self._config.reserve_stars, "Reserve": 1.0}[tier]
        recency = 0.0 if account.last_redeem_at is None else \
            1.0 / (1.0 + max(0.0, now - account.last_redeem_at) / 86_400 / 30)
        member = self.details.peek(user_id, _UNREAD)
        if member is _UNREAD:  # priced without their details while they are read back
            self._states.in_background(("details", user_id), lambda: self.member(user_id))
            member = None
        channel = member.preferred_channel if member else None
        code = (CHANNEL_CODES.index(channel) + 1) / len(CHANNEL_CODES) if channel else 0.0
        return np.array([TIERS.index(tier) / 2, account.balance / 5000, min(1.0, progress),
                         float(self.rate(tier, "web", now)) / 2, recency,
                         float(self.birthday_eligible(user_id, now)), code, account.lifetime / 50_000],
                        dtype=np.float32)

    async def reward_signal(self, offer_id: str, user_id: str, signal_type: str, tier: str | None, *,
                            signal_id: str | None = None, campaign_id: str | None = None, arm: str | None = None,
                            context: dict[str, str] | None = None, by_customer: bool = False) -> float:
        """The reward a member's response to an offer is worth; logged, and published as RewardSignalled for the
        campaigns' policies. A signal naming a campaign must carry its `signal_id` (its idempotency key: a policy
        learns from each id once); one without a campaign is logged as before and teaches no policy.
        `by_customer`: sent with the member's own token, which the campaign reports count once per offer, kind and
        day (app/campaigns/reports.py): a customer could otherwise send any number."""
        if signal_type not in SIGNALS:
            raise InvalidInput(f"signal_type must be one of {', '.join(SIGNALS)}")
        if campaign_id is not None and not signal_id:
            raise InvalidInput("signal_id is required with campaign_id: a policy learns from each signal id once, "
                               "so a retried signal is not counted twice", {"field": "signal_id"})
        reward = SIGNALS[signal_type]
        payload: dict[str, object] = {"offer_id": offer_id, "user_id": user_id, "signal_type": signal_type,
                                      "tier": tier, "reward": reward}
        for key, value in (("signal_id", signal_id), ("campaign_id", campaign_id), ("arm", arm)):
            if value is not None:
                payload[key] = value
        if by_customer:
            payload["sender"] = "customer"
        await self._log_kept("RewardSignal", payload)
        await self._publish(RewardSignalled(signal_id, user_id, offer_id, signal_type, reward, tier, campaign_id,
                                            arm, dict(context or {}), self._clock.now()))
        return reward


def _replayed(earned: LedgerEntry, user_id: str) -> EarnResult:
    """The first result of a transaction earned already, for the member who earned it."""
    if earned.user_id != user_id:
        raise RuleViolation(f"transaction {earned.transaction_id} was earned by another member")
    return _earn_result(earned, replayed=True)


def _earn_result(entry: LedgerEntry, replayed: bool = False) -> EarnResult:
    d = entry.details
    return EarnResult(entry.transaction_id or "", entry.stars, int(d.get("balance_after", 0)),
                      str(d.get("tier_after", "Green")), bool(d.get("tier_changed", False)), replayed,
                      int(d.get("debt_paid", 0)), int(d.get("debt_after", 0)))


def _due(account: LoyaltyAccount | None, now: float) -> bool:
    """Whether a lot of the member's is past its expiry."""
    return account is not None and any(lot.expires_at is not None and lot.expires_at <= now for lot in account.lots)


def _check_id(name: str, value: str) -> None:
    if not value or len(value) > 128:
        raise InvalidInput(f"{name} must be 1 to 128 characters")


def owner_or_staff(principal, user_id: str) -> None:
    """Customers see and spend only their own stars; admins and partner systems any member's."""
    if principal.role in ("admin", "partner"):
        return
    if principal.role == "customer" and principal.id == user_id:
        return
    raise Forbidden("customers can only see and use their own loyalty account") if principal.role == "customer" \
        else Forbidden("needs a customer token for this member, or an admin or partner key")
