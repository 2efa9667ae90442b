"""The OpenRTB 2.6 models on their own: the conformance requests decode and pass every rule, the conformance
responses round-trip, a wrongly typed value is an invalid field."""

import json

import msgspec
import pytest

from app.bidding.openrtb import InvalidBidRequest, decode_request
from tests.conftest import CONFORMANCE
from tests.integration.bidding.helpers import REQUESTS, VIDEO, bid_request


def test_conformance_data_is_present():
    assert len(REQUESTS) >= 7, f"OpenRTB conformance requests missing under {CONFORMANCE}"


def test_response_model_round_trips_the_conformance_responses():
    from app.bidding.openrtb import BidResponse
    for path in sorted((CONFORMANCE / "openrtb").glob("ortb26_resp_*.json")):
        decoded = msgspec.json.decode(path.read_bytes(), type=BidResponse)
        assert decoded.id and decoded.seatbid


def test_a_wrongly_typed_value_is_still_invalid_field():
    with pytest.raises(InvalidBidRequest) as err:
        decode_request(json.dumps(bid_request({"video": {**VIDEO, "w": "640"}})))
    assert err.value.reason == "invalid_field"


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_every_conformance_request_passes_every_rule(path):
    decode_request(path.read_bytes())
