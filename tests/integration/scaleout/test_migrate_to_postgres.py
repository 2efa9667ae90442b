"""`python -m app migrate-to-postgres`: a demo deployment's SQLite system of record copied into PostgreSQL, and a
node on PostgreSQL then serving the same accounts, orders, seats and stars; refusals leave both sides as they were."""

from __future__ import annotations

import json
import urllib.request

import asyncpg

from bench.server import ServerProcess


def _get(url: str, headers: dict | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as resp:
        return json.loads(resp.read())


def _token(url: str, email: str, password: str) -> dict:
    req = urllib.request.Request(f"{url}/v1/auth/token", data=json.dumps({"email": email, "password": password})
                                 .encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as resp:
        return {"Authorization": f"Bearer {json.loads(resp.read())['access_token']}"}


def _views(node: ServerProcess) -> dict:
    """What the demo traveller sees, and the seats left on the demo's flights of one route and day."""
    headers = _token(node.url, "traveller@contrail.demo", "contrail-demo")
    orders = _get(f"{node.url}/v1/orders?limit=200", headers)["items"]
    first = orders[0]
    flights = _get(f"{node.url}/v1/flights?origin={first['items'][0]['name'].split()[1][:3]}"
                   f"&destination={first['items'][0]['name'].split()[1][4:7]}"
                   f"&date={first['flight_id'][-10:]}")["items"]
    return {"orders": sorted((o["id"], o["state"], o["total_cents"]) for o in orders),
            "balance": _get(f"{node.url}/v1/loyalty/balance/{first['owner'].partition(':')[2]}", headers)["balance"],
            "seats": {f["id"]: f["seats_left"] for f in flights}}


async def test_a_demo_deployment_moves_to_postgresql_and_serves_the_same(tmp_path, pg_server):
    one = ServerProcess(tmp_path / "one" / "var")
    one.data_dir.mkdir(parents=True)
    assert one.cli("seed-demo").returncode == 0
    one.start()
    try:
        before = _views(one)
    finally:
        one.stop()
    dsn = pg_server.new_database()
    moved = one.cli("migrate-to-postgres", "--dsn", dsn)
    assert moved.returncode == 0, moved.stderr
    assert "orders: " in moved.stdout and "loyalty_ledger: " in moved.stdout
    key_file = tmp_path / "one" / "var" / "pii.key"
    assert f"personal data is sealed with the keys in {key_file}" in moved.stdout
    again = one.cli("migrate-to-postgres", "--dsn", dsn)  # the target is not empty any more
    assert again.returncode == 2 and "not empty" in again.stderr

    node = ServerProcess(tmp_path / "node" / "var", CONTRAIL__STORAGE__BACKEND="postgres",
                         CONTRAIL__STORAGE__POSTGRES_DSN=dsn, CONTRAIL__PII__KEY_FILE=str(key_file))
    node.data_dir.mkdir(parents=True)
    node.start()
    try:
        assert _views(node) == before
    finally:
        node.stop()
    conn = await asyncpg.connect(dsn)
    try:
        live = await conn.fetch("SELECT body FROM orders WHERE state IN ('PROPOSED', 'PAYMENT_PENDING', 'PAID', "
                                "'FULFILLED', 'ARCHIVED')")
        held = dict(await conn.fetch("SELECT resource, held FROM inventory"))
    finally:
        await conn.close()
    assert live and sum(held.values()) >= len(live)


def test_refusals_name_what_to_do(tmp_path, pg_server):
    empty = ServerProcess(tmp_path / "empty" / "var")
    result = empty.cli("migrate-to-postgres", "--dsn", pg_server.new_database())
    assert result.returncode == 2 and "no SQLite database" in result.stderr
    unreachable = empty.cli("migrate-to-postgres", "--dsn", "postgresql://postgres@127.0.0.1:1/nothing")
    assert unreachable.returncode == 2 and "error: " in unreachable.stderr and "Traceback" not in unreachable.stderr
