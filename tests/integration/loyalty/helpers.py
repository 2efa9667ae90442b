"""Shared calls for the loyalty tests: an earn and a balance through the API."""


async def earn(client, staff, user_id, amount, tx, **extra):
    body = {"user_id": user_id, "amount_cents": amount, "channel": extra.pop("channel", "pos"), "transaction_id": tx,
            **extra}
    return await client.post("/v1/loyalty/earn", json=body, headers=staff)


async def balance(client, headers, user_id):
    resp = await client.get(f"/v1/loyalty/balance/{user_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()
