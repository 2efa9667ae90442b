"""Random sequences of search / accept / pay / decline / settle / cancel / expire, with the inventory
invariant checked after every step against memory and against a fresh load from SQLite."""

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from adapters.payments.simulator import PENDING_CARD
from adapters.sqlite.orders import SqliteOrderStore
from app.retail.offers import SearchQuery
from app.retail.orders import PaymentEvent
from state.orders import LIVE
from tests.integration.retail.helpers import DECLINED_CARD, PAID_CARD, departure_date, seed_catalog
from tests.unit.machines import PlatformMachine

OWNER = "user:shopper"


class Retail(PlatformMachine):
    def __init__(self) -> None:
        super().__init__()
        self.flight = self.run(seed_catalog(self.platform, self.clock, economy=8))
        self.offers: list[str] = []
        self.orders: list[str] = []
        self.event = 0

    @rule(passengers=st.integers(1, 4), segment=st.sampled_from(["economy", "premium", "corporate", "leisure"]))
    def search(self, passengers, segment):
        found, _ = self.run(self.platform.offers.search(
            SearchQuery("LIS", "BCN", departure_date(self.clock), passengers, "economy", segment), OWNER,
            is_guest=False))
        self.offers += [o.id for o in found]

    @precondition(lambda self: self.offers)
    @rule(pick=st.integers(0, 10_000))
    def accept(self, pick):
        order = self.attempt(self.platform.orders.accept(self.offers[pick % len(self.offers)], OWNER))
        if order is not None:
            self.orders.append(order.id)

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000), card=st.sampled_from([PAID_CARD, DECLINED_CARD, PENDING_CARD]))
    def pay(self, pick, card):
        self.attempt(self.platform.orders.pay(self.orders[pick % len(self.orders)], OWNER, card))

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000), approved=st.booleans())
    def webhook(self, pick, approved):
        order = self.run(self.platform.order_store.fetch(self.orders[pick % len(self.orders)]))
        if order.payment is not None:
            self.event += 1
            self.attempt(self.platform.orders.payment_webhook(PaymentEvent(
                f"evt_{self.event}", order.payment.id, order.id, "approved" if approved else "declined")))
            after = self.run(self.platform.order_store.fetch(order.id))
            if order.state == "PAYMENT_PENDING":  # settled: fulfilled, or cancelled with its hold released
                assert after.state == ("FULFILLED" if approved else "CANCELLED")
            else:  # nothing to settle: unchanged
                assert after.state == order.state

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000))
    def cancel(self, pick):
        order_id = self.orders[pick % len(self.orders)]
        quote = self.attempt(self.platform.orders.quote_cancellation(order_id, OWNER))
        if quote is not None:
            self.attempt(self.platform.orders.confirm_cancellation(order_id, quote.id, OWNER))

    @rule(seconds=st.sampled_from([1, 60, 899, 901, 1799, 1801, 4000]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)
        self.run(self.platform.sweep_retail_once())

    @invariant()
    def inventory_matches_live_orders(self):
        store = self.platform.order_store
        expected = Counter()
        stored = self.run(store.page(None, None, None, 10_000))
        # Memory holds exactly the live orders, each as stored.
        assert {o.id: o for o in store.live()} == {o.id: o for o in stored if o.state in LIVE}
        for order in store.live():
            if order.state in LIVE:
                for item in order.items:
                    if item.resource is not None:
                        expected[item.resource] += item.quantity
        held = {k: v for k, v in store.held.items() if v}
        assert held == dict(expected)
        catalog = self.platform.catalog
        assert all(0 <= catalog.available(resource) for resource in held)
        assert all(o.state != "EXPIRED" or o.payment is None or o.payment.status != "approved"
                   for o in stored)
        # What SQLite holds rebuilds to exactly the same inventory.
        fresh = SqliteOrderStore(self.platform.records_db)
        self.run(fresh.load())
        assert {k: v for k, v in fresh.held.items() if v} == held


TestRetailStateMachine = Retail.TestCase
TestRetailStateMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
