"""The real server as a subprocess: CLI contract, kill -9 durability, graceful SIGTERM."""

import asyncio
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from bench.server import ROOT, ServerProcess


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "var")
    yield srv
    srv.stop()


def _admin_key(server: ServerProcess) -> str:
    result = server.cli("create-api-key", "--name", "ops", "--role", "admin")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("ck_") and " " not in key
    return key


async def _create_keys(session, url, headers, acked, errors, stop_at):
    i = 0
    while time.monotonic() < stop_at:
        i += 1
        try:
            async with session.post(f"{url}/v1/admin/api-keys", json={"name": f"w{i}", "role": "partner"},
                                    headers=headers) as resp:
                if resp.status == 201:
                    acked.append((await resp.json())["id"])
                else:
                    errors.append(resp.status)
        except (TimeoutError, aiohttp.ClientError):
            return  # the server went away mid-request: that write was never acknowledged


def _start_writers(session, server, headers, acked, errors, count):
    stop_at = time.monotonic() + 10
    return [asyncio.create_task(_create_keys(session, server.url, headers, acked, errors, stop_at))
            for _ in range(count)]


async def _listed_ids(url, headers):
    async with aiohttp.ClientSession() as session:
        ids, after = set(), None
        while True:
            params = {"limit": "1000", **({"after": after} if after else {})}
            async with session.get(f"{url}/v1/admin/api-keys", params=params, headers=headers) as resp:
                page = await resp.json()
            ids |= {k["id"] for k in page["items"]}
            after = page["next_cursor"]
            if after is None:
                return ids


def test_cli_contract(server):
    key = _admin_key(server)
    result = server.cli("create-user", "--email", "ops@contrail.test", "--password", "password-123",
                        "--role", "admin")
    assert result.returncode == 0 and "ops@contrail.test" in result.stdout
    again = server.cli("create-user", "--email", "ops@contrail.test", "--password", "password-123",
                       "--role", "admin")
    assert again.returncode == 1 and "already exists" in again.stderr
    odd = server.cli("create-user", "--email", "a@b.example\nx", "--password", "password-123", "--role", "customer")
    assert odd.returncode == 1
    assert odd.stderr.strip().splitlines()[-1] == "error: email must be an address like name@example.com"
    first, second = server.cli("seed-demo"), server.cli("seed-demo")
    assert first.returncode == second.returncode == 0
    assert "already loaded" in second.stdout
    assert server.cli("migrate").returncode == 0
    assert key


@pytest.mark.parametrize("taken", ["http", "grpc"])
def test_serve_on_a_port_already_taken_says_so_in_one_line_and_exits_1(server, taken):
    """The databases' writer threads and the gRPC server that had started are closed: the process ends."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", server.http_port if taken == "http" else server.grpc_port))
        holder.listen()
        result = subprocess.run([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=server.env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot start: [Errno 98]"), result.stderr
    assert "Traceback" not in result.stderr


def test_an_unusable_data_directory_or_key_file_is_one_line_and_exit_2(server, tmp_path):
    garbage = tmp_path / "pii.json"
    garbage.write_text("not a key file")
    for env, expected in (({"CONTRAIL__PII__KEY_FILE": str(garbage)}, "config: pii: PII key file"),
                          ({"CONTRAIL__STORAGE__DATA_DIR": str(garbage)}, f"config: storage.data_dir {garbage}"),
                          ({"CONTRAIL__INFERENCE__MODEL_PATH": str(garbage)}, "config: inference.model_path:")):
        for command in ("migrate", "serve"):
            result = subprocess.run([sys.executable, "-m", "app", command], cwd=ROOT, env={**server.env, **env},
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 2, (command, env, result.stderr[-2000:])
            assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr
            assert "Traceback" not in result.stderr


async def test_kill_9_loses_no_acknowledged_write(server):
    key = _admin_key(server)
    headers = {"X-Api-Key": key}
    server.start()
    acked: list[str] = []
    errors: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        writers = _start_writers(session, server, headers, acked, errors, 32)
        await server.kill_9_mid_load(writers, lambda: len(acked) >= 300, time.monotonic() + 10)
    assert errors == []
    server.start()
    present = await _listed_ids(server.url, headers)
    missing = set(acked) - present
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert len(acked) >= 300


async def test_sigterm_drains_streams_flushes_queues_and_exits_0(server):
    key = _admin_key(server)
    headers = {"X-Api-Key": key}
    server.start()
    acked: list[str] = []
    errors: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        ws = await session.ws_connect(f"{server.url}/v1/stream/events?api_key={key}&types=AdminAction")
        bids = await session.ws_connect(f"{server.url}/v1/stream/bids?api_key={key}")  # idle: it hears no events
        writers = _start_writers(session, server, headers, acked, errors, 8)
        while len(acked) < 50:
            await asyncio.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*writers)
        msg = await ws.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001  # going away, not dropped
        await ws.close()
        msg = await bids.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001, msg
        await bids.close()
    assert server.proc.wait(15) == 0
    assert errors == []
    log = server.log_path.read_text()
    assert "Traceback" not in log and '"msg":"stopped"' in log
    server.start()
    present = await _listed_ids(server.url, headers)
    assert set(acked) <= present
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/v1/analytics/events", params={"type": "AdminAction", "limit": "10000"},
                               headers=headers) as resp:
            events = (await resp.json())["items"]
    logged_targets = {e["payload"]["target"] for e in events}
    assert set(acked) <= logged_targets  # every queued event was flushed before exit


async def test_cli_keys_and_users_work_on_a_running_server(server):
    server.start()
    key = _admin_key(server)  # created by another process while the server runs
    assert server.cli("create-user", "--email", "late@contrail.test", "--password", "password-123",
                      "--role", "customer").returncode == 0
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/v1/me", headers={"X-Api-Key": key}) as resp:
            assert resp.status == 200 and (await resp.json())["role"] == "admin"
        async with session.post(f"{server.url}/v1/auth/token",
                                json={"email": "late@contrail.test", "password": "password-123"}) as resp:
            assert resp.status == 200
        async with session.get(f"{server.url}/v1/me", headers={"X-Api-Key": "ck_not-a-key"}) as resp:
            assert resp.status == 401


async def test_kill_9_keeps_every_acknowledged_idempotency_key(server):
    """Flights created with an Idempotency-Key each, the server killed mid-load: after the restart a retry of every
    acknowledged request gets the first answer again (replayed), and nothing was made twice."""
    headers = {"X-Api-Key": _admin_key(server)}
    server.start()
    departs = (int(time.time()) // 86_400 + 5) * 86_400
    acked: dict[str, tuple[dict, dict]] = {}  # key -> (body sent, answer)

    async def writer(session, n: int, stop_at: float) -> None:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            key = f"w{n}-{i}"
            body = {"id": f"CT{n}-{i}", "airline": "CT", "number": f"CT{n}{i}", "origin": "LIS", "destination": "OPO",
                    "departure_at": departs, "arrival_at": departs + 3300,
                    "cabins": {"economy": {"capacity": 10, "base_fare_cents": 4000}}}
            try:
                async with session.post(f"{server.url}/v1/admin/flights", json=body,
                                        headers={**headers, "Idempotency-Key": key}) as resp:
                    assert resp.status == 201, await resp.text()
                    acked[key] = (body, await resp.json())
            except (TimeoutError, aiohttp.ClientError):
                return  # the server went away mid-request: never acknowledged

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        stop_at = time.monotonic() + 10
        writers = [asyncio.create_task(writer(session, n, stop_at)) for n in range(16)]
        await server.kill_9_mid_load(writers, lambda: len(acked) >= 150, stop_at)
    assert len(acked) >= 150
    server.start()
    async with aiohttp.ClientSession() as session:
        for key, (body, answer) in acked.items():
            async with session.post(f"{server.url}/v1/admin/flights", json=body,
                                    headers={**headers, "Idempotency-Key": key}) as resp:
                assert resp.status == 201 and resp.headers.get("Idempotency-Replayed") == "true", key
                assert await resp.json() == answer
