"""Every bounded cache is exported with its bound, through the real app."""

CACHES = ("verified_tokens", "unknown_api_keys", "rate_limit_ip", "rate_limit_principal", "rate_limit_exchange",
          "profiles_l1", "web_activity", "ingest_sessions", "mailbox")


async def test_every_bounded_cache_reports_its_size_and_bound(client):
    metrics = await (await client.get("/metrics")).text()
    for name in CACHES:
        assert f'contrail_cache_capacity{{cache="{name}"}}' in metrics, name
        assert f'contrail_cache_entries{{cache="{name}"}}' in metrics, name
    await client.post("/v1/auth/guest")
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_cache_entries{cache="rate_limit_ip"} 1.0' in metrics
