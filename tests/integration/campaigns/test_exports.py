"""Reports as CSV and XLSX files against the real app: every report name parses back with its header and values, a
cell that would start a formula stays text, and bad names, callers and ranges get clear errors."""

from __future__ import annotations

import csv
import io
import statistics
import time
import zipfile

import openpyxl
import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.campaigns.test_reports import bid_request, live_campaign, notice, rolled_up
from tests.integration.retail.helpers import booked, customer, pay, seed_catalog

HOUR = 3600
EVIL = '=HYPERLINK("http://evil.example","click")'
NAMES = ("campaigns", "campaign_summary", "orders", "loyalty")


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock):
    """A live campaign with bids, a win and a paid order rolled up; a second campaign named like a formula; a
    loyalty member with stars."""
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", live_campaign("spring"), audit=False)
    await platform.campaigns.create("test", live_campaign("evil", name=EVIL, offer_ids=[]), audit=False)
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    _, admin = await platform.api_keys.create("ops", "admin")
    exchange_h, admin_h = {"X-Api-Key": exchange}, {"X-Api-Key": admin}
    bids = []
    for k in range(3):
        resp = await client.post("/v1/bid", json=bid_request(f"r{k}"), headers=exchange_h)
        assert resp.status == 200
        bids.append((await resp.json())["seatbid"][0]["bid"][0])
    await notice(client, bids[0]["nurl"], "2.0")
    await seed_catalog(platform, clock)
    buyer = await customer(client, "ana")
    order = await booked(client, buyer, clock)
    assert (await pay(client, buyer, order["id"])).status == 200
    await platform.loyalty.earn("-member", 12_345, "web", "txn-1")  # an id a spreadsheet would take for a formula
    await rolled_up(client)
    return client, exchange_h, admin_h, order


async def fetch(client, headers, name: str, fmt: str, **params) -> bytes:
    resp = await client.get(f"/v1/reports/{name}.{fmt}", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    if fmt == "csv":
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    else:
        assert resp.headers["Content-Type"] == ("application/vnd.openxmlformats-officedocument."
                                                "spreadsheetml.sheet")
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="{name}-') and disposition.endswith(f'.{fmt}"')
    return await resp.read()


def csv_rows(body: bytes) -> list[dict[str, str]]:
    assert b"\r\n" in body  # RFC 4180 line ends
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


def xlsx_rows(body: bytes) -> list[dict[str, object]]:
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert len(book.worksheets) == 1
    header, *rows = book.worksheets[0].iter_rows(values_only=True)
    return [dict(zip(header, row, strict=True)) for row in rows]  # type: ignore[arg-type]


async def test_every_report_parses_back_from_csv_and_xlsx_with_its_header(shop):
    client, _, admin, _ = shop
    headers = {}
    for name in NAMES:
        from_csv = csv_rows(await fetch(client, admin, name, "csv"))
        from_xlsx = xlsx_rows(await fetch(client, admin, name, "xlsx"))
        assert len(from_csv) == len(from_xlsx) >= 1, name
        assert list(from_csv[0]) == list(from_xlsx[0]), name
        headers[name] = list(from_csv[0])
    assert headers["campaigns"][:5] == ["campaign_id", "name", "state", "granularity", "period_start"]
    assert headers["orders"][:3] == ["order_id", "state", "owner"]
    assert headers["loyalty"][:4] == ["user_id", "tier", "balance_stars", "lifetime_stars"]


async def test_the_values_are_the_reports_numbers_as_numbers(shop):
    client, _, admin, order = shop
    params = {"granularity": "hour"}
    spring_csv = [r for r in csv_rows(await fetch(client, admin, "campaigns", "csv", **params))
                  if r["campaign_id"] == "spring"]
    spring_xlsx = [r for r in xlsx_rows(await fetch(client, admin, "campaigns", "xlsx", **params))
                   if r["campaign_id"] == "spring"]
    assert sum(int(r["bids"]) for r in spring_csv) == 3 and sum(int(r["wins"]) for r in spring_csv) == 1
    assert sum(r["bids"] for r in spring_xlsx) == 3  # type: ignore[misc]
    assert all(isinstance(r["bids"], int) for r in spring_xlsx)
    assert spring_csv[0]["period_start"].endswith(":00:00Z") and spring_csv[0]["granularity"] == "hour"
    assert sum(int(r["revenue_cents"]) for r in spring_csv) == order["total_cents"]

    summary = {r["campaign_id"]: r for r in xlsx_rows(await fetch(client, admin, "campaign_summary", "xlsx"))}
    assert set(summary) == {"spring", "evil"}
    assert summary["spring"]["bids"] == 3 and summary["spring"]["spend_micros"] == 2_000
    assert summary["spring"]["win_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert summary["evil"]["bids"] == 0 and summary["evil"]["win_rate"] is None

    orders_csv = csv_rows(await fetch(client, admin, "orders", "csv"))
    stored = client.app[PLATFORM].order_store.get(order["id"])
    assert [(r["order_id"], r["state"], r["owner"]) for r in orders_csv] == [(order["id"], stored.state, stored.owner)]
    assert int(orders_csv[0]["total_cents"]) == order["total_cents"] and orders_csv[0]["currency"] == order["currency"]
    orders_xlsx = xlsx_rows(await fetch(client, admin, "orders", "xlsx"))
    assert orders_xlsx[0]["total_cents"] == order["total_cents"]
    assert str(orders_xlsx[0]["created_at"]).endswith("Z")

    members = {r["user_id"]: r for r in xlsx_rows(await fetch(client, admin, "loyalty", "xlsx"))}
    assert members["-member"]["balance_stars"] > 0  # type: ignore[operator]
    assert members["-member"]["tier"] == "Green"
    assert members["-member"]["lifetime_stars"] == members["-member"]["balance_stars"]


async def test_cells_that_would_start_a_formula_stay_text(shop):
    client, _, admin, _ = shop
    summary = {r["campaign_id"]: r for r in csv_rows(await fetch(client, admin, "campaign_summary", "csv"))}
    assert summary["evil"]["name"] == "'" + EVIL
    assert summary["spring"]["name"] == "Spring"
    members = csv_rows(await fetch(client, admin, "loyalty", "csv"))
    assert "'-member" in [r["user_id"] for r in members]

    body = await fetch(client, admin, "campaign_summary", "xlsx")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
        xml = b"".join(archive.read(n) for n in sheets)
    assert b"<f>" not in xml and b"<f " not in xml  # no formula anywhere
    sheet = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    cells = [c for row in sheet.iter_rows() for c in row if c.value == EVIL]
    assert len(cells) == 1 and cells[0].data_type == "s"


async def test_an_unknown_report_is_404_naming_the_known_ones(shop):
    client, _, admin, _ = shop
    for fmt in ("csv", "xlsx"):
        resp = await client.get(f"/v1/reports/nope.{fmt}", headers=admin)
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert sorted(error["details"]["reports"]) == sorted(NAMES)
        assert all(name in error["message"] for name in NAMES)


async def test_only_admins_get_reports(shop):
    client, exchange, _, _ = shop
    buyer = await customer(client, "bob")
    for headers in (exchange, buyer):
        assert (await client.get("/v1/reports/orders.csv", headers=headers)).status == 403
    assert (await client.get("/v1/reports/orders.xlsx")).status in (401, 403)


@pytest.mark.parametrize("params, message", [
    ({"from": "yesterday"}, "from must be epoch seconds or an ISO 8601 date"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from must be before to"),
    ({"to": "-5"}, "to must be epoch seconds"),
    ({"from": "1e11"}, "from must be before to"),  # `to` defaults to now, for orders too
    ({"granularity": "week"}, "granularity"),
    ({"bogus": "1"}, "unknown query parameter"),
])
@pytest.mark.parametrize("name", ["campaigns", "orders"])
async def test_bad_parameters_get_clear_errors(shop, name, params, message):
    client, _, admin, _ = shop
    resp = await client.get(f"/v1/reports/{name}.csv", params=params, headers=admin)
    assert resp.status in (400, 422)
    assert message in (await resp.json())["error"]["message"]


async def test_an_hourly_campaigns_export_past_93_days_asks_for_days(shop):
    client, _, admin, _ = shop
    resp = await client.get("/v1/reports/campaigns.xlsx", headers=admin,
                            params={"from": "2025-01-01", "to": "2026-01-01", "granularity": "hour"})
    assert resp.status in (400, 422) and "granularity=day" in (await resp.json())["error"]["message"]


async def test_orders_outside_the_range_are_left_out_and_too_many_rows_are_refused(shop, clock, monkeypatch):
    client, _, admin, order = shop
    clock.advance(1)  # `to` defaults to now, which a `from` must be before
    before = {"to": str(order["created_at"] - 1)}
    assert csv_rows(await fetch(client, admin, "orders", "csv", **before)) == []
    assert len(csv_rows(await fetch(client, admin, "orders", "csv", **{"from": str(order["created_at"])}))) == 1
    import app.exports
    monkeypatch.setattr(app.exports, "MAX_ROWS", 0)
    resp = await client.get("/v1/reports/orders.csv", headers=admin)
    assert resp.status == 422
    assert "narrower" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("params, field", [
    ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02"}, "from"),
    ({"from": "9999-12-30", "to": "9999-12-31T23:59:59-12:00"}, "from"),
    ({"from": "2026-01-01", "to": "9999-12-31"}, "to"),
    ({"to": "1969-12-31T23:59:59Z"}, "to"),
])
async def test_dates_outside_the_epoch_seconds_range_are_400_naming_the_parameter(shop, params, field):
    client, _, admin, _ = shop
    for name in NAMES:
        for fmt in ("csv", "xlsx"):
            resp = await client.get(f"/v1/reports/{name}.{fmt}", params=params, headers=admin)
            assert resp.status == 400, (name, fmt, await resp.text())
            assert (await resp.json())["error"]["details"] == {"field": field}, (name, fmt)


async def test_the_campaigns_export_of_a_thousand_campaigns_answers_in_well_under_50_ms(shop):
    """Each campaign's series is read for the campaigns with activity alone, and today's spend not at all."""
    client, _, admin, _ = shop
    platform = client.app[PLATFORM]
    for n in range(1_000):
        await platform.campaigns.create("test", live_campaign(f"k{n:04d}", offer_ids=[]), audit=False)
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        rows = csv_rows(await fetch(client, admin, "campaigns", "csv"))
        timings.append(time.perf_counter() - began)
    assert {r["campaign_id"] for r in rows} == {"spring"}  # the one with bids
    assert sum(int(r["bids"]) for r in rows) == 3
    assert statistics.median(timings) < 0.05, timings
