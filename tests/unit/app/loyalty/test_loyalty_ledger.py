"""Random earns, redemptions, reversals (also of stars already spent) and expiry (hypothesis): a balance never
goes below zero, balance - debt always equals the sum of the ledger, and a start rebuilds the same state, from the
stored states and from the ledger alone; the state kept (last year's purchases only) answers as the whole history
does (a plain replay of every entry, nothing forgotten)."""

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from adapters.sqlite.uow import SqliteUnitOfWork
from app.loyalty.accounts import TierRules, consume, standing
from app.loyalty.service import CATALOGUE, LoyaltyService
from app.runtime.lru import LRU
from state.loyalty import LedgerEntry, Lot, LoyaltyAccount, Purchase
from tests.unit.machines import PlatformMachine

USERS = ["u1", "u2", "u3"]


def replay_whole(rules: TierRules, user_id: str, entries: list[LedgerEntry]) -> LoyaltyAccount:
    """The reference: every entry applied with every purchase kept, and a refund's tiers recounted from them."""
    account = LoyaltyAccount(user_id)
    for entry in entries:
        account.seq += 1
        account.last_at = entry.at
        if entry.kind == "earn":
            paid = min(entry.stars, account.debt)
            account.debt -= paid
            account.balance += entry.stars - paid
            account.lifetime += entry.stars
            if entry.stars > paid:
                account.lots += (Lot(entry.id, entry.stars - paid, entry.expires_at),)
            if entry.qualifying:
                account.qualifying += (Purchase(entry.at, entry.stars, entry.transaction_id),)
                at = entry.at
                total = sum(p.stars for p in account.qualifying if at - 365 * 86_400 < p.at <= at)
                account.held_tier, account.held_until = rules.hold((account.held_tier, account.held_until), at, total)
            continue
        taken = min(-entry.stars, account.balance)
        account.balance -= taken
        account.debt += -entry.stars - taken
        first = entry.details.get("earn_entry", entry.details.get("lot"))
        if entry.kind == "reverse":
            account.lifetime += entry.stars
            account.qualifying = tuple(p for p in account.qualifying if p.transaction_id != entry.transaction_id)
            account.held_tier, account.held_until = rules.holds(account.qualifying)
        elif entry.kind == "redeem":
            account.last_redeem_at = entry.at
        consume(account, taken, first if isinstance(first, int) else None)
    return account


class Ledger(PlatformMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loyalty = self.platform.loyalty
        self.store = self.platform.loyalty_store
        self.transactions: list[str] = []

    # Small earns as often as large ones, so reversals of spent stars leave debts and later earns pay them.
    @rule(user=st.sampled_from(USERS), amount=st.integers(0, 10_000) | st.integers(0, 300_000), referral=st.booleans(),
          digital=st.booleans(), replay=st.booleans())
    def earn(self, user, amount, referral, digital, replay):
        tx = self.transactions[-1] if replay and self.transactions else f"tx{len(self.transactions)}"
        self.transactions.append(tx)
        self.attempt(self.loyalty.earn(user, amount, "pos", tx, is_referral=referral, is_digital=digital))

    @rule(user=st.sampled_from(USERS), stars=st.sampled_from(sorted(CATALOGUE)))
    def redeem(self, user, stars):
        self.attempt(self.loyalty.redeem(user, stars))

    @rule(pick=st.integers(0, 1000))
    def reverse(self, pick):
        if self.transactions:
            self.attempt(self.loyalty.reverse(self.transactions[pick % len(self.transactions)]))

    @rule(days=st.sampled_from([1, 30, 95, 200, 370]))
    def time_passes(self, days):
        self.clock.advance(days * 86_400)
        self.attempt(self.loyalty.expire_due())

    def started(self) -> LoyaltyService:
        fresh = LoyaltyService(self.platform.config.loyalty, self.store, self.clock, lambda *a: None,
                               self.platform.audit, SqliteUnitOfWork(self.platform.records_db, self.platform.pii),
                               self.platform.bus.publish)
        self.run(fresh.load())
        return fresh

    @invariant()
    def balance_never_negative_and_balance_less_debt_is_the_sum_of_the_ledger(self):
        from_states = self.started()
        self.run(self.platform.records_db.write([("DELETE FROM loyalty_accounts", ())]))
        from_ledger = self.started()  # a database from before states were stored: rebuilt, and stored again
        members = [user for user in USERS if self.run(self.loyalty.hold(user))]  # read back if memory let it go
        assert from_ledger.loaded["states"] == 0 and from_ledger.loaded["rebuilt"] == len(members)
        now = self.clock.now()
        for user in members:
            assert self.run(self.loyalty.hold(user))
            live, debt = self.loyalty.balance(user), self.loyalty.debt(user)
            entries = self.run(self.store.page(user, None, 10_000))
            assert live["balance"] >= 0 and debt >= 0 and min(live["balance"], debt) == 0
            assert live["balance"] - debt == sum(e.stars for e in entries)
            account = self.loyalty.accounts.peek(user)
            assert account.seq == len(entries)
            assert sum(lot.left for lot in account.lots) == live["balance"]  # expiry never takes more
            # The tier held is the one the standing purchases reached, counted from the whole ledger.
            purchases = standing(self.run(self.store.purchases(user, account.seq + 1)))
            assert self.loyalty.rules.holds(purchases) == (account.held_tier, account.held_until)
            assert from_states.accounts.peek(user) == account  # the stored state is memory's
            assert from_ledger.accounts.peek(user) == account  # and the ledger rebuilds it
            assert self.run(self.store.account(user)) == account  # and stores it again
            whole = replay_whole(self.loyalty.rules, user, entries)
            kept = msgspec.structs.replace(account, qualifying=whole.qualifying)
            assert kept == whole  # the same state but for the purchases it has forgotten...
            assert self.loyalty.rules.tier(account, now) == self.loyalty.rules.tier(whole, now)  # ...which count for
            assert self.loyalty.rules.qualifying(account, now) == self.loyalty.rules.qualifying(whole, now)  # nothing


class LedgerHoldingOne(Ledger):
    """The same with memory holding one member's account: every decision on another reads theirs back."""

    def __init__(self) -> None:
        super().__init__()
        self.loyalty._states.accounts = LRU(1, "loyalty_accounts")


TestLedger = Ledger.TestCase
TestLedger.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])
TestLedgerHoldingOne = LedgerHoldingOne.TestCase
TestLedgerHoldingOne.settings = settings(max_examples=20, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
