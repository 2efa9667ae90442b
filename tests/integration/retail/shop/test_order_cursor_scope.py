"""An order-list cursor of the old kind (an order id) is resolved among the caller's own orders only: another
customer's order id answers exactly as an id that names no order, so the list reveals neither that the order exists
nor when it was made. Admins page through everyone's orders, from anyone's order id."""

from handlers.rest.common import encode_cursor
from tests.integration.retail.helpers import booked, customer


async def _error(resp) -> tuple[int, dict]:
    body = await resp.json()
    return resp.status, {k: v for k, v in body.get("error", body).items() if k != "request_id"}


async def test_another_customers_order_id_as_a_cursor_answers_as_an_unknown_one(
        shop, clock, customer_headers, admin_headers):
    client, _ = shop
    mine = [(await booked(client, customer_headers, clock))["id"] for _ in range(3)]
    other = await customer(client, "other")
    clock.advance(60)
    theirs = (await booked(client, other, clock))["id"]

    unknown = await client.get("/v1/orders", params={"after": encode_cursor({"id": "ord_" + "0" * 32})},
                               headers=customer_headers)
    foreign = await client.get("/v1/orders", params={"after": encode_cursor({"id": theirs})},
                               headers=customer_headers)
    status, error = await _error(unknown)
    assert status == 400 and "invalid 'after' cursor" in error["message"]
    assert await _error(foreign) == (status, error)

    # Their own order ids still page on, and an admin's from anyone's.
    own = await (await client.get("/v1/orders", params={"after": encode_cursor({"id": mine[0]})},
                                  headers=customer_headers)).json()
    assert [o["id"] for o in own["items"]] == mine[1:]
    staff = await client.get("/v1/orders", params={"after": encode_cursor({"id": mine[-1]})}, headers=admin_headers)
    assert staff.status == 200 and [o["id"] for o in (await staff.json())["items"]] == [theirs]
    # And the other customer pages on from their own order as before.
    resp = await client.get("/v1/orders", params={"after": encode_cursor({"id": theirs})}, headers=other)
    assert resp.status == 200 and (await resp.json())["items"] == []
