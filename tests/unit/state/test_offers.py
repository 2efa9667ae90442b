"""An offer made from a shared draft is written as the JSON of the whole offer (hypothesis)."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from state.offers import Conditions, Item, Offer, SharedDraft


@settings(max_examples=200, deadline=None)
@given(owner=st.text(max_size=40), created=st.floats(0, 4e9), ttl=st.floats(0, 1e6),
       state=st.sampled_from(["ACTIVE", "ACCEPTED", "EXPIRED", "CANCELLED"]))
def test_an_offer_made_from_a_shared_draft_is_the_json_of_the_whole_offer(owner, created, ttl, state):
    draft = Offer(id="drf_1", owner="", state="ACTIVE", created_at=0.0, expires_at=0.0, flight_id="CT1",
                  cabin="economy", passengers=2, segment="leisure", bundle="comfort",
                  items=(Item("Flight", "CT1", "CT1 LIS-BCN \"economy\"", 2, 10_000, 0, 20_000, "CT1/economy"),
                         Item("Bag", "bag", "Bag ✈", 2, 3_500, 25, 7_000)),
                  taxes_cents=1_000, booking_fee_cents=500, total_cents=28_500, currency="EUR",
                  conditions=Conditions(True, 100, True, 0), departure_at=9e5, discount_percent=12.5)
    offer = msgspec.structs.replace(draft, id="off_x", owner=owner, state=state, created_at=created,
                                    expires_at=created + ttl)
    assert SharedDraft(draft).offer_json(offer) == msgspec.json.encode(offer)
