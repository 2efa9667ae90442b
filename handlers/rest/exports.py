"""Reports as files for spreadsheets and BI tools: GET /v1/reports/{name}.csv and .xlsx (admins only)."""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from aiohttp import web

from app.campaigns.reports import parse_time
from app.exports import ExportRange, Exports, Table, iso
from app.runtime.clock import Clock
from app.tabular import CSV_TYPE, XLSX_TYPE, to_csv, to_xlsx
from handlers.rest.common import endpoint

ADMIN = ("admin",)
_NAMES = "campaigns (per campaign and day or hour), campaign_summary, orders, loyalty"


class ExportQuery(msgspec.Struct, forbid_unknown_fields=True):
    from_: str | None = msgspec.field(default=None, name="from")  # epoch seconds or ISO 8601
    to: str | None = None                                         # default: now
    granularity: Literal["hour", "day"] = "day"                   # the campaigns report's rows


class ExportsApi:
    def __init__(self, exports: Exports, clock: Clock) -> None:
        self._exports = exports
        self._clock = clock

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/reports/{name}.csv", self.csv)
        router.add_get("/v1/reports/{name}.xlsx", self.xlsx)

    async def _table(self, request: web.Request, query: ExportQuery) -> Table:
        span = ExportRange(parse_time(query.from_, "from"), parse_time(query.to, "to"), query.granularity)
        return await self._exports.table(request.match_info["name"], span)

    def _disposition(self, table: Table, extension: str) -> dict[str, str]:
        stamp = (iso(self._clock.now()) or "")[:10]  # the UTC day it was made
        return {"Content-Disposition": f'attachment; filename="{table.name}-{stamp}.{extension}"',
                "Cache-Control": "no-store"}

    @endpoint(f"A report as CSV (RFC 4180, UTF-8): {_NAMES}. Cells that would start a formula get a leading "
              "apostrophe", tags=("reports",), roles=ADMIN, query=ExportQuery, response=bytes,
              content_type="text/csv", errors=(404, 422))
    async def csv(self, request: web.Request, principal, query: ExportQuery) -> web.Response:
        table = await self._table(request, query)
        body = await asyncio.to_thread(to_csv, table.header, table.rows)
        return web.Response(body=body, headers={"Content-Type": CSV_TYPE, **self._disposition(table, "csv")})

    @endpoint(f"A report as an Excel workbook with one sheet: {_NAMES}. Numbers are numbers; times are ISO 8601 "
              "UTC text", tags=("reports",), roles=ADMIN, query=ExportQuery, response=bytes, content_type=XLSX_TYPE,
              errors=(404, 422))
    async def xlsx(self, request: web.Request, principal, query: ExportQuery) -> web.Response:
        table = await self._table(request, query)
        body = await asyncio.to_thread(to_xlsx, table.name, table.header, table.rows)
        return web.Response(body=body, headers={"Content-Type": XLSX_TYPE, **self._disposition(table, "xlsx")})
