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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import msgspec
import numpy as np

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleViolation
from app.loyalty.events import RewardSignalled, StarsEarned, StarsReversed
from app.persist import atomically, commit_or_undo
from app.runtime.clock import Clock
from state.loyalty import LedgerEntry, Member, Promotion
from state.ports import LoyaltyStore, UnitOfWork, WriteConflict

TIERS = ("Green", "Gold", "Reserve")
MULTIPLIER = {"Green": Decimal("1.0"), "Gold": Decimal("1.2"), "Reserve": Decimal("1.7")}
BIRTHDAY_WINDOW_DAYS = {"Green": 1, "Gold": 7, "Reserve": 30}
CATALOGUE = {25: 80, 60: 200, 100: 350, 200: 650, 300: 800, 400: 1_500, 500: 2_500}  # stars -> value in cents
GOLD_REWARD = 500  # the reward only Gold and Reserve members may take
SIGNALS = {"clicked": 1.0, "redeemed": 2.0, "ignored": -0.1}
CHANNEL_CODES = ("in_store", "push", "in_app", "sms", "email", "web", "paid_media")
YEAR = 365 * 86_400
MAX_ATTEMPTS = 10  # decisions on a member's stars retried after another writer's append, before a 409

T = TypeVar("T")


class _Stale(Exception):
    """Another writer appended to this member's ledger first: nothing was written; catch up and decide again."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id


class Account(msgspec.Struct, gc=False):
    """A member's state, derived from their ledger. Every field holds immutable values (tuples
    of tuples and frozen entries) and is replaced, never changed in place: a shallow copy is
    a snapshot, and the garbage collector never has to walk the accounts (one per member)."""

    user_id: str
    balance: int = 0            # never below 0
    debt: int = 0               # stars taken back that the balance could not cover; earns pay it first
    lifetime: int = 0
    lots: tuple = ()            # (earn entry id, stars remaining, expires_at), oldest first
    qualifying: tuple = ()      # (at, stars, transaction_id)
    held_tier: str = "Green"
    held_until: float = 0.0
    last_redeem_at: float | None = None
    entries: tuple = ()         # LedgerEntry, oldest first


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
                 publish: Callable[[object], Awaitable[None]], metrics=None) -> None:
        self._publish = publish
        self._config = config
        self._store = store
        self._uow = uow
        self._clock = clock
        self._log_event = log_event
        self._audit = audit
        self._accounts: dict[str, Account] = {}
        self._members: dict[str, Member] = {}
        self._promotions: dict[str, Promotion] = {}
        # transaction -> its earn (or reversal) entry, or the future of one being committed
        self._earned: dict[str, LedgerEntry | asyncio.Future[LedgerEntry]] = {}
        self._reversed: dict[str, LedgerEntry | asyncio.Future[LedgerEntry]] = {}
        self._locks: dict[str, list] = {}  # member -> [lock, decisions waiting or running]; see _member

    async def load(self) -> None:
        for member in await self._store.members():
            self._members[member.user_id] = member
        for promotion in await self._store.promotions():
            self._promotions[promotion.id] = promotion
        for entry in await self._store.entries():
            self._replay(self._account(entry.user_id), entry)

    def _replay(self, account: Account, entry: LedgerEntry) -> None:
        """Apply a stored entry (at start, or one another writer appended) and index its transaction."""
        self._apply(account, entry)
        if entry.kind == "earn" and entry.transaction_id:
            self._earned[entry.transaction_id] = entry
        elif entry.kind == "reverse" and entry.transaction_id:
            self._reversed[entry.transaction_id] = entry

    async def _catch_up(self, user_id: str) -> None:
        """Apply what other writers (other nodes) appended to a member's ledger since this node last did."""
        known = self._accounts.get(user_id)
        for seq, entry in await self._store.entries_after(user_id, len(known.entries) if known else 0):
            account = self._account(user_id)
            if seq == len(account.entries) + 1:  # not one of this node's, applied meanwhile
                self._replay(account, entry)

    async def refresh(self, kind: str, ids: list[str]) -> None:
        """Another node changed these members (their ledger or details) or promotions: read them back."""
        if kind == "promotion":
            self._promotions = {p.id: p for p in await self._store.promotions()}
            return
        for user_id in ids:
            await self._catch_up(user_id)
            member = await self._store.member(user_id)
            if member is not None:
                self._members[user_id] = member

    @contextlib.asynccontextmanager
    async def _member(self, user_id: str) -> AsyncIterator[None]:
        """One decision on a member's stars at a time on this node, from reading the balance to its commit (so
        no undo of a failed write can drop another's); a lock exists only while a decision waits or runs."""
        held = self._locks.get(user_id)
        if held is None:
            held = self._locks[user_id] = [asyncio.Lock(), 0]
        held[1] += 1
        try:
            async with held[0]:
                yield
        finally:
            held[1] -= 1
            if not held[1]:
                del self._locks[user_id]

    async def _decide(self, user_id: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a decision on a member's stars; when another node appended to their ledger first, catch up and
        decide again on what is now true."""
        async with self._member(user_id):
            for tries in range(MAX_ATTEMPTS):
                try:
                    return await attempt()
                except _Stale:
                    # A random pause, longer with each try: a node racing another's stream of writes to the
                    # same member gets its turn.
                    await asyncio.sleep(random.uniform(0, 0.002 * tries))
                    await self._catch_up(user_id)
        raise Conflict("this member's stars kept changing meanwhile; try again")

    # ---- state ----
    def _account(self, user_id: str) -> Account:
        account = self._accounts.get(user_id)
        if account is None:
            account = self._accounts[user_id] = Account(user_id)
        return account

    def _qualifying(self, account: Account, at: float) -> int:
        return sum(stars for when, stars, _ in account.qualifying if at - YEAR < when <= at)

    def _rolling_tier(self, qualifying: int) -> str:
        if qualifying >= self._config.reserve_stars:
            return "Reserve"
        return "Gold" if qualifying >= self._config.gold_stars else "Green"

    def tier(self, account: Account, at: float) -> str:
        rolling = self._rolling_tier(self._qualifying(account, at))
        held = account.held_tier if at < account.held_until else "Green"
        return max(rolling, held, key=TIERS.index)

    def _apply(self, account: Account, entry: LedgerEntry) -> None:
        """Apply one ledger entry to an account: the same code for live changes and the replay at start.

        Entries hold what a transaction is worth; how much of it moved the balance and how much the
        debt follows from the account as it stood, so a replay in ledger order rebuilds both."""
        account.entries += (entry,)
        if entry.kind == "earn":
            paid = min(entry.stars, account.debt)  # a debt is paid before the balance grows
            account.debt -= paid
            account.balance += entry.stars - paid
            account.lifetime += entry.stars
            if entry.stars > paid:
                account.lots += ((entry.id, entry.stars - paid, entry.expires_at),)
            if entry.qualifying:
                account.qualifying += ((entry.at, entry.stars, entry.transaction_id),)
                self._hold(account, entry.at, self._qualifying(account, entry.at))
            return
        # A debit takes what the balance has; the rest (only a reversal can exceed it) is owed.
        taken = min(-entry.stars, account.balance)
        account.balance -= taken
        account.debt += -entry.stars - taken
        if entry.kind == "reverse":
            account.lifetime += entry.stars
            account.qualifying = tuple(q for q in account.qualifying if q[2] != entry.transaction_id)
            self._rehold(account)
            self._consume(account, taken, first=_entry_id(entry.details, "earn_entry"))
        elif entry.kind == "expire":
            self._consume(account, taken, first=_entry_id(entry.details, "lot"))
        else:  # redeem
            account.last_redeem_at = entry.at
            self._consume(account, taken)

    def _hold(self, account: Account, at: float, qualifying: int) -> None:
        """A tier reached by a purchase is kept 12 months; a lower one replaces it only once that is over."""
        reached = self._rolling_tier(qualifying)
        if reached != "Green" and (TIERS.index(reached) >= TIERS.index(account.held_tier)
                                   or at >= account.held_until):
            account.held_tier, account.held_until = reached, at + YEAR

    def _rehold(self, account: Account) -> None:
        """The holds again from the purchases still standing (oldest first): a refund must not leave
        the member a tier that only the refunded purchase reached."""
        account.held_tier, account.held_until = "Green", 0.0
        window: collections.deque = collections.deque()
        total = 0
        for at, stars, _ in account.qualifying:
            window.append((at, stars))
            total += stars
            while window[0][0] <= at - YEAR:
                total -= window.popleft()[1]
            self._hold(account, at, total)

    @staticmethod
    def _consume(account: Account, stars: int, first: int | None = None) -> None:
        """Take stars from the lot earned by entry `first` (if it has any left), then from the oldest lots."""
        lots = [list(lot) for lot in account.lots]
        ordered = sorted(lots, key=lambda lot: lot[0] != first) if first is not None else lots
        for lot in ordered:
            if stars <= 0:
                break
            taken = min(stars, lot[1])
            lot[1] -= taken
            stars -= taken
        account.lots = tuple((entry_id, left, expires) for entry_id, left, expires in lots if left)

    async def _append(self, account: Account, entry: LedgerEntry) -> None:
        """Apply in memory, then commit as the member's next entry; restore the account if the commit fails,
        and raise _Stale if another writer appended to the member's ledger first."""
        snapshot = msgspec.structs.replace(account)
        seq = len(account.entries) + 1
        self._apply(account, entry)

        def undo() -> None:
            self._accounts[account.user_id] = snapshot
        tx = self._uow.begin()
        tx.loyalty.append(entry, seq)
        try:
            await commit_or_undo(tx.commit(), undo)
        except WriteConflict:
            raise _Stale(account.user_id) from None

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
        return await self._decide(user_id, lambda: self._earn(user_id, amount_cents, channel, transaction_id,
                                                              is_referral, is_digital, qualifying, fixed_stars))

    async def _earn(self, user_id: str, amount_cents: int, channel: str, transaction_id: str, is_referral: bool,
                    is_digital: bool, qualifying: bool, fixed_stars: int | None) -> EarnResult:
        _check_id("user_id", user_id)
        _check_id("transaction_id", transaction_id)
        if not 0 <= amount_cents <= 10**10:
            raise InvalidInput("amount_cents must be 0 to 10,000,000,000")
        known = self._earned.get(transaction_id)
        if known is not None:
            entry = await asyncio.shield(known) if isinstance(known, asyncio.Future) else known
            if entry.user_id != user_id:
                raise RuleViolation(f"transaction {transaction_id} was earned by another member")
            return _earn_result(entry, replayed=True)
        entry_id = await self._store.new_id()  # before reading the account: no await between deciding and applying
        known = self._earned.get(transaction_id)
        if known is not None:  # earned meanwhile
            return await self._earn(user_id, amount_cents, channel, transaction_id, is_referral, is_digital,
                                    qualifying, fixed_stars)
        account = self._account(user_id)
        now = self._clock.now()
        before = self.tier(account, now)
        if fixed_stars is None:
            rate = self.rate(before, channel, now) * (2 if is_referral else 1) * (Decimal("1.2") if is_digital else 1)
            stars = math.ceil(math.ceil(Decimal(amount_cents) / 100) * rate)
        else:
            rate, stars = Decimal(0), fixed_stars
        pending: asyncio.Future[LedgerEntry] = asyncio.get_running_loop().create_future()
        self._earned[transaction_id] = pending  # concurrent replays wait for this one's commit
        # Earning only ever raises the tier: the rolling tier with these stars, or the one held already.
        q_after = self._qualifying(account, now) + (stars if qualifying else 0)
        after = max(self._rolling_tier(q_after), before, key=TIERS.index)
        # The result goes in the entry, so a replay after a restart answers exactly the same.
        paid = min(stars, account.debt)  # _apply pays a debt before the balance grows
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
            self._earned.pop(transaction_id, None)
            if not pending.done():
                pending.set_exception(exc)
                pending.exception()  # retrieved: replays that were waiting see it
            raise
        self._earned[transaction_id] = entry
        pending.set_result(entry)
        self._log_event("StarsEarned", {"user_id": user_id, "transaction_id": transaction_id, "stars": stars,
                                        "tier": after, "tier_changed": after != before})
        await self._publish(StarsEarned(user_id, transaction_id, stars, after, after != before, now))
        return _earn_result(entry)

    async def reverse(self, transaction_id: str) -> LedgerEntry:
        """Take back what an earn transaction gave (a refund); a repeat returns the first reversal."""
        _check_id("transaction_id", transaction_id)
        earned = self._earned.get(transaction_id)
        if isinstance(earned, asyncio.Future):
            earned = await asyncio.shield(earned)
        if earned is not None:
            user_id = earned.user_id
        else:  # earned through another node, not heard of yet?
            found = await self._store.earner(transaction_id)
            if found is None:
                raise NotFound(f"no earn transaction {transaction_id}")
            user_id = found
            await self._catch_up(user_id)
        return await self._decide(user_id, lambda: self._reverse(transaction_id))

    async def _reverse(self, transaction_id: str) -> LedgerEntry:
        known = self._reversed.get(transaction_id)
        if known is not None:
            return await asyncio.shield(known) if isinstance(known, asyncio.Future) else known
        earned = self._earned.get(transaction_id)
        if isinstance(earned, asyncio.Future):
            earned = await asyncio.shield(earned)
            if transaction_id in self._reversed:
                return await self._reverse(transaction_id)
        if earned is None:
            raise NotFound(f"no earn transaction {transaction_id}")
        entry_id = await self._store.new_id()
        if transaction_id in self._reversed:  # reversed meanwhile
            return await self._reverse(transaction_id)
        account = self._account(earned.user_id)
        # The entry takes back the whole earn; what the balance could not cover is the shortfall (_apply owes it).
        reversed_stars = min(earned.stars, account.balance)
        shortfall = earned.stars - reversed_stars
        entry = LedgerEntry(entry_id, earned.user_id, "reverse", -earned.stars, self._clock.now(),
                            transaction_id, details={"earn_entry": earned.id, "reversed": reversed_stars,
                                                     "shortfall": shortfall, "debt_after": account.debt + shortfall})
        pending: asyncio.Future[LedgerEntry] = asyncio.get_running_loop().create_future()
        self._reversed[transaction_id] = pending
        try:
            await self._append(account, entry)
        except BaseException as exc:
            self._reversed.pop(transaction_id, None)
            pending.set_exception(exc)
            pending.exception()
            raise
        self._reversed[transaction_id] = entry
        pending.set_result(entry)
        self._log_event("StarsReversed", {"user_id": earned.user_id, "transaction_id": transaction_id,
                                          "stars": earned.stars, "reversed": reversed_stars, "shortfall": shortfall})
        await self._publish(StarsReversed(earned.user_id, transaction_id, earned.stars, entry.at))
        return entry

    # ---- spending ----
    async def redeem(self, user_id: str, stars: int) -> LedgerEntry:
        _check_id("user_id", user_id)
        if stars not in CATALOGUE:
            raise InvalidInput(f"stars must be one of {', '.join(map(str, CATALOGUE))}")
        return await self._decide(user_id, lambda: self._redeem(user_id, stars))

    async def _redeem(self, user_id: str, stars: int, caught_up: bool = False) -> LedgerEntry:
        entry_id = await self._store.new_id()
        account = self._accounts.get(user_id) or Account(user_id)  # a refused redeem creates no account
        now = self._clock.now()
        short = stars == GOLD_REWARD and self.tier(account, now) == "Green" or account.balance < stars
        if short and not caught_up:  # refuse only on what is stored: another node may have earned for them
            await self._catch_up(user_id)
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
        """Expire what is left of every lot past its expiry; returns the stars expired."""
        now = self._clock.now()
        total = 0
        for n, user_id in enumerate(list(self._accounts), 1):
            if n % 1_000 == 0:
                await asyncio.sleep(0)  # a pass over every member must not hold the loop
            while (left := await self._decide(user_id, functools.partial(self._expire_lot, user_id, now))) is not None:
                total += left
        return total

    async def _expire_lot(self, user_id: str, now: float) -> int | None:
        """Expire one lot of a member past its expiry: the stars it took, or None when none is due."""
        new_id = await self._store.new_id()
        account = self._accounts[user_id]
        due = next((lot for lot in account.lots if lot[2] is not None and lot[2] <= now), None)
        if due is None:
            return None
        entry_id, left, _ = due
        await self._append(account, LedgerEntry(new_id, user_id, "expire", -left, now, details={"lot": entry_id}))
        return left

    # ---- birthday, promotions, members ----
    def birthday_eligible(self, user_id: str, at: float) -> bool:
        member = self._members.get(user_id)
        if member is None or not member.birthday:
            return False
        window = BIRTHDAY_WINDOW_DAYS[self.tier(self._account(user_id), at)]
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
        self._members[member.user_id] = member
        return member

    def member(self, user_id: str) -> Member | None:
        return self._members.get(user_id)

    async def forget_member(self, user_id: str) -> bool:
        """Delete a member's birthday and contact details (erasure); their stars and ledger stay."""
        forgotten = await self._store.forget_member(user_id)
        return self._members.pop(user_id, None) is not None or forgotten

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
    def member_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` members whose user id starts with `prefix` (case-insensitive), in id order."""
        wanted = prefix.casefold()
        return sorted(u for u in self._accounts if u.casefold().startswith(wanted))[:limit]

    def balance(self, user_id: str) -> dict:
        account = self._accounts.get(user_id)
        if account is None:
            raise NotFound(f"no loyalty account for {user_id}")
        now = self._clock.now()
        tier = self.tier(account, now)
        return {"user_id": user_id, "balance": account.balance, "tier": tier, "lifetime_stars": account.lifetime,
                "qualifying_stars_12m": self._qualifying(account, now),
                "tier_kept_until": account.held_until if account.held_tier != "Green" else None,
                "birthday_eligible": self.birthday_eligible(user_id, now)}

    def debt(self, user_id: str) -> int:
        """Stars the member owes: reversals their balance could not cover; their next earns pay it."""
        account = self._accounts.get(user_id)
        if account is None:
            raise NotFound(f"no loyalty account for {user_id}")
        return account.debt

    def ledger(self, user_id: str) -> tuple[LedgerEntry, ...]:
        account = self._accounts.get(user_id)
        if account is None:
            raise NotFound(f"no loyalty account for {user_id}")
        return account.entries

    def features(self, user_id: str) -> np.ndarray | None:
        """The 8 loyalty numbers of the bidding feature layout, or None for a non-member."""
        account = self._accounts.get(user_id)
        if account is None:
            return None
        now = self._clock.now()
        tier = self.tier(account, now)
        qualifying = self._qualifying(account, now)
        progress = {"Green": qualifying / self._config.gold_stars,
                    "Gold": qualifying / self._config.reserve_stars, "Reserve": 1.0}[tier]
        recency = 0.0 if account.last_redeem_at is None else \
            1.0 / (1.0 + max(0.0, now - account.last_redeem_at) / 86_400 / 30)
        member = self._members.get(user_id)
        channel = member.preferred_channel if member else None
        code = (CHANNEL_CODES.index(channel) + 1) / len(CHANNEL_CODES) if channel else 0.0
        return np.array([TIERS.index(tier) / 2, account.balance / 5000, min(1.0, progress),
                         float(self.rate(tier, "web", now)) / 2, recency,
                         float(self.birthday_eligible(user_id, now)), code, account.lifetime / 50_000],
                        dtype=np.float32)

    async def reward_signal(self, offer_id: str, user_id: str, signal_type: str, tier: str | None, *,
                            signal_id: str | None = None, campaign_id: str | None = None, arm: str | None = None,
                            context: dict[str, str] | None = None) -> float:
        """The reward a member's response to an offer is worth; logged, and published as RewardSignalled for the
        campaigns' policies. A signal naming a campaign must carry its `signal_id` (its idempotency key: a policy
        learns from each id once); one without a campaign is logged as before and teaches no policy."""
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
        self._log_event("RewardSignal", payload)
        await self._publish(RewardSignalled(signal_id, user_id, offer_id, signal_type, reward, tier, campaign_id,
                                            arm, dict(context or {}), self._clock.now()))
        return reward


def _earn_result(entry: LedgerEntry, replayed: bool = False) -> EarnResult:
    d = entry.details
    return EarnResult(entry.transaction_id or "", entry.stars, int(d.get("balance_after", 0)),
                      str(d.get("tier_after", "Green")), bool(d.get("tier_changed", False)), replayed,
                      int(d.get("debt_paid", 0)), int(d.get("debt_after", 0)))


def _entry_id(details: dict[str, str | int | float | bool], key: str) -> int | None:
    """The ledger entry id a reversal or expiry names in `details` (its earn entry, its lot), if any."""
    value = details.get(key)
    return value if isinstance(value, int) else None


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
