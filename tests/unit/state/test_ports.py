"""app/ holds its stores by the Protocols in state/ports.py; the SQLite stores in adapters/sqlite/ satisfy them,
and nothing but the composition root and the adapters themselves names an adapter."""

import ast
import inspect

import pytest

import state.ports as ports
from adapters.pii import PiiCipher
from adapters.sqlite.db import Database
from adapters.sqlite.migrate import Migration
from adapters.sqlite.uow import SqliteUnitOfWork
from tests.conftest import ROOT

# Ports whose adapter is not SQL: what implements them, checked the same way.
ELSEWHERE = {"ChangeFeed": "adapters.nats.changes.NatsChangeFeed",
             "SharedBids": "adapters.redis.delivery.RedisDeliveryStore",
             "SharedDspBids": "adapters.redis.dsp.RedisDspBids"}
PROTOCOLS = {name: obj for name, obj in vars(ports).items()
             if inspect.isclass(obj) and getattr(obj, "_is_protocol", False) and obj.__module__ == ports.__name__
             and name not in ELSEWHERE}


def _implementations():
    import importlib
    found = {}
    for path in sorted((ROOT / "adapters" / "sqlite").glob("*.py")):
        module = importlib.import_module(f"adapters.sqlite.{path.stem}")
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and name.startswith("Sqlite") and cls.__module__ == module.__name__:
                found[name.removeprefix("Sqlite")] = cls
    return found


def _members(cls) -> dict[str, object]:
    return {name: value for name, value in vars(cls).items() if not name.startswith("_") and callable(
        value.__func__ if isinstance(value, staticmethod) else value)}


def test_every_sqlite_store_has_a_protocol_and_the_reverse():
    assert set(_implementations()) == set(PROTOCOLS)
    assert len(PROTOCOLS) >= 15


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_sqlite_store_matches_its_protocol_signature_by_signature(name, tmp_path):
    protocol, impl = PROTOCOLS[name], _implementations()[name]
    db = Database(tmp_path / "x.db", [Migration(1, "x", "SELECT 1")])
    facets = {"OrderWrites": "orders", "OfferWrites": "offers", "LedgerWrites": "loyalty",
              "InventoryWrites": "inventory"}
    if name in facets:  # a transaction's writes on one aggregate
        store = getattr(SqliteUnitOfWork(db, PiiCipher.generate()).begin(), facets[name])
        assert type(store) is impl
    else:
        # Stores that hold personal data seal it with the cipher they are given.
        store = impl(db, PiiCipher.generate()) if "pii" in inspect.signature(impl).parameters else impl(db)
    assert isinstance(store, protocol)
    for method, declared in _members(protocol).items():
        actual = inspect.getattr_static(impl, method)
        static = isinstance(actual, staticmethod)
        function = actual.__func__ if static else actual
        assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(declared), method
        wanted = list(inspect.signature(declared).parameters.values())[1:]  # without self
        got = list(inspect.signature(function).parameters.values())[0 if static else 1:]
        assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in wanted], method


@pytest.mark.parametrize("name", sorted(ELSEWHERE))
def test_other_adapters_match_their_protocol_signature_by_signature(name):
    import importlib
    module, _, cls = ELSEWHERE[name].rpartition(".")
    impl = getattr(importlib.import_module(module), cls)
    for method, declared in _members(getattr(ports, name)).items():
        function = inspect.getattr_static(impl, method)
        assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(declared), method
        wanted = list(inspect.signature(declared).parameters.values())
        got = list(inspect.signature(function).parameters.values())
        assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in wanted], method


def test_no_layer_but_the_composition_root_imports_an_adapter():
    """Dependencies point down: handlers, domains, entities and models never import adapters/."""
    offenders = []
    for layer in ("app", "handlers", "state", "ml"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            # the composition root: the platform, the app, and each domain's wiring (where it meets adapters)
            if where in ("app/platform.py", "app/main.py", "app/infra.py") or where.endswith("/wiring.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "adapters":
                    offenders.append(f"{path.relative_to(ROOT)}: from {node.module}")
                elif isinstance(node, ast.Import):
                    offenders += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names
                                  if a.name.split(".")[0] == "adapters"]
    assert offenders == []
