"""TLS and mTLS with real handshakes on loopback: HTTPS and gRPC over TLS from the configured files, client
certificates authenticating gRPC callers, and outbound clients verifying servers and presenting certificates."""

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from adapters.grpc.ranker import RemoteRanker
from adapters.http.providers import HttpAdaptors
from adapters.tls import client_context, configure_outbound, grpc_client_ssl
from app.channels.ports import ProviderError
from app.config import AdaptorsConfig, TlsConfig
from app.devcerts import DevCerts, make_dev_certs
from app.main import GRPC, PLATFORM, TLS, create_app
from app.retail.ranking import OfferSummary, SearchContext
from bench.server import ServerProcess
from handlers.rpc import bidding_grpc, bidding_pb2, platform_grpc, platform_pb2
from tests.conftest import ROOT, ContrailTestServer, make_config

# A refused handshake reaches the client as a TLS alert, or (TLS 1.3: the server checks the client's certificate
# after the client thinks the handshake is done) as the connection closing under the first call.
REFUSED = (ssl.SSLError, StreamTerminatedError)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, DevCerts]:
    """Our dev CA with a server cert and clients "partner-ranker" and "stranger"; another CA's "partner-ranker"."""
    ours, theirs = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("theirs")
    return {"stranger": make_dev_certs(ours, "stranger"), "partner": make_dev_certs(ours, "partner-ranker"),
            "other_ca": make_dev_certs(theirs, "partner-ranker")}


@pytest.fixture(autouse=True)
def plain_outbound():
    """Outbound HTTP's TLS is the process's: leave it as the defaults found it."""
    yield
    configure_outbound(TlsConfig())


def _tls(certs: DevCerts, **extra: str) -> dict[str, str]:
    return {"tls__cert_file": str(certs.server), "tls__key_file": str(certs.server_key), **extra}


def _mtls(certs: DevCerts, principals: dict[str, str], require: bool = True) -> dict[str, str]:
    return _tls(certs, tls__client_ca_file=str(certs.ca), tls__require_client_cert=str(require).lower(),
                tls__client_principals=json.dumps(principals))


def _client_tls(ca: DevCerts, cert: DevCerts | None = None, **extra: bool) -> TlsConfig:
    """What a caller trusts (ca's CA) and presents (cert's client certificate)."""
    files = {"outbound_cert_file": str(cert.client), "outbound_key_file": str(cert.client_key)} if cert else {}
    return TlsConfig(outbound_ca_file=str(ca.ca), **files, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def start(tmp_path):
    """Start the app with these overrides, HTTPS and gRPC as `serve` runs them; yields (app, https base URL)."""
    servers: list[ContrailTestServer] = []

    async def run(**overrides: str) -> tuple[web.Application, str]:
        app = create_app(make_config(tmp_path, **overrides))
        server = ContrailTestServer(app)
        await server.start_server(ssl=app[TLS].http if TLS in app else None)
        servers.append(server)
        return app, str(server.make_url("")).rstrip("/")
    yield run
    for server in servers:
        await server.close()


async def _echo(app: web.Application, ctx: ssl.SSLContext | None, metadata: dict[str, str] | None = None) -> str:
    channel = Channel("127.0.0.1", app[GRPC].port, ssl=ctx)
    try:
        reply = await platform_grpc.PlatformServiceStub(channel).Echo(platform_pb2.EchoRequest(message="hi"),
                                                                      metadata=metadata, timeout=5)
        return reply.message
    finally:
        channel.close()


async def test_https_is_served_with_the_configured_certificate_and_verified_against_its_ca(start, pki):
    app, url = await start(**_tls(pki["partner"]))
    assert url.startswith("https://")
    trusting = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(pki["partner"].ca)))
    async with aiohttp.ClientSession(connector=trusting) as session, session.get(f"{url}/health/ready") as resp:
        assert resp.status == 200
    # The links in email and the notice URLs in bids say https, as the node now serves.
    assert app[PLATFORM].public_urls.links().startswith("https://127.0.0.1:")
    assert app[PLATFORM].public_urls.notices().startswith("https://")
    # A client that does not trust the dev CA (the system's store) refuses the server; plain HTTP gets no answer.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"{url}/health/ready")
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"{url.replace('https', 'http', 1)}/health/ready")


async def test_grpc_over_tls_verifies_the_server_and_authenticates_with_an_api_key(start, pki):
    app, _ = await start(**_tls(pki["partner"]))
    _, key = await app[PLATFORM].api_keys.create("partner", "partner")
    trusting = client_context(_client_tls(pki["partner"]), grpc=True)
    assert await _echo(app, trusting, {"x-api-key": key}) == "hi"
    with pytest.raises(GRPCError) as err:  # TLS alone is no credential when client certificates are off
        await _echo(app, trusting)
    assert err.value.status == Status.UNAUTHENTICATED
    with pytest.raises(ssl.SSLCertVerificationError):  # a server from a CA the client does not trust
        await _echo(app, client_context(_client_tls(pki["other_ca"]), grpc=True), {"x-api-key": key})
    with pytest.raises(REFUSED):  # plaintext gRPC to a TLS port
        await _echo(app, None, {"x-api-key": key})


async def test_mtls_a_mapped_certificate_is_the_caller_without_an_api_key(start, pki):
    app, _ = await start(**_mtls(pki["partner"], {"partner-ranker": "partner"}))
    partner = client_context(_client_tls(pki["partner"], pki["partner"]), grpc=True)
    assert await _echo(app, partner) == "hi"
    # It is a partner: ranking yes (below), bidding no (exchange or admin only).
    channel = Channel("127.0.0.1", app[GRPC].port, ssl=partner)
    try:
        with pytest.raises(GRPCError) as err:
            await bidding_grpc.BiddingServiceStub(channel).HealthCheck(bidding_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.status == Status.PERMISSION_DENIED
    finally:
        channel.close()
    # The remote ranker's client, configured as a Contrail calling this one would be: verifies, presents, ranks.
    ranker = RemoteRanker(f"127.0.0.1:{app[GRPC].port}", "", grpc_client_ssl(
        _client_tls(pki["partner"], pki["partner"], outbound_grpc=True)))
    try:
        ctx = SearchContext("u1", False, "s1", "LIS", "OPO", "2030-01-01", 1, "economy", "corporate")
        offers = [OfferSummary("o1", 12_000, ("Flight",), 0.0), OfferSummary("o2", 19_000, ("Flight", "Bag"), 0.0)]
        probabilities = await ranker(ctx, offers, 5.0)
        assert len(probabilities) == 2 and all(0 <= p <= 1 for p in probabilities)
    finally:
        ranker.close()


async def test_mtls_refuses_a_client_without_a_certificate_and_one_from_another_ca(start, pki):
    app, url = await start(**_mtls(pki["partner"], {"partner-ranker": "partner"}))
    _, key = await app[PLATFORM].api_keys.create("partner", "partner")
    with pytest.raises(REFUSED):  # require_client_cert: an API key does not stand in for the certificate
        await _echo(app, client_context(_client_tls(pki["partner"]), grpc=True), {"x-api-key": key})
    with pytest.raises(REFUSED):  # the same CN, signed by a CA this server does not trust
        await _echo(app, client_context(_client_tls(pki["partner"], pki["other_ca"]), grpc=True))
    # Under TLS 1.2 the client's handshake itself fails (the server drops the connection at the certificate),
    # where the mapped certificate's completes.
    for cert in (None, pki["other_ca"], pki["partner"]):
        ctx = client_context(_client_tls(pki["partner"], cert), grpc=True)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cert is pki["partner"]:
            _, writer = await asyncio.open_connection("127.0.0.1", app[GRPC].port, ssl=ctx)
            writer.close()
            continue
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection("127.0.0.1", app[GRPC].port, ssl=ctx)
    trusting = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(pki["partner"].ca)))
    async with aiohttp.ClientSession(connector=trusting) as session, session.get(f"{url}/metrics") as resp:
        metrics = await resp.text()
    assert 'method="/contrail.platform.v1.PlatformService/Echo"' not in metrics  # neither call was served


async def test_mtls_an_unlisted_certificate_needs_an_api_key_and_a_key_mapping_follows_revocation(start, pki):
    app, _ = await start(**_mtls(pki["partner"], {"partner-ranker": "key_0123456789abcdef"}, require=False))
    stranger = client_context(_client_tls(pki["partner"], pki["stranger"]), grpc=True)
    with pytest.raises(GRPCError) as err:
        await _echo(app, stranger)
    assert err.value.status == Status.UNAUTHENTICATED and "'stranger' is not in tls.client_principals" in \
        str(err.value.message)
    _, key = await app[PLATFORM].api_keys.create("stranger's key", "partner")
    assert await _echo(app, stranger, {"x-api-key": key}) == "hi"
    # Without require_client_cert, a caller with no certificate still authenticates with a key.
    assert await _echo(app, client_context(_client_tls(pki["partner"]), grpc=True), {"x-api-key": key}) == "hi"
    # "partner-ranker" is mapped to a key that does not exist: refused.
    partner = client_context(_client_tls(pki["partner"], pki["partner"]), grpc=True)
    with pytest.raises(GRPCError) as err:
        await _echo(app, partner)
    assert err.value.status == Status.UNAUTHENTICATED


async def test_mtls_a_certificate_mapped_to_an_api_key_is_that_key_until_it_is_revoked(tmp_path, start, pki):
    # The key exists before the server starts, as an operator creates it (then names its id in the config).
    first, _ = await start()
    record, _ = await first[PLATFORM].api_keys.create("partner-ranker", "partner")
    app, _ = await start(**_mtls(pki["partner"], {"partner-ranker": record.id}))
    partner = client_context(_client_tls(pki["partner"], pki["partner"]), grpc=True)
    assert await _echo(app, partner) == "hi"
    await app[PLATFORM].api_keys.revoke(record.id)
    with pytest.raises(GRPCError) as err:
        await _echo(app, partner)
    assert err.value.status == Status.UNAUTHENTICATED and "revoked" in str(err.value.message)


async def _client_cert_server(certs: DevCerts) -> tuple[web.AppRunner, str, list[str]]:
    """A partner's HTTPS endpoint that requires a client certificate from certs' CA; records the callers' CNs."""
    seen: list[str] = []

    async def push(request: web.Request) -> web.Response:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append(dict(x[0] for x in cert["subject"])["commonName"])
        return web.json_response({"id": "msg-1"})

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server, certs.server_key)
    ctx.load_verify_locations(certs.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_post("/push", push)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"https://127.0.0.1:{port}/push", seen


async def test_outbound_http_verifies_the_server_and_presents_the_client_certificate(pki):
    runner, url, seen = await _client_cert_server(pki["partner"])
    try:
        configure_outbound(_client_tls(pki["partner"], pki["partner"]))
        providers = HttpAdaptors(AdaptorsConfig(push_url=url, max_attempts=1))
        try:
            assert await providers.send("push", {"activation_id": "a1"}) == "msg-1"
        finally:
            await providers.close()
        assert seen == ["partner-ranker"]
        # Trusting another CA: the partner's server is refused before anything is sent.
        configure_outbound(_client_tls(pki["other_ca"], pki["partner"]))
        providers = HttpAdaptors(AdaptorsConfig(push_url=url, max_attempts=1))
        try:
            with pytest.raises(ProviderError, match="CertificateError"):
                await providers.send("push", {"activation_id": "a2"})
        finally:
            await providers.close()
        # Presenting no certificate: the partner refuses the handshake.
        configure_outbound(_client_tls(pki["partner"]))
        providers = HttpAdaptors(AdaptorsConfig(push_url=url, max_attempts=1))
        try:
            with pytest.raises(ProviderError):
                await providers.send("push", {"activation_id": "a3"})
        finally:
            await providers.close()
        assert seen == ["partner-ranker"]
    finally:
        await runner.cleanup()


async def test_reload_serves_new_certificate_files_to_new_connections(tmp_path, start, pki):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(pki["partner"].server.parent / name, live / name)
    app, url = await start(tls__cert_file=str(live / "server.pem"), tls__key_file=str(live / "server-key.pem"))

    async def ready(ca: Path) -> int:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session, session.get(f"{url}/health/live") as r:
            return r.status

    assert await ready(pki["partner"].ca) == 200
    for name in ("server.pem", "server-key.pem"):  # rotated to a certificate from the other CA
        shutil.copy(pki["other_ca"].server.parent / name, live / name)
    app[TLS].reload()
    assert await ready(pki["other_ca"].ca) == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await ready(pki["partner"].ca)


@pytest.mark.parametrize("options,message", [
    (["--client-cn", "x" * 65], "--client-cn must be 1 to 64 characters"),
    (["--client-cn", " "], "--client-cn must be 1 to 64 characters"),
    (["--dir", "{file}/certs"], "--dir {file}/certs: Not a directory"),
])
def test_dev_certs_refuses_what_it_cannot_make_in_one_line(options, message, capsys, tmp_path):
    from app.__main__ import main
    (tmp_path / "file").write_text("not a directory")
    options = [o.format(file=tmp_path / "file") for o in options]
    message = message.format(file=tmp_path / "file")
    assert main(["dev-certs", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


def test_dev_certs_and_serve_over_tls_as_a_process(tmp_path):
    """`python -m app dev-certs`, then `serve` with the [tls] it prints: HTTPS, and gRPC with mTLS."""
    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "app", "dev-certs", "--dir", str(certs), "--client-cn", "ops-probe"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert 'client_principals = {"ops-probe" = "partner"}' in made.stdout
    assert f'cert_file = "{certs / "server.pem"}"' in made.stdout
    assert oct((certs / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    env = {"CONTRAIL__TLS__CERT_FILE": str(certs / "server.pem"),
           "CONTRAIL__TLS__KEY_FILE": str(certs / "server-key.pem"),
           "CONTRAIL__TLS__CLIENT_CA_FILE": str(certs / "ca.pem"), "CONTRAIL__TLS__REQUIRE_CLIENT_CERT": "true",
           "CONTRAIL__TLS__CLIENT_PRINCIPALS": '{"ops-probe": "partner"}'}
    server = ServerProcess(tmp_path / "var", True, **env)  # its ports, env and stopping; readiness is over HTTPS
    server.log = open(server.log_path, "ab")
    server.proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(ROOT / "config.toml"), "serve"],
                                   cwd=ROOT, env=server.env, stdout=server.log, stderr=subprocess.STDOUT)
    try:
        trusting = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        url = f"https://127.0.0.1:{server.http_port}/health/ready"
        deadline = time.monotonic() + 30
        while True:
            assert server.proc.poll() is None, server.log_path.read_text()
            try:
                with urllib.request.urlopen(url, timeout=1, context=trusting) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, server.log_path.read_text()
                time.sleep(0.1)
        probe = TlsConfig(outbound_ca_file=str(certs / "ca.pem"), outbound_cert_file=str(certs / "ops-probe.pem"),
                          outbound_key_file=str(certs / "ops-probe-key.pem"))

        async def calls() -> tuple[int, str]:
            channel = Channel("127.0.0.1", server.grpc_port, ssl=client_context(probe, grpc=True))
            try:
                health = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=5)
                echo = await platform_grpc.PlatformServiceStub(channel).Echo(platform_pb2.EchoRequest(message="ok"),
                                                                             timeout=5)
                return health.status, echo.message
            finally:
                channel.close()

        assert asyncio.run(calls()) == (HealthCheckResponse.SERVING, "ok")
        # SIGHUP re-reads the files: the server keeps serving and says so.
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificates reloaded" not in server.log_path.read_text():
            assert time.monotonic() < deadline, server.log_path.read_text()
            time.sleep(0.05)
        with urllib.request.urlopen(url, timeout=5, context=trusting) as resp:
            assert resp.status == 200
        assert server.terminate() == 0
    finally:
        server.stop()
