"""JSON bodies that are not valid text: invalid UTF-8 is 400 naming the offending byte's offset in the body (not
in the string it sits in), and a lone UTF-16 surrogate escape is 400 saying so (not "truncated")."""

from __future__ import annotations

import pytest

from app.main import PLATFORM


@pytest.fixture
async def partner(client) -> dict[str, str]:
    _, key = await client.app[PLATFORM].api_keys.create("crm", "partner")
    return {"X-Api-Key": key, "Content-Type": "application/json"}


async def error_of(client, path: str, body: bytes, headers: dict[str, str]) -> dict:
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_argument", error
    return error


@pytest.mark.parametrize("path", ["/v1/ltv/predict", "/v1/channels/ingest"])
async def test_invalid_utf8_names_its_offset_in_the_body(client, partner, path):
    body = b'{"customer_id": "c1", "platform": "abcdefgh\xff"}'
    if path == "/v1/channels/ingest":
        body = b'{"source": "web", "type": "click", "user_id": "u1", "category": "abcdefgh\xff"}'
    offset = body.index(b"\xff")
    error = await error_of(client, path, body, partner)
    assert error["message"].startswith("malformed JSON: invalid UTF-8"), error
    assert f"at byte {offset}" in error["message"], error
    # After an escape and multi-byte characters, the offset is still the body's.
    body = body.replace(b"abcdefgh", b"\\n\xc3\xa9\\u00e9 \xe2\x9c\x88")
    offset = body.index(b"\xff")
    error = await error_of(client, path, body, partner)
    assert f"at byte {offset}" in error["message"], error


@pytest.mark.parametrize("escape", ["\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800x", "x\\udbff"])
@pytest.mark.parametrize("path", ["/v1/ltv/predict", "/v1/admin/api-keys"])
async def test_a_lone_surrogate_escape_is_named(client, partner, admin_headers, path, escape):
    body = ('{"customer_id": "c1", "platform": "' + escape + '"}').encode()
    if path == "/v1/admin/api-keys":
        body = ('{"role": "partner", "name": "' + escape + '"}').encode()
    lone = escape.lstrip("x")[:6]
    headers = partner if path == "/v1/ltv/predict" else {**admin_headers, "Content-Type": "application/json"}
    error = await error_of(client, path, body, headers)
    message = error["message"]
    assert message.startswith("malformed JSON: "), error
    assert "truncated" not in message, error
    assert "lone UTF-16 surrogate" in message and lone in message, error
    assert f"at byte {body.index(lone.encode())}" in message, error


async def test_escaped_backslashes_and_real_pairs_are_no_surrogate_problem(client, admin_headers):
    headers = {**admin_headers, "Content-Type": "application/json"}
    # `\\ud800` is a backslash and "ud800"; `\ud83d\ude00` is one character (a pair): both are fine.
    for name in ('\\\\ud800', '\\ud83d\\ude00'):
        resp = await client.post("/v1/admin/api-keys", data=('{"role": "partner", "name": "' + name + '"}').encode(),
                                 headers=headers)
        assert resp.status == 201, await resp.text()
    # Malformed JSON that has no surrogate in it keeps msgspec's own message.
    error = await error_of(client, "/v1/admin/api-keys", b'{"role": "partner", "name": "\\\\ud800', headers)
    assert error["message"] == "malformed JSON: Input data was truncated", error
