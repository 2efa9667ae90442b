"""A member's state from their ledger entries: the same code applies an entry live, after another node's append and
at a start. Pure: no I/O, no clock.

Tiers: Green; Gold from `loyalty.gold_stars` and Reserve from `loyalty.reserve_stars` qualifying stars in a rolling
12 months; a tier reached by a purchase is kept 12 months. So an account keeps only the purchases of the year before
its latest entry (and a day more, for nodes whose clocks disagree a little): an older one counts toward no tier
again. A refund recounts the tiers held from every purchase still standing, which the caller reads from the ledger
(`holds`), so forgetting old purchases changes no tier.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from state.loyalty import LedgerEntry, Lot, LoyaltyAccount, Purchase

TIERS = ("Green", "Gold", "Reserve")
DAY = 86_400
YEAR = 365 * DAY
KEPT = YEAR + DAY  # how long a purchase stays in an account after it was made, by the times of later entries

Holds = tuple[str, float]  # (held_tier, held_until)


class TierRules:
    """The tier thresholds, and applying entries to accounts by them."""

    def __init__(self, gold_stars: int, reserve_stars: int) -> None:
        self.gold_stars = gold_stars
        self.reserve_stars = reserve_stars

    def rolling(self, qualifying: int) -> str:
        if qualifying >= self.reserve_stars:
            return "Reserve"
        return "Gold" if qualifying >= self.gold_stars else "Green"

    @staticmethod
    def qualifying(account: LoyaltyAccount, at: float) -> int:
        return sum(p.stars for p in account.qualifying if at - YEAR < p.at <= at)

    def tier(self, account: LoyaltyAccount, at: float) -> str:
        rolling = self.rolling(self.qualifying(account, at))
        held = account.held_tier if at < account.held_until else "Green"
        return max(rolling, held, key=TIERS.index)

    def hold(self, held: Holds, at: float, qualifying: int) -> Holds:
        """A tier reached by a purchase is kept 12 months; a lower one replaces it only once that is over."""
        reached = self.rolling(qualifying)
        tier, until = held
        if reached != "Green" and (TIERS.index(reached) >= TIERS.index(tier) or at >= until):
            return reached, at + YEAR
        return held

    def holds(self, purchases: Iterable[Purchase]) -> Holds:
        """The tier held after these purchases (oldest first), each reaching what the year before it adds up to: a
        refund must not leave the member a tier that only the refunded purchase reached."""
        held: Holds = ("Green", 0.0)
        window: collections.deque = collections.deque()
        total = 0
        for p in purchases:
            window.append(p)
            total += p.stars
            while window[0].at <= p.at - YEAR:
                total -= window.popleft().stars
            held = self.hold(held, p.at, total)
        return held

    def apply(self, account: LoyaltyAccount, entry: LedgerEntry, holds: Holds | None = None) -> None:
        """Apply the member's next ledger entry. A reversal's `holds` are the tiers the purchases still standing
        reached (`holds()` over them, read from the ledger); without them, over the purchases the account keeps.

        Entries hold what a transaction is worth; how much of it moved the balance and how much the
        debt follows from the account as it stood, so a replay in ledger order rebuilds both."""
        account.seq += 1
        account.last_at = entry.at
        if entry.kind == "earn":
            paid = min(entry.stars, account.debt)  # a debt is paid before the balance grows
            account.debt -= paid
            account.balance += entry.stars - paid
            account.lifetime += entry.stars
            if entry.stars > paid:
                account.lots += (Lot(entry.id, entry.stars - paid, entry.expires_at),)
            if entry.qualifying:
                account.qualifying += (Purchase(entry.at, entry.stars, entry.transaction_id),)
                account.held_tier, account.held_until = self.hold(
                    (account.held_tier, account.held_until), entry.at, self.qualifying(account, entry.at))
        else:
            # A debit takes what the balance has; the rest (only a reversal can exceed it) is owed.
            taken = min(-entry.stars, account.balance)
            account.balance -= taken
            account.debt += -entry.stars - taken
            if entry.kind == "reverse":
                account.lifetime += entry.stars
                account.qualifying = tuple(p for p in account.qualifying if p.transaction_id != entry.transaction_id)
                account.held_tier, account.held_until = holds if holds is not None else self.holds(account.qualifying)
                consume(account, taken, first=_entry_id(entry.details, "earn_entry"))
            elif entry.kind == "expire":
                consume(account, taken, first=_entry_id(entry.details, "lot"))
            else:  # redeem
                account.last_redeem_at = entry.at
                consume(account, taken)
        if account.qualifying and account.qualifying[0].at <= entry.at - KEPT:
            account.qualifying = tuple(p for p in account.qualifying if p.at > entry.at - KEPT)


def standing(entries: Iterable[LedgerEntry], without: str | None = None) -> list[Purchase]:
    """The qualifying purchases among a member's earns and reversals (in ledger order) that were not reversed, nor
    the transaction `without`."""
    purchases: list[Purchase] = []
    reversed_: set[str | None] = {without} if without is not None else set()
    for entry in entries:
        if entry.kind == "earn" and entry.qualifying:
            purchases.append(Purchase(entry.at, entry.stars, entry.transaction_id))
        elif entry.kind == "reverse":
            reversed_.add(entry.transaction_id)
    return [p for p in purchases if p.transaction_id not in reversed_]


def consume(account: LoyaltyAccount, stars: int, first: int | None = None) -> None:
    """Take stars from the lot earned by entry `first` (if it has any left), then from the oldest lots."""
    lots = account.lots
    left = [lot.left for lot in lots]
    order = sorted(range(len(lots)), key=lambda i: lots[i].entry_id != first) if first is not None else range(len(lots))
    for i in order:
        if stars <= 0:
            break
        taken = min(stars, left[i])
        left[i] -= taken
        stars -= taken
    account.lots = tuple(lot if n == lot.left else Lot(lot.entry_id, n, lot.expires_at)
                         for lot, n in zip(lots, left, strict=True) if n)


def _entry_id(details: dict[str, str | int | float | bool], key: str) -> int | None:
    """The ledger entry id a reversal or expiry names in `details` (its earn entry, its lot), if any."""
    value = details.get(key)
    return value if isinstance(value, int) else None
