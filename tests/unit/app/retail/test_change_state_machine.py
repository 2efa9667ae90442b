"""The retail state machine with order changes: random sequences of search / accept / pay / webhook / cancel /
expire, plus change requests (another flight, another cabin, services added or removed), confirms (paid,
declined, pending, or nothing owed) and their expiry. After every step the inventory held equals the live
orders' items plus what their pending changes add, in memory and on a fresh load from SQLite."""

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from adapters.payments.simulator import PENDING_CARD
from adapters.sqlite.orders import SqliteOrderStore
from app.retail.changes import ChangeRequestBody, NewSlice, SliceChange
from app.retail.offers import SearchQuery
from app.retail.orders import PaymentEvent
from state.catalog import Cabin, Flight
from state.orders import LIVE
from tests.integration.retail.helpers import DAY, DECLINED_CARD, PAID_CARD, departure_date
from tests.unit.app.retail.test_retail_state_machine import OWNER, Retail

SERVICES = ["bag-23kg", "lounge-pass", "meal-hot", "fasttrack"]


class RetailWithChanges(Retail):
    def __init__(self) -> None:
        super().__init__()
        noon = (int(self.clock.now() // DAY) + 4) * DAY + 12 * 3600
        self.other = Flight(id="CT105-test", airline="CT", number="CT105", origin="LIS", destination="BCN",
                            departure_at=noon, arrival_at=noon + 7_500,
                            cabins={"economy": Cabin(3, 6_000), "premium": Cabin(2, 30_000)})
        self.run(self.platform.catalog.put_flights("test", [self.other], audit=False))
        self.change_offers: list[tuple[str, str]] = []  # (order id, change offer id)

    @initialize()
    def paid_orders(self):
        """Two paid orders to change from the first step (the other rules rarely pay for one soon)."""
        self.buy(1, "premium")
        self.buy(2, "flight_only")

    @rule(passengers=st.integers(1, 2), bundle=st.sampled_from(["flight_only", "comfort", "premium"]))
    def buy(self, passengers, bundle):
        """Search, accept and pay in one step: changes need paid orders, which the other rules rarely make."""
        found, _ = self.run(self.platform.offers.search(
            SearchQuery("LIS", "BCN", departure_date(self.clock), passengers, "economy", "economy"), OWNER,
            is_guest=False))
        offer = next((o for o in found if o.bundle == bundle), None)
        order = self.attempt(self.platform.orders.accept(offer.id, OWNER)) if offer else None
        if order is not None:
            self.orders.append(order.id)
            self.attempt(self.platform.orders.pay(order.id, OWNER, PAID_CARD))

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000), days=st.sampled_from([3, 4]),
          cabin=st.sampled_from([None, "economy", "premium"]), flight=st.booleans(),
          add=st.lists(st.sampled_from(SERVICES), max_size=2), remove=st.lists(st.sampled_from(SERVICES), max_size=1))
    def request_change(self, pick, days, cabin, flight, add, remove):
        order = self.run(self.platform.order_store.fetch(self.orders[pick % len(self.orders)]))
        slices = [SliceChange([order.flight_id], NewSlice("LIS", "BCN", departure_date(self.clock, days), cabin))] \
            if flight else []
        change = self.attempt(self.platform.orders.request_change(order.id, OWNER, ChangeRequestBody(
            slices, add, remove)))
        if change is not None:
            assert 1 <= len(change.change_offers) <= 5
            self.change_offers += [(order.id, o.id) for o in change.change_offers]

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000), days=st.sampled_from([3, 4]), cabin=st.sampled_from([None, "premium"]),
          add=st.lists(st.sampled_from(SERVICES), max_size=2),
          card=st.sampled_from([None, PAID_CARD, DECLINED_CARD, PENDING_CARD]))
    def change_and_confirm(self, pick, days, cabin, add, card):
        """Ask and confirm at once, so that changes happen in short runs too."""
        before = len(self.change_offers)
        self.request_change(pick, days, cabin, bool(days == 4 or cabin), add, [])
        if len(self.change_offers) > before:
            self.confirm_change(before, card)

    @precondition(lambda self: self.change_offers)
    @rule(pick=st.integers(0, 10_000), card=st.sampled_from([None, PAID_CARD, DECLINED_CARD, PENDING_CARD]))
    def confirm_change(self, pick, card):
        order_id, offer_id = self.change_offers[pick % len(self.change_offers)]
        before = self.run(self.platform.order_store.fetch(order_id))
        after = self.attempt(self.platform.orders.confirm_change(order_id, offer_id, OWNER, card))
        now = self.run(self.platform.order_store.fetch(order_id))
        if after is None:  # refused or declined: the order is as it was
            assert now.version == before.version and now.items == before.items and now.state == before.state
        elif after.state != "PAYMENT_PENDING":
            assert now.version == before.version + 1

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10_000), approved=st.booleans())
    def webhook(self, pick, approved):
        order = self.run(self.platform.order_store.fetch(self.orders[pick % len(self.orders)]))
        if order.payment is not None:
            self.event += 1
            self.attempt(self.platform.orders.payment_webhook(PaymentEvent(
                f"evt_{self.event}", order.payment.id, order.id, "approved" if approved else "declined")))
            after = self.run(self.platform.order_store.fetch(order.id))
            if order.state == "PAYMENT_PENDING" and order.pending_change is not None:
                assert after.state == order.pending_change.previous_state and after.pending_change is None
                assert after.version == order.version + approved
            elif order.state == "PAYMENT_PENDING":
                assert after.state == ("FULFILLED" if approved else "CANCELLED")
            else:
                assert after.state == order.state

    @invariant()
    def inventory_matches_live_orders(self):
        store = self.platform.order_store
        expected: Counter[str] = Counter()
        stored = self.run(store.page(None, None, None, 10_000))
        assert {o.id: o for o in store.live()} == {o.id: o for o in stored if o.state in LIVE}
        for order in store.live():
            if order.state in LIVE:
                assert sum(i.kind == "Flight" for i in order.items) == 1  # one itinerary, never none
                extra = order.pending_change.added if order.pending_change else ()
                for item in (*order.items, *extra):
                    if item.resource is not None:
                        expected[item.resource] += item.quantity
        held = {k: v for k, v in store.held.items() if v}
        assert held == dict(expected)
        assert all(0 <= self.platform.catalog.available(resource) for resource in held)
        fresh = SqliteOrderStore(self.platform.records_db)
        self.run(fresh.load())
        assert {k: v for k, v in fresh.held.items() if v} == held


TestRetailWithChanges = RetailWithChanges.TestCase
TestRetailWithChanges.settings = settings(max_examples=25, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
