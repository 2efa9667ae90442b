"""HTTP limits that hold on every endpoint: body size, body encoding, stalled bodies, slow headers, connection
caps, unknown paths and methods."""

import asyncio
import zlib

import pytest
from aiohttp import web

from app.main import PLATFORM, create_app
from handlers.rest.connections import GuardedRunner
from tests.conftest import make_config

MIB = 1_048_576


async def test_an_oversized_body_is_413_even_where_no_body_is_read(client, admin_headers):
    for path in ("/v1/auth/guest", "/v1/offers/search", "/v1/admin/model/reload", "/v1/ping"):
        resp = await client.post(path, data=b"x" * (2 * MIB), headers=admin_headers)
        assert resp.status == 413, (path, resp.status)
        assert (await resp.json())["error"]["details"] == {"limit_bytes": MIB}

    async def chunks():  # no Content-Length: the limit holds as the body streams in
        for _ in range(40):
            yield b"x" * 65_536
    resp = await client.post("/v1/auth/guest", data=chunks())
    assert resp.status == 413


@pytest.mark.parametrize("encoding", ["deflate", "gzip"])
async def test_a_body_that_is_not_in_its_content_encoding_is_400(client, admin_headers, encoding):
    for path in ("/v1/bid", "/v1/offers/search", "/v1/channels/ingest", "/v1/auth/guest"):
        resp = await client.post(path, data=b'{"not": "compressed"}',
                                 headers={**admin_headers, "Content-Encoding": encoding,
                                          "Content-Type": "application/json"})
        assert resp.status == 400, (path, resp.status, await resp.text())
        assert encoding in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_a_content_encoding_without_a_decoder_here_is_415_naming_what_is_accepted(client, encoding):
    from aiohttp import compression_utils
    if {"br": compression_utils.HAS_BROTLI, "zstd": compression_utils.HAS_ZSTD}[encoding]:
        pytest.skip(f"this environment decodes {encoding}")
    resp = await client.post("/v1/auth/guest", data=b"{}", headers={"Content-Encoding": encoding})
    assert resp.status == 415
    error = (await resp.json())["error"]
    assert error["code"] == "unsupported_media_type" and error["details"] == {"accepted": ["gzip", "deflate"]}
    assert error["message"] == (f"Content-Encoding {encoding} is not supported: send the body with gzip, deflate "
                                "or no Content-Encoding")


async def test_a_body_in_its_content_encoding_is_read(client):
    body = zlib.compress(b'{"email": "x@contrail.test", "password": "password-1"}')
    resp = await client.post("/v1/auth/token", data=body,
                             headers={"Content-Encoding": "deflate", "Content-Type": "application/json"})
    assert resp.status == 401  # decoded and checked: no such account


async def test_static_paths_with_a_null_byte_or_too_long_are_404(client):
    for path in ("/index.html%00.txt", "/%00", "/" + "a" * 5000, "/../../etc/passwd"):
        resp = await client.get(path)
        assert resp.status == 404, (path, resp.status)
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_unknown_paths_are_404_for_every_method_and_405_lists_only_the_api_methods(client):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        resp = await client.request(method, "/v1/no-such-thing")
        assert resp.status == 404, method
    resp = await client.get("/v1/auth/guest")  # POST only
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    resp = await client.delete("/v1/ping")
    assert resp.status == 405 and "POST" not in resp.headers["Allow"] and "GET" in resp.headers["Allow"]


@pytest.fixture
async def real_server(tmp_path):
    """The server as `serve` runs it (GuardedRunner), on a free loopback port."""
    started = []

    async def start(**overrides):
        config = make_config(tmp_path, **overrides)
        app = create_app(config)
        runner = GuardedRunner(app, config.server, app[PLATFORM].metrics, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        started.append(runner)
        return runner, site._server.sockets[0].getsockname()[1]
    yield start
    for runner in started:
        await runner.cleanup()


async def _get(port: int, path: str = "/health/live") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_slow_headers_are_cut_off_and_the_server_keeps_serving(real_server):
    runner, port = await real_server(server__header_timeout_s="0.3")
    slow = []
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow.append((reader, writer))
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)  # sends nothing at all
    assert (await _get(port)).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.6)
    for reader, writer in slow + [(idle_reader, idle_writer)]:
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
        writer.close()
    metrics = (await _get(port, "/metrics")).decode()
    assert 'contrail_http_connections_closed_total{reason="slow_headers"} 51.0' in metrics


async def test_a_kept_alive_connection_gets_a_header_deadline_for_its_next_request(real_server):
    runner, port = await real_server(server__header_timeout_s="0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b'"ok"}'), 2)).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.5)  # idle between requests is the keep-alive's business, not the header deadline's
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


async def test_connections_over_the_cap_get_503_not_a_dead_server(real_server):
    runner, port = await real_server(server__max_connections="5", server__header_timeout_s="30")
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    await asyncio.sleep(0.05)
    refused = await _get(port)
    assert refused.startswith(b"HTTP/1.1 503") and b"too many open connections" in refused
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.1)
    assert (await _get(port)).startswith(b"HTTP/1.1 200")


async def test_a_stalled_body_is_408(real_server):
    runner, port = await real_server(server__body_timeout_s="0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/auth/guest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    response = await asyncio.wait_for(reader.read(), 3)
    assert response.startswith(b"HTTP/1.1 408") and b"request_timeout" in response
    writer.close()


async def test_a_request_refused_before_its_body_is_read_closes_its_connection_cleanly(real_server):
    """A refused request whose unread body does not even decode: the answer says Connection: close, so a
    client never sends its next request down a connection the server is about to drop."""
    runner, port = await real_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/ping HTTP/1.1\r\nHost: x\r\nX-Api-Key: ck_nobody\r\nContent-Type: application/json\r\n"
                 b"Content-Encoding: deflate\r\nContent-Length: 18\r\n\r\nnot deflate at all")
    response = await asyncio.wait_for(reader.read(), 3)
    assert response.startswith(b"HTTP/1.1 401") and b"Connection: close" in response
    writer.close()
