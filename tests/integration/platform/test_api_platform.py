"""Auth, errors, idempotency and rate limits through the real app."""

import pytest

from app.main import PLATFORM, create_app
from handlers.rest.common import encode_cursor
from tests.conftest import ADMIN, CUSTOMER, bearer, make_config
from tests.integration.retail.helpers import search_body


async def test_ping_health_and_request_id(client):
    resp = await client.get("/v1/ping", headers={"X-Request-Id": "trace-123"})
    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
    assert resp.headers["X-Request-Id"] == "trace-123"
    generated = (await client.get("/health/live")).headers["X-Request-Id"]
    assert len(generated) == 32
    ready = await client.get("/health/ready")
    body = await ready.json()
    assert ready.status == 200 and body["ready"] is True
    assert body["checks"]["grpc"] and body["checks"]["db:records"]


async def test_guest_and_customer_tokens(client, customer_headers):
    guest = await client.post("/v1/auth/guest")
    token = (await guest.json())["access_token"]
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["role"] == "guest"
    me = await client.get("/v1/me", headers=customer_headers)
    assert (await me.json())["role"] == "customer"


async def test_wrong_password_and_bad_tokens_are_401(client, customer_headers):
    resp = await client.post("/v1/auth/token", json={"email": CUSTOMER[0], "password": "nope-nope"})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthenticated"
    for header in ("Bearer not.a.jwt", "Basic abc", "Bearer "):
        resp = await client.get("/v1/me", headers={"Authorization": header})
        assert resp.status == 401, header
    assert (await client.get("/v1/me")).status == 401


async def test_token_expires_on_the_injected_clock(client, clock, customer_headers):
    assert (await client.get("/v1/me", headers=customer_headers)).status == 200
    clock.advance(3601)
    resp = await client.get("/v1/me", headers=customer_headers)
    assert resp.status == 401 and "expired" in (await resp.json())["error"]["message"]


async def test_token_signed_with_another_secret_is_rejected(client, tmp_path):
    import jwt
    forged = jwt.encode({"sub": "x", "role": "admin", "kind": "user", "exp": 2**40},
                        "another-secret-entirely-but-long-enough-for-hs256", algorithm="HS256")
    resp = await client.get("/v1/admin/api-keys", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401


async def test_admin_endpoints_need_admin(client, customer_headers, admin_headers):
    resp = await client.get("/v1/admin/api-keys", headers=customer_headers)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    assert (await client.get("/v1/admin/api-keys")).status == 401
    assert (await client.get("/v1/admin/api-keys", headers=admin_headers)).status == 200


async def test_register_then_duplicate_is_409(client):
    body = {"email": "New@Contrail.test", "password": "long-enough-pw"}
    assert (await client.post("/v1/accounts", json=body)).status == 201
    resp = await client.post("/v1/accounts", json={**body, "email": "new@contrail.test"})
    assert resp.status == 409
    resp = await client.post("/v1/accounts", json={"email": "x@y.z", "password": "short"})
    assert resp.status == 400 and "password" in (await resp.json())["error"]["message"]


async def test_api_key_lifecycle_and_audit(client, admin_headers):
    resp = await client.post("/v1/admin/api-keys", json={"name": "exchange-a", "role": "exchange"},
                             headers=admin_headers)
    assert resp.status == 201
    created = await resp.json()
    key_headers = {"X-Api-Key": created["key"]}
    me = await (await client.get("/v1/me", headers=key_headers)).json()
    assert me == {"kind": "api_key", "id": created["id"], "role": "exchange"}
    listed = await (await client.get("/v1/admin/api-keys", headers=admin_headers)).json()
    assert [k["id"] for k in listed["items"]] == [created["id"]]
    assert "key" not in listed["items"][0]
    resp = await client.delete(f"/v1/admin/api-keys/{created['id']}", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["revoked_at"] is not None
    assert (await client.get("/v1/me", headers=key_headers)).status == 401
    assert (await client.delete("/v1/admin/api-keys/key_nope", headers=admin_headers)).status == 404
    audit = await (await client.get("/v1/admin/audit", headers=admin_headers)).json()
    assert [e["action"] for e in audit["items"]][:2] == ["api_key.revoke", "api_key.create"]


async def test_api_key_list_paginates_with_an_opaque_cursor(client, admin_headers, clock):
    """Every key, oldest first, revoked ones too (read from the store: memory holds the live keys only)."""
    ids = []
    for i in range(5):
        resp = await client.post("/v1/admin/api-keys", json={"name": f"k{i}", "role": "partner"},
                                 headers=admin_headers)
        ids.append((await resp.json())["id"])
        clock.advance(1)
    assert (await client.delete(f"/v1/admin/api-keys/{ids[1]}", headers=admin_headers)).status == 200
    assert ids[1] not in {k.id for k in client.app[PLATFORM].api_keys.list()}
    seen, after = [], None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = await (await client.get("/v1/admin/api-keys", params=params, headers=admin_headers)).json()
        seen += [(k["id"], k["revoked_at"] is not None) for k in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == [(key_id, n == 1) for n, key_id in enumerate(ids)]
    bad = await client.get("/v1/admin/api-keys", params={"after": "!!!"}, headers=admin_headers)
    assert bad.status == 400
    no_position = encode_cursor({"id": ids[0]})  # names a key but no place in the order
    bad = await client.get("/v1/admin/api-keys", params={"after": no_position}, headers=admin_headers)
    assert bad.status == 400 and "cursor" in (await bad.json())["error"]["message"]
    bad = await client.get("/v1/admin/api-keys", params={"limit": "0"}, headers=admin_headers)
    assert bad.status == 400 and "limit" in (await bad.json())["error"]["message"]
    bad = await client.get("/v1/admin/api-keys", params={"color": "red"}, headers=admin_headers)
    assert bad.status == 400 and "color" in (await bad.json())["error"]["message"]


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "malformed JSON"),
    (b"", "empty"),
    (b"[1,2]", "Expected `object`"),
    (b'{"name": 5, "role": "partner"}', "name"),
    (b'{"name": "x", "role": "partner", "extra": 1}', "extra"),
    # JSON that breaks off after a field the decoder would refuse: the body is what is wrong, not the field.
    (b'{"colour": ', "malformed JSON: Input data was truncated"),
    (b'{"name": "x", "role": "partner"} xx', "malformed JSON: JSON is malformed: trailing characters"),
    (b'{"name": "\xff"}', "malformed JSON: invalid UTF-8"),
    (b"[" * 100_000, "malformed JSON"),
])
async def test_malformed_input_is_400_naming_the_problem(client, admin_headers, body, needle):
    resp = await client.post("/v1/admin/api-keys", data=body,
                             headers={**admin_headers, "Content-Type": "application/json"})
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_argument" and needle in err["message"]


async def test_oversized_body_is_413(client, admin_headers):
    big = b'{"name": "' + b"x" * 1_100_000 + b'", "role": "partner"}'
    resp = await client.post("/v1/admin/api-keys", data=big, headers=admin_headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    listed = await (await client.get("/v1/admin/api-keys", headers=admin_headers)).json()
    assert listed["items"] == []


async def test_unknown_route_and_method_get_the_envelope(client):
    resp = await client.get("/v1/does-not-exist")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.delete("/v1/ping")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_idempotency_replays_and_refuses_a_different_body(client, admin_headers):
    headers = {**admin_headers, "Idempotency-Key": "create-1"}
    user = {"email": "eva@contrail.test", "password": "password-123", "role": "customer"}
    first = await client.post("/v1/admin/users", json=user, headers=headers)
    again = await client.post("/v1/admin/users", json=user, headers=headers)
    assert first.status == again.status == 201
    assert await first.json() == await again.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    other = await client.post("/v1/admin/users", json={**user, "email": "b@contrail.test"}, headers=headers)
    assert other.status == 409 and (await other.json())["error"]["code"] == "idempotency_key_reused"


async def test_a_new_api_key_is_never_stored_for_replay_and_never_made_twice(client, admin_headers):
    headers = {**admin_headers, "Idempotency-Key": "key-1"}
    first = await client.post("/v1/admin/api-keys", json={"name": "a", "role": "partner"}, headers=headers)
    assert first.status == 201
    made = await first.json()
    again = await client.post("/v1/admin/api-keys", json={"name": "a", "role": "partner"}, headers=headers)
    error = (await again.json())["error"]
    assert again.status == 409 and error["details"] == {"first_status": 201, "id": made["id"]}
    assert made["key"] not in await again.text()
    stored = await client.app[PLATFORM].records_db.fetchall("SELECT body FROM idempotency")
    assert stored and all(made["key"].encode() not in bytes(row[0]) for row in stored)
    listed = await (await client.get("/v1/admin/api-keys", headers=admin_headers)).json()
    assert len(listed["items"]) == 1


async def test_idempotency_needs_an_allowed_caller_and_never_keys_by_address(client, customer_headers):
    """An anonymous or forbidden request leaves no record behind, so the key stays free for its owner."""
    body = {"name": "a", "role": "partner"}
    anonymous = await client.post("/v1/admin/api-keys", json=body, headers={"Idempotency-Key": "k"})
    forbidden = await client.post("/v1/admin/api-keys", json={"name": "other", "role": "partner"},
                                  headers={**customer_headers, "Idempotency-Key": "k"})
    again = await client.post("/v1/admin/api-keys", json={"name": "b", "role": "partner"},
                              headers={"Idempotency-Key": "k"})
    assert (anonymous.status, forbidden.status, again.status) == (401, 403, 401)
    guests = [await (await client.post("/v1/auth/guest", headers={"Idempotency-Key": "g"})).json()
              for _ in range(2)]
    assert guests[0]["access_token"] != guests[1]["access_token"]
    assert not await client.app[PLATFORM].records_db.fetchall("SELECT 1 FROM idempotency")


async def test_idempotency_survives_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = {**(await bearer(client, *ADMIN, "admin")), "Idempotency-Key": "k"}
    user = {"email": "eva@contrail.test", "password": "password-123", "role": "customer"}
    first = await (await client.post("/v1/admin/users", json=user, headers=headers)).json()
    await client.close()
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = {**(await bearer(client, *ADMIN, "admin")), "Idempotency-Key": "k"}
    again = await client.post("/v1/admin/users", json=user, headers=headers)
    assert await again.json() == first
    clock.advance(86_401)
    later = await client.post("/v1/admin/users", json={**user, "email": "eve@contrail.test"},
                              headers={**(await bearer(client, *ADMIN, "admin")), "Idempotency-Key": "k"})
    body = await later.json()
    assert later.status == 201, body
    assert body["id"] != first["id"]


async def test_rate_limit_per_ip_answers_429_with_retry_after(aiohttp_client, tmp_path):
    config = make_config(tmp_path, ratelimit__ip_per_s="1", ratelimit__ip_burst="3")
    client = await aiohttp_client(create_app(config))
    statuses = [(await client.get("/v1/ping")).status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    resp = await client.get("/v1/ping")
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate_limited"
    assert (await client.get("/health/ready")).status == 200  # probes are never limited
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_rate_limited_total{scope="ip"}' in metrics


async def test_guessing_credentials_is_rate_limited_and_a_limited_body_is_never_read(aiohttp_client, tmp_path):
    config = make_config(tmp_path, ratelimit__ip_per_s="1", ratelimit__ip_burst="3")
    client = await aiohttp_client(create_app(config))
    statuses = [(await client.get("/v1/me", headers={"X-Api-Key": f"ck_guess{i}"})).status for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]  # every refused key costs its address a token
    # Over its limit, a caller gets 429 before its body is read (not 413 for a body it may not send).
    resp = await client.post("/v1/auth/guest", data=b"x" * 2_000_000)
    assert resp.status == 429


async def test_rate_limit_per_api_key(aiohttp_client, tmp_path):
    config = make_config(tmp_path, ratelimit__principal_per_s="1", ratelimit__principal_burst="2")
    client = await aiohttp_client(create_app(config))
    platform = client.app[PLATFORM]
    _, key_a = await platform.api_keys.create("a", "partner")
    _, key_b = await platform.api_keys.create("b", "partner")
    a = [(await client.get("/v1/me", headers={"X-Api-Key": key_a})).status for _ in range(3)]
    b = (await client.get("/v1/me", headers={"X-Api-Key": key_b})).status
    assert a == [200, 200, 429] and b == 200


async def test_metrics_expose_http_and_sqlite_series(client, admin_headers):
    await client.post("/v1/admin/api-keys", json={"name": "a", "role": "partner"}, headers=admin_headers)
    text = await (await client.get("/metrics")).text()
    for series in ('contrail_http_requests_total{method="POST",route="/v1/admin/api-keys",status="201"}',
                   'contrail_http_request_seconds_bucket', 'contrail_sqlite_commit_group_size_bucket',
                   'contrail_sqlite_commit_seconds_bucket', 'contrail_queue_depth{queue="event_log"}',
                   'contrail_events_dropped_total', 'contrail_task_restarts_total'):
        assert series in text, series


async def test_metrics_time_garbage_collections(client):
    import gc

    def full_passes(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith('contrail_gc_pause_seconds_count{generation="2"}'))
        return float(line.split()[-1])
    before = full_passes(await (await client.get("/metrics")).text())
    gc.collect()
    assert full_passes(await (await client.get("/metrics")).text()) >= before + 1  # ours, and any the app ran
    # Young passes wait for real heap growth, not for the objects of the requests in flight.
    from app.main import YOUNG_GC_THRESHOLD
    assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD


async def test_drain_turns_readiness_and_grpc_health_off_at_once(client, admin_headers):
    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    from app.main import GRPC
    token = admin_headers["Authorization"].split()[1]
    ws = await client.ws_connect(f"/v1/stream/events?token={token}")
    client.app[PLATFORM].health.drain()
    resp = await client.get("/health/ready")
    body = await resp.json()
    assert resp.status == 503 and body["state"] == "draining"
    assert (await client.get("/health/live")).status == 200
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    reply = await HealthStub(channel).Check(HealthCheckRequest(service="contrail.platform.v1.PlatformService"))
    channel.close()
    assert reply.status == HealthCheckResponse.NOT_SERVING
    closing = await ws.receive(timeout=3)
    assert closing.type.name == "CLOSE" and closing.data == 1001
    await ws.close()


async def test_admin_user_creation_rejects_bad_input(client, admin_headers):
    cases = [({"email": "no-at-sign", "password": "long-enough-1", "role": "customer"}, "email"),
             ({"email": "a@b.c", "password": "short", "role": "customer"}, "password"),
             ({"email": "a@b.c", "password": "long-enough-1", "role": "pilot"}, "role"),
             ({"email": "a@b.c", "password": "long-enough-1"}, "role")]
    for body, field in cases:
        resp = await client.post("/v1/admin/users", json=body, headers=admin_headers)
        assert resp.status == 400, body
        assert field in (await resp.json())["error"]["message"], body
    ok = {"email": "a@b.c", "password": "long-enough-1", "role": "customer"}
    assert (await client.post("/v1/admin/users", json=ok, headers=admin_headers)).status == 201
    assert (await client.post("/v1/admin/users", json=ok, headers=admin_headers)).status == 409


async def test_a_value_with_one_trailing_newline_is_refused_where_a_pattern_applies(client, clock, admin_headers,
                                                                                    customer_headers):
    # Python's `$` matches before a final newline: "LHR\n" passed `^[A-Z]{3}$` and reached the store.
    resp = await client.post("/v1/admin/users", headers=admin_headers,
                             json={"email": "new@contrail.example\n", "password": "long-enough-1", "role": "customer"})
    assert resp.status == 400 and "email" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/offers/search", headers=customer_headers,
                             json=search_body(clock, origin="LIS\n"))
    assert resp.status == 400 and "origin" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/reco/items", headers=admin_headers, json=[{"item_id": "dest-PDL\n"}])
    assert resp.status == 400 and "item_id" in (await resp.json())["error"]["message"]
    # Without the newline each is taken.
    ok = {"email": "new@contrail.example", "password": "long-enough-1", "role": "customer"}
    assert (await client.post("/v1/admin/users", headers=admin_headers, json=ok)).status == 201
    assert (await client.post("/v1/reco/items", headers=admin_headers, json=[{"item_id": "dest-PDL"}])).status == 200
