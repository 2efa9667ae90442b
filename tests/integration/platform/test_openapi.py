from openapi_spec_validator import validate

from app.idempotency import MAX_KEY_LENGTH
from handlers.rest.common import CURSOR_PATTERN, spec_of

MUTATING = ("post", "put", "patch", "delete")


async def _spec(client) -> dict:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    return await resp.json()


def _operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            yield path, method, op


async def test_openapi_is_valid_3_1_and_covers_every_route(client):
    spec = await _spec(client)
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for route in client.app.router.routes():
        if route.method == "HEAD" or spec_of(route.handler) is None:
            continue
        path = route.resource.canonical
        assert route.method.lower() in spec["paths"].get(path, {}), f"{route.method} {path} undocumented"
    create_key = spec["paths"]["/v1/admin/api-keys"]["post"]
    schema_ref = create_key["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/NewApiKey")
    assert "401" in create_key["responses"] and "403" in create_key["responses"]


async def test_success_statuses_are_the_ones_the_handlers_answer(client):
    paths = (await _spec(client))["paths"]
    assert set(paths["/v1/loyalty/earn"]["post"]["responses"]) >= {"201", "200"}  # 200: a replayed transaction
    assert "201" in paths["/v1/loyalty/redeem"]["post"]["responses"]
    pay = paths["/v1/orders/{order_id}/pay"]["post"]["responses"]
    assert pay["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Order")  # pending, not an error
    click = paths["/v1/email/click/{message_id}"]["get"]["responses"]
    assert "302" in click and "200" not in click and click["302"]["headers"]["Location"]["required"]
    assert "image/gif" in paths["/v1/email/open/{message_id}.gif"]["get"]["responses"]["200"]["content"]
    assert "text/html" in paths["/v1/email/unsubscribe"]["post"]["responses"]["200"]["content"]
    ready = paths["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert {s["$ref"].rsplit("/", 1)[1] for s in ready["anyOf"]} == {"ReadyReport", "ErrorEnvelope"}


async def test_an_earn_answers_201_then_200_for_its_replay(client, admin_headers):
    body = {"user_id": "usr_openapi", "amount_cents": 1000, "channel": "pos", "transaction_id": "tx-openapi"}
    first = await client.post("/v1/loyalty/earn", json=body, headers=admin_headers)
    again = await client.post("/v1/loyalty/earn", json=body, headers=admin_headers)
    assert (first.status, again.status) == (201, 200)


async def test_openrtb_400_and_204_have_no_body(client):
    bid = (await _spec(client))["paths"]["/v1/bid"]["post"]
    assert "content" not in bid["responses"]["400"] and "content" not in bid["responses"]["204"]
    assert bid["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BidResponse")
    assert bid["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/BidRequest")


async def test_every_mutating_operation_takes_an_idempotency_key_and_documents_409(client):
    spec = await _spec(client)
    mutating = [(path, method, op) for path, method, op in _operations(spec) if method in MUTATING]
    assert len(mutating) > 30
    for path, method, op in mutating:
        [key] = [p for p in op.get("parameters", []) if p["name"] == "Idempotency-Key"]
        assert key["in"] == "header" and not key["required"], (method, path)
        assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, MAX_KEY_LENGTH), (method, path)
        assert "409" in op["responses"], (method, path)
    for path, method, op in _operations(spec):
        if method not in MUTATING:
            assert all(p["name"] != "Idempotency-Key" for p in op.get("parameters", [])), (method, path)


async def test_a_reused_idempotency_key_is_the_documented_409(client, admin_headers):
    headers = {**admin_headers, "Idempotency-Key": "openapi-key"}
    first = {"entries": [{"identifier": "a@example.com"}]}
    assert (await client.post("/v1/suppressions", json=first, headers=headers)).status == 201
    resp = await client.post("/v1/suppressions", json={"entries": [{"identifier": "b@example.com"}]},
                             headers=headers)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "idempotency_key_reused"
    too_long = {**admin_headers, "Idempotency-Key": "k" * (MAX_KEY_LENGTH + 1)}
    assert (await client.post("/v1/suppressions", json=first, headers=too_long)).status == 400


async def test_what_every_endpoint_can_answer_is_documented(client):
    for path, method, op in _operations(await _spec(client)):
        responses = op["responses"]
        assert {"400", "401", "408", "413", "503"} <= set(responses), (method, path)
        if path.startswith(("/health/", "/metrics")):
            assert "429" not in responses, (method, path)  # never rate limited
        else:
            assert responses["429"]["headers"]["Retry-After"]["required"], (method, path)
        if "{" in path:
            assert {"404", "405"} <= set(responses), (method, path)
            assert responses["405"]["headers"]["Allow"]["required"], (method, path)
        assert not any(status.startswith("5") and status != "503" for status in responses), (method, path)


async def test_a_plain_get_to_a_stream_is_426_upgrade_required(client, admin_headers):
    paths = (await _spec(client))["paths"]
    for path in ("/v1/stream/events", "/v1/stream/bids", "/v1/stream/inapp"):
        responses = paths[path]["get"]["responses"]
        assert {"101", "400", "426"} <= set(responses) and "200" not in responses, path
        assert responses["426"]["headers"]["Upgrade"]["required"], path
    resp = await client.get("/v1/stream/events", headers=admin_headers)
    assert resp.status == 426 and resp.headers["Upgrade"] == "websocket"
    assert "upgrade" in resp.headers["Connection"].lower()
    assert (await resp.json())["error"]["code"] == "upgrade_required"
    old = await client.get("/v1/stream/events", headers={**admin_headers, "Upgrade": "websocket",
                                                          "Connection": "Upgrade", "Sec-WebSocket-Version": "12",
                                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert old.status == 426 and old.headers["Sec-WebSocket-Version"] == "13"
    no_key = await client.get("/v1/stream/events", headers={**admin_headers, "Upgrade": "websocket",
                                                             "Connection": "Upgrade", "Sec-WebSocket-Version": "13"})
    assert no_key.status == 400  # a broken handshake (RFC 6455 4.2.1)
    assert (await client.get("/v1/stream/events")).status == 401  # credentials are checked first


async def test_pagination_cursors_are_documented_and_checked(client, admin_headers):
    orders = (await _spec(client))["paths"]["/v1/orders"]["get"]
    [after] = [p for p in orders["parameters"] if p["name"] == "after"]
    assert after["schema"]["pattern"] == CURSOR_PATTERN and "null" not in str(after["schema"])
    bad = await client.get("/v1/orders", params={"after": "not a cursor!"}, headers=admin_headers)
    assert bad.status == 400
    forged = await client.get("/v1/orders", params={"after": "eyJpZCI6Im5vcGUifQ"}, headers=admin_headers)
    assert forged.status == 400  # well formed, but no page's cursor


async def test_integers_may_be_written_as_whole_floats_as_json_schema_counts_them(client, admin_headers):
    body = {"user_id": "usr_floats", "amount_cents": 1000.0, "channel": "pos", "transaction_id": "tx-floats"}
    assert (await client.post("/v1/loyalty/earn", json=body, headers=admin_headers)).status == 201
    resp = await client.post("/v1/loyalty/earn", json={**body, "amount_cents": 1000.5, "transaction_id": "tx-2"},
                             headers=admin_headers)
    assert resp.status == 400 and (await resp.json())["error"]["details"] == {"field": "amount_cents"}


async def test_email_fields_are_format_email_and_checked(client, admin_headers):
    schemas = (await _spec(client))["components"]["schemas"]
    for name in ("RegisterRequest", "NewUser", "TokenRequest"):
        assert schemas[name]["properties"]["email"]["format"] == "email", name
    resp = await client.post("/v1/accounts", json={"email": "a@b@c", "password": "long-enough-1"})
    assert resp.status == 400 and "email" in (await resp.json())["error"]["message"]


async def test_flight_dates_are_calendar_days(client):
    [date] = [p for p in (await _spec(client))["paths"]["/v1/flights"]["get"]["parameters"] if p["name"] == "date"]
    assert date["schema"]["format"] == "date" and date["required"]
    query = {"origin": "LIS", "destination": "BCN"}
    assert (await client.get("/v1/flights", params={**query, "date": "2026-13-45"})).status == 400
    assert (await client.get("/v1/flights", params={**query, "date": "2026-02-30"})).status == 400
    assert (await client.get("/v1/flights", params={**query, "date": "2028-02-29"})).status == 200


async def test_query_parameters_a_handler_reads_itself_are_documented_and_checked(client):
    paths = (await _spec(client))["paths"]
    win = {p["name"]: p for p in paths["/v1/notices/win"]["get"]["parameters"]}
    assert win["bid"]["required"] and win["price"]["required"]
    assert {p["name"] for p in paths["/v1/notices/loss"]["get"]["parameters"]} == {"bid", "reason", "price"}
    assert (await client.get("/v1/notices/win", params={"price": "1"})).status == 400
    # A link signature that is no hex is refused as input, whatever else the link carries.
    resp = await client.get("/v1/email/unsubscribe", params={"m": "msg", "t": "\u00e9t\u00e9", "utm": "x"})
    assert resp.status == 400


async def test_api_reference_page_is_served_without_a_cdn(client):
    resp = await client.get("/api.html")
    html = await resp.text()
    assert resp.status == 200 and "/openapi.json" in html
    assert "http://" not in html and "https://" not in html

