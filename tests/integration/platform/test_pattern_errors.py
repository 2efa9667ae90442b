"""A value that is not in the form a field takes is refused saying the form in words, never as the regular expression
that checks it (which tells a client nothing it can act on and shows how the server is built)."""

from __future__ import annotations

import pytest

CAMPAIGN = {"name": "Pattern test", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000,
            "creatives": [{"id": "c1", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}]}


@pytest.mark.parametrize("method, path, body, field, words", [
    ("POST", "/v1/admin/campaigns", {**CAMPAIGN, "id": "a b"}, "id", "of 1 to 64 letters, digits, '_' or '-'"),
    ("POST", "/v1/admin/campaigns", {**CAMPAIGN, "id": "x" * 65}, "id", "of 1 to 64 letters, digits, '_' or '-'"),
    ("POST", "/v1/accounts", {"email": "no-at-sign", "password": "long-enough-1"}, "email", "email address"),
    ("POST", "/v1/reco/items", [{"item_id": "a/b"}], "[0].item_id", "with no spaces, slashes or control characters"),
    ("GET", "/v1/admin/api-keys?after=!!!", None, "after", "next_cursor of a previous page"),
])
async def test_a_value_out_of_form_is_refused_in_words(client, admin_headers, method, path, body, field, words):
    resp = await client.request(method, path, json=body, headers=admin_headers)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_argument", error
    assert "regex" not in error["message"] and "(?" not in error["message"], error
    assert words in error["message"] and field in error["message"], error
    assert error["details"] == {"field": field}, error
