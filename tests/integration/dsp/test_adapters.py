"""Each platform adapter reads its DSP's answers (no HTTP: make_bids on the bytes a DSP sends)."""

from __future__ import annotations

import json

import pytest

from adapters.http.dsp import DspSession, build_adapter
from app.config import DspPlatform
from app.dsp.ports import DspError
from tests.conftest import CONFORMANCE

REQUEST = {"id": "1234567890", "imp": [{"id": "102", "banner": {"w": 300, "h": 250}}]}


def adapter(kind: str):
    return build_adapter(DspPlatform(name=kind, url="http://127.0.0.1:1/bid", kind=kind), DspSession())  # type: ignore[arg-type]


def test_the_generic_adapter_reads_a_conformance_response():
    body = (CONFORMANCE / "openrtb" / "ortb26_resp_ex1_ad_on_win_notice.json").read_bytes()
    [bid] = adapter("openrtb").make_bids(REQUEST, 200, body)
    assert (bid.bid.id, bid.bid.impid, bid.bid.price, bid.currency) == ("1", "102", 9.43, "USD")
    assert bid.bid.nurl == "http://adserver.com/winnotice?impid=102" and bid.bid.adm is None


@pytest.mark.parametrize("status, body, code", [(500, b"", "http_status"), (200, b"{nope", "malformed_json"),
                                                (200, b'{"seatbid": []}', "invalid_response"),
                                                (200, b'{"id": "other"}', "invalid_response"),
                                                (200, b'{"id": "1234567890", "seatbid": [{"bid": [{"id": "1", '
                                                      b'"impid": "102", "price": -1}]}]}', "invalid_bid")])
def test_broken_answers_are_errors(status, body, code):
    with pytest.raises(DspError) as raised:
        adapter("openrtb").make_bids(REQUEST, status, body)
    assert raised.value.code == code


def test_a_bids_campaign_id_is_kept_and_a_numeric_one_read_as_text():
    def cid(value):
        body = {"id": "1234567890", "seatbid": [{"bid": [{"id": "1", "impid": "102", "price": 1.0, "cid": value}]}]}
        [bid] = adapter("openrtb").make_bids(REQUEST, 200, json.dumps(body).encode())
        return bid.bid.cid
    assert (cid("ttd-42"), cid(42), cid(None)) == ("ttd-42", "42", None)


def test_no_bids():
    assert adapter("openrtb").make_bids(REQUEST, 204, b"") == []
    assert adapter("openrtb").make_bids(REQUEST, 200, json.dumps({"id": "1234567890", "nbr": 2}).encode()) == []


def test_dv360_reads_micros():
    body = {"id": "1234567890", "seatbid": [{"bid": [
        {"id": "1", "impid": "102", "price": 0, "ext": {"google": {"max_cpm_micros": 2_500_000}}},
        {"id": "2", "impid": "102", "price": 1.5}]}]}
    bids = adapter("dv360").make_bids(REQUEST, 200, json.dumps(body).encode())
    assert [b.bid.price for b in bids] == [2.5, 1.5]
