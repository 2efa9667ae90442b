"""Random earns, redemptions, reversals (also of stars already spent) and expiry (hypothesis): a balance never
goes below zero, balance - debt always equals the sum of the ledger, and a reload from SQLite rebuilds both."""

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from adapters.sqlite.uow import SqliteUnitOfWork
from app.errors import DomainError
from app.loyalty.service import CATALOGUE, LoyaltyService
from tests.unit.machines import PlatformMachine

USERS = ["u1", "u2", "u3"]


class Ledger(PlatformMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loyalty = self.platform.loyalty
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

    @invariant()
    def balance_never_negative_and_balance_less_debt_is_the_sum_of_the_ledger(self):
        fresh = LoyaltyService(self.platform.config.loyalty, self.platform.loyalty_store, self.clock, lambda *a: None,
                               self.platform.audit, SqliteUnitOfWork(self.platform.records_db, self.platform.pii),
                               self.platform.bus.publish)
        self.run(fresh.load())
        for user in USERS:
            try:
                live = self.loyalty.balance(user)
            except DomainError:
                continue
            debt = self.loyalty.debt(user)
            entries = self.loyalty.ledger(user)
            assert live["balance"] >= 0 and debt >= 0 and min(live["balance"], debt) == 0
            assert live["balance"] - debt == sum(e.stars for e in entries)
            account = self.loyalty._accounts[user]
            assert sum(left for _, left, _ in account.lots) == live["balance"]  # expiry never takes more
            rebuilt = msgspec.structs.replace(account)
            self.loyalty._rehold(rebuilt)  # the tier held is the one the standing purchases reached
            assert (rebuilt.held_tier, rebuilt.held_until) == (account.held_tier, account.held_until)
            assert fresh.balance(user) == live and fresh.debt(user) == debt  # SQLite replays to the same state
            assert [e.id for e in fresh.ledger(user)] == [e.id for e in entries]


TestLedger = Ledger.TestCase
TestLedger.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])
