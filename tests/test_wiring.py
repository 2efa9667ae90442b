"""How the pieces meet: only through constructors and the bus (no hook set on a service after it is built), and
every bounded cache is exported with its bound."""

import ast

from tests.conftest import ROOT

CACHES = ("verified_tokens", "unknown_api_keys", "rate_limit_ip", "rate_limit_principal", "rate_limit_exchange",
          "profiles_l1", "web_activity", "ingest_sessions", "mailbox")


def test_the_composition_root_sets_no_hook_on_a_built_service():
    """`self.orders.on_paid = ...` is how domains used to meet; they subscribe to the bus instead."""
    offenders = []
    for path in (ROOT / "app" / "platform.py", ROOT / "app" / "main.py", *(ROOT / "app").glob("*/wiring.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # a function, method or object handed to a built service (flags and numbers are state, not hooks)
            hooked = isinstance(node, ast.Assign) and not isinstance(node.value, ast.Constant)
            for target in node.targets if hooked else []:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(target)}")
    assert offenders == []


async def test_every_bounded_cache_reports_its_size_and_bound(client):
    metrics = await (await client.get("/metrics")).text()
    for name in CACHES:
        assert f'contrail_cache_capacity{{cache="{name}"}}' in metrics, name
        assert f'contrail_cache_entries{{cache="{name}"}}' in metrics, name
    await client.post("/v1/auth/guest")
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_cache_entries{cache="rate_limit_ip"} 1.0' in metrics
