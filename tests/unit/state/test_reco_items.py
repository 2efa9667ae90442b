"""Stored recommendation items load whatever the input limits of today say: a start must not stop on a row that
was valid when it was written."""

import msgspec
import pytest

from state.reco import RecoItem, decode_item, encode_item


def test_an_item_stored_before_the_limits_were_tightened_still_loads():
    body = '{"item_id": "dest-PDL\\n", "category": "destination", "created_at": 1.7e12}'  # ms, and a newline
    item = decode_item(body)
    assert (item.item_id, item.created_at, item.category) == ("dest-PDL\n", 1.7e12, "destination")
    assert decode_item(encode_item(item)) == item
    with pytest.raises(msgspec.ValidationError):  # as input, both are refused
        msgspec.json.decode(body, type=RecoItem)
