"""Every admin change, in whichever domain, is in the audit log under the person who made it."""

DAY = 86_400


async def test_changes_in_every_domain_are_audited_with_their_actor(client, clock, admin_headers):
    me = await (await client.get("/v1/me", headers=admin_headers)).json()
    now = clock.now()
    flight = {"id": "CT301-a", "airline": "CT", "number": "CT301", "origin": "LIS", "destination": "FNC",
              "departure_at": now + DAY, "arrival_at": now + DAY + 6000,
              "cabins": {"economy": {"capacity": 100, "base_fare_cents": 5000}}}
    campaign = {"name": "Spring", "advertiser_domain": "contrail.example", "bid_cap_micros": 1_000_000,
                "daily_budget_micros": 10_000_000,
                "creatives": [{"id": "s1", "format": "banner", "markup": "<b>", "w": 300, "h": 250}]}
    promotion = {"id": "spring", "name": "Spring bonus", "bonus_rate": 0.5, "starts_at": now, "ends_at": now + DAY}
    steps = [
        client.post("/v1/admin/flights", json=flight, headers=admin_headers),
        client.patch("/v1/admin/flights/CT301-a", json={"status": "cancelled"}, headers=admin_headers),
        client.post("/v1/admin/campaigns", json=campaign, headers=admin_headers),
        client.post("/v1/admin/loyalty/promotions", json=promotion, headers=admin_headers),
        client.post("/v1/suppressions", json={"entries": [{"identifier": "a@example.com"}]}, headers=admin_headers),
        client.request("DELETE", "/v1/suppressions", json={"entries": [{"identifier": "a@example.com"}]},
                       headers=admin_headers),
    ]
    for step in steps:
        resp = await step
        assert resp.status in (200, 201), await resp.text()
    refused = await client.patch("/v1/admin/flights/CT999", json={"status": "cancelled"}, headers=admin_headers)
    assert refused.status == 404  # a change that did not happen is not in the log

    audit = (await (await client.get("/v1/admin/audit", headers=admin_headers)).json())["items"]
    actions = [(e["action"], e["actor"]) for e in reversed(audit)]
    actor = f"user:{me['id']}"
    assert actions == [(a, actor) for a in ("flight.create", "flight.update", "campaign.create", "promotion.put",
                                            "suppression.add", "suppression.remove")], actions
    assert audit[-1]["target"] == "CT301-a"
