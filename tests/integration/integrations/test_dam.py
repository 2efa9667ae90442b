"""AEM Assets, Bynder and Aprimo adaptors against loopback servers that answer in each DAM's shapes, page their
results, check credentials, and fail on purpose; and the sync helper that picks changed assets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.http.dam import AemAssets, AprimoAssets, BynderAssets
from adapters.http.retry import IntegrationError, RetryPolicy
from app.campaigns.wiring import asset_library
from app.config import IntegrationsConfig, load_config
from state.integrations import Asset, changed_since
from tests.integration.integrations.helpers import Sleeps

FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)


def configured(**env: str) -> IntegrationsConfig:
    """[integrations] as the app loads it from CONTRAIL__INTEGRATIONS__<KEY> variables."""
    return load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k.upper()}": v for k, v in env.items()}).integrations


# --- Adobe Experience Manager ----------------------------------------------------------------------------------------

AEM_ASSETS = {
    "campaigns/summer/hero.jpg": {"dc:format": "image/jpeg", "dc:title": "Hero", "modified": "2026-05-01T10:00:00Z"},
    "campaigns/summer/banner.png": {"dc:format": "image/png", "modified": "2026-05-02T10:00:00Z"},
    "campaigns/summer/terms.pdf": {"dc:format": "application/pdf", "modified": "2026-05-03T10:00:00Z"},
}


AEM_TOKEN = "aem-access-token"


class FakeAem:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header, as sent
        self.fail_next: list[int] = []
        self.held: asyncio.Event | None = None  # set: each answer waits for it

    def _entity(self, path: str, origin: str) -> dict[str, Any]:
        meta = AEM_ASSETS[path]
        return {"class": ["assets/asset"],
                "properties": {"name": path.rsplit("/", 1)[-1], "jcr:lastModified": meta["modified"],
                               "metadata": {k: v for k, v in meta.items() if k != "modified"}},
                "links": [{"rel": ["self"], "href": f"{origin}/api/assets/{path}.json"},
                          {"rel": ["content"], "href": f"{origin}/content/dam/{path}"}]}

    async def assets(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        self.authorizations.append(request.headers.get("Authorization"))
        if self.held is not None:
            await self.held.wait()
        # A technical account's Basic credentials, or an access token (AEM as a Cloud Service) as a bearer.
        if request.headers.get("Authorization") not in (aiohttp.encode_basic_auth("dam-reader", "s3cret"),
                                                        f"Bearer {AEM_TOKEN}"):
            return web.Response(status=401, text="Unauthorized")
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0), text="Service Unavailable")
        path = request.match_info["path"].removesuffix(".json")
        origin = str(request.url.origin())
        if path in AEM_ASSETS:
            return web.json_response(self._entity(path, origin))
        children = sorted(p for p in AEM_ASSETS if p.rsplit("/", 1)[0] == path)
        if not children:
            return web.json_response({"class": ["core/response"], "properties": {"status.code": 404,
                                                                                 "status.message": "Not Found"}},
                                     status=404)
        entities: list[dict[str, Any]] = [{"class": ["assets/folder"], "properties": {"name": "archive"}}]
        entities += [self._entity(p, origin) for p in children]
        offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 20))
        return web.json_response({"class": ["assets/folder"],
                                  "properties": {"name": path.rsplit("/", 1)[-1],
                                                 "srn:paging": {"offset": offset, "limit": limit,
                                                                "total": len(entities)}},
                                  "entities": entities[offset:offset + limit]})

    async def querybuilder(self, request: web.Request) -> web.Response:
        q = request.query
        assert (q["path"], q["type"], q["p.hits"]) == ("/content/dam", "dam:Asset", "full")
        hits = [{"jcr:path": f"/content/dam/{p}", "jcr:primaryType": "dam:Asset",
                 "jcr:content": {"jcr:lastModified": m["modified"],
                                 "metadata": {k: v for k, v in m.items() if k != "modified"}}}
                for p, m in AEM_ASSETS.items() if q["fulltext"].lower() in p]
        return web.json_response({"success": True, "results": len(hits), "total": len(hits), "offset": 0,
                                  "hits": hits})


@pytest.fixture
async def aem(aiohttp_server):
    fake = FakeAem()
    app = web.Application()
    app.router.add_get("/api/assets/{path:.+}", fake.assets)
    app.router.add_get("/bin/querybuilder.json", fake.querybuilder)
    server = await aiohttp_server(app)
    client = AemAssets(str(server.make_url("")), basic=("dam-reader", "s3cret"), page_size=2, policy=FAST,
                       sleep=Sleeps())
    yield fake, client
    await client.close()


async def test_aem_folder_lists_its_assets_across_pages_and_skips_subfolders(aem):
    fake, client = aem
    assets = await client.list_folder("/campaigns/summer/")
    assert [a.id for a in assets] == ["campaigns/summer/banner.png", "campaigns/summer/hero.jpg",
                                      "campaigns/summer/terms.pdf"]
    hero = assets[1]
    assert (hero.dam, hero.name, hero.mime, hero.version) == ("aem", "hero.jpg", "image/jpeg", "2026-05-01T10:00:00Z")
    assert hero.url == f"{client.base_url}/content/dam/campaigns/summer/hero.jpg"
    assert hero.metadata["dc:title"] == "Hero"
    assert len(fake.requests) == 2  # 4 entities (one a folder) in pages of 2


async def test_aem_single_asset_and_search(aem):
    _, client = aem
    terms = await client.metadata("campaigns/summer/terms.pdf")
    assert (terms.name, terms.mime, terms.modified_at) == ("terms.pdf", "application/pdf", "2026-05-03T10:00:00Z")
    found = await client.search("banner")
    assert [(a.id, a.mime) for a in found] == [("campaigns/summer/banner.png", "image/png")]


async def test_aem_missing_folder_and_bad_credentials(aem):
    fake, client = aem
    with pytest.raises(IntegrationError) as caught:
        await client.list_folder("campaigns/winter")
    assert caught.value.status == 404
    stranger = AemAssets(client.base_url, basic=("dam-reader", "wrong"), policy=FAST)
    try:
        with pytest.raises(IntegrationError) as caught:
            await stranger.metadata("campaigns/summer/hero.jpg")
        assert caught.value.status == 401
    finally:
        await stranger.close()


async def test_aem_503_is_retried(aem):
    fake, client = aem
    fake.fail_next = [503]
    assert (await client.metadata("campaigns/summer/hero.jpg")).name == "hero.jpg"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("credentials, sent", [
    # On premises: a technical account's Basic credentials (base64 of "dam-reader:s3cret").
    ({"aem_login": "dam-reader", "aem_password": "s3cret"}, "Basic ZGFtLXJlYWRlcjpzM2NyZXQ="),
    # AEM as a Cloud Service: an access token as a bearer, as before.
    ({"dam_token": AEM_TOKEN}, f"Bearer {AEM_TOKEN}"),
], ids=["basic", "bearer"])
async def test_the_configured_aem_credentials_reach_the_wire(aem, credentials, sent):
    """integrations.aem_login/aem_password (or dam_token), from the environment through the app's wiring."""
    fake, client = aem
    library = asset_library(configured(dam="aem", dam_url=client.base_url, **credentials), FAST,
                            lambda tool, outcome: None)
    assert library is not None
    try:
        assert (await library.metadata("campaigns/summer/hero.jpg")).name == "hero.jpg"
        assert [a.name for a in await library.list_folder("campaigns/summer")] == ["banner.png", "hero.jpg",
                                                                                  "terms.pdf"]
    finally:
        await library.close()
    assert fake.authorizations == [sent] * len(fake.requests) and len(fake.requests) == 2


# --- Bynder ----------------------------------------------------------------------------------------------------------

BYNDER_MEDIA = [
    {"id": "A1B2", "name": "Funchal sunset", "type": "image", "extension": ["jpg"], "dateModified":
     "2026-04-01T08:00:00Z", "thumbnails": {"webimage": "https://cdn.bynder.test/A1B2/web.jpg",
                                            "thul": "https://cdn.bynder.test/A1B2/thul.jpg"},
     "original": "https://cdn.bynder.test/A1B2/original.jpg", "collections": ["C-SUMMER"]},
    {"id": "C3D4", "name": "Porto bridge", "type": "image", "extension": ["png"], "dateModified":
     "2026-04-02T08:00:00Z", "version": 3, "thumbnails": {"webimage": "https://cdn.bynder.test/C3D4/web.png"},
     "collections": ["C-SUMMER"]},
    {"id": "E5F6", "name": "Sunset promo", "type": "video", "extension": ["mp4"], "dateModified":
     "2026-04-03T08:00:00Z", "thumbnails": {"webimage": "https://cdn.bynder.test/E5F6/web.jpg"},
     "collections": []},
]


class FakeBynder:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def media(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer bynder-token":
            return web.json_response({"message": "Unauthorized", "statuscode": 401}, status=401)
        query = dict(request.query)
        self.requests.append(query)
        items = BYNDER_MEDIA
        if "keyword" in query:
            items = [m for m in items if query["keyword"].lower() in str(m["name"]).lower()]
        if "collectionId" in query:
            items = [m for m in items if query["collectionId"] in m["collections"]]  # type: ignore[operator]
        page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
        return web.json_response(items[(page - 1) * limit:page * limit])

    async def one(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer bynder-token":
            return web.json_response({"message": "Unauthorized", "statuscode": 401}, status=401)
        for m in BYNDER_MEDIA:
            if m["id"] == request.match_info["id"]:
                return web.json_response(m)
        return web.json_response({"message": "Media item not found", "statuscode": 404}, status=404)


@pytest.fixture
async def bynder(aiohttp_server):
    fake = FakeBynder()
    app = web.Application()
    app.router.add_get("/api/v4/media/", fake.media)
    app.router.add_get("/api/v4/media/{id}/", fake.one)
    server = await aiohttp_server(app)
    client = BynderAssets(str(server.make_url("")), "bynder-token", page_size=1, policy=FAST)
    yield fake, client
    await client.close()


async def test_bynder_search_reads_every_page(bynder):
    fake, client = bynder
    found = await client.search("sunset")
    assert [a.id for a in found] == ["A1B2", "E5F6"]
    assert [r["page"] for r in fake.requests] == ["1", "2", "3"]  # the third page comes back short (empty)
    sunset, promo = found
    assert (sunset.mime, sunset.url, sunset.version) == ("image/jpeg", "https://cdn.bynder.test/A1B2/original.jpg",
                                                         "2026-04-01T08:00:00Z")
    assert (promo.mime, promo.url) == ("video/mp4", "https://cdn.bynder.test/E5F6/web.jpg")


async def test_bynder_collection_and_one_asset(bynder):
    _, client = bynder
    assert [a.name for a in await client.list_folder("C-SUMMER")] == ["Funchal sunset", "Porto bridge"]
    bridge = await client.metadata("C3D4")
    assert (bridge.version, bridge.mime, bridge.modified_at) == ("3", "image/png", "2026-04-02T08:00:00Z")
    with pytest.raises(IntegrationError) as caught:
        await client.metadata("NOPE")
    assert caught.value.status == 404 and "Media item not found" in caught.value.message


# --- Aprimo ----------------------------------------------------------------------------------------------------------

APRIMO_RECORDS = [
    {"id": "7f1c0000-0000-0000-0000-000000000001", "title": "lisbon-hero.jpg", "modifiedOn": "2026-03-01T09:00:00Z",
     "contentType": "Asset", "status": "released", "classification": "cls-campaigns"},
    {"id": "7f1c0000-0000-0000-0000-000000000002", "title": "fares-table.pdf", "modifiedOn": "2026-03-02T09:00:00Z",
     "contentType": "Asset", "status": "released", "classification": "cls-campaigns"},
]


class FakeAprimo:
    def __init__(self) -> None:
        self.searches: list[dict[str, Any]] = []
        # The expressions this tenant can search with: full text over titles, and a classification's id.
        self.fulltext_expressions = {"FullText = ?"}
        self.folder_expressions = {"Classification.Id = ?"}

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != "Bearer aprimo-token":
            return web.json_response({"message": "Authorization has been denied for this request."}, status=401)
        if request.headers.get("API-VERSION") != "1":
            return web.json_response({"message": "API-VERSION header is required"}, status=400)
        return None

    def _record(self, record: dict[str, Any], request: web.Request) -> dict[str, Any]:
        shown = {k: v for k, v in record.items() if k not in ("classification", "title")}
        if "title" in request.headers.get("select-record", "").split(","):
            shown["title"] = record["title"]
        return {"_links": {"self": {"href": f"/api/core/record/{record['id']}"}}, **shown}

    async def search(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        self.searches.append(body)
        expression = body["searchExpression"]
        (value,) = expression["parameters"]
        if expression["expression"] in self.fulltext_expressions:
            items = [r for r in APRIMO_RECORDS if value.lower() in r["title"]]
        elif expression["expression"] in self.folder_expressions:
            items = [r for r in APRIMO_RECORDS if r["classification"] == value]
        else:
            return web.json_response({"message": "Invalid search expression"}, status=400)
        page, size = int(request.query.get("page", 1)), int(request.query.get("pageSize", 50))
        return web.json_response({"page": page, "pageSize": size, "_total": len(items),
                                  "items": [self._record(r, request) for r in items[(page - 1) * size:page * size]]})

    async def record(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        for r in APRIMO_RECORDS:
            if r["id"] == request.match_info["id"]:
                return web.json_response(self._record(r, request))
        return web.json_response({"message": "Record not found"}, status=404)


@pytest.fixture
async def aprimo(aiohttp_server):
    fake = FakeAprimo()
    app = web.Application()
    app.router.add_post("/api/core/search/records", fake.search)
    app.router.add_get("/api/core/record/{id}", fake.record)
    server = await aiohttp_server(app)
    client = AprimoAssets(str(server.make_url("")), "aprimo-token", page_size=1, policy=FAST)
    yield fake, client
    await client.close()


async def test_aprimo_classification_search_and_record(aprimo):
    fake, client = aprimo
    folder = await client.list_folder("cls-campaigns")
    assert [(a.name, a.mime) for a in folder] == [("lisbon-hero.jpg", "image/jpeg"),
                                                  ("fares-table.pdf", "application/pdf")]
    assert folder[0].url == f"{client.base_url}/dam/contentitems/7f1c0000-0000-0000-0000-000000000001"
    assert folder[0].version == "2026-03-01T09:00:00Z"
    found = await client.search("fares")
    assert [a.id for a in found] == ["7f1c0000-0000-0000-0000-000000000002"]
    assert fake.searches[-1] == {"searchExpression": {"expression": "FullText = ?", "parameters": ["fares"]}}
    one = await client.metadata("7f1c0000-0000-0000-0000-000000000001")
    assert one.name == "lisbon-hero.jpg" and one.metadata["status"] == "released"


async def test_aprimo_query_is_a_parameter_never_spliced_into_the_expression(aprimo):
    fake, client = aprimo
    assert await client.search("x' OR Title = '*") == []
    assert fake.searches[-1]["searchExpression"] == {"expression": "FullText = ?", "parameters": ["x' OR Title = '*"]}


async def test_aprimo_refuses_a_stale_token(aprimo):
    _, client = aprimo
    stale = AprimoAssets(client.base_url, "expired", policy=FAST)
    try:
        with pytest.raises(IntegrationError) as caught:
            await stale.search("x")
        assert caught.value.status == 401 and "denied" in caught.value.message
    finally:
        await stale.close()


async def test_the_configured_aprimo_expressions_reach_the_wire(aprimo):
    """integrations.aprimo_fulltext_expression and aprimo_folder_expression, from the environment through the app's
    wiring: a tenant whose searchable fields are not the defaults' is searched with its own."""
    fake, client = aprimo
    fake.fulltext_expressions = {"FieldName('DisplayTitle') = ?"}
    fake.folder_expressions = {"Classification.Id = ? AND Status = Released"}
    keys = {"dam": "aprimo", "dam_url": client.base_url, "dam_token": "aprimo-token"}
    default = asset_library(configured(**keys), FAST, lambda tool, outcome: None)
    tuned = asset_library(configured(**keys, aprimo_fulltext_expression="FieldName('DisplayTitle') = ?",
                                     aprimo_folder_expression="Classification.Id = ? AND Status = Released"),
                          FAST, lambda tool, outcome: None)
    assert default is not None and tuned is not None
    try:
        with pytest.raises(IntegrationError) as caught:  # the defaults do not search this tenant's fields
            await default.search("fares")
        assert caught.value.status == 400 and "Invalid search expression" in caught.value.message
        assert [a.name for a in await tuned.search("fares")] == ["fares-table.pdf"]
        assert [a.name for a in await tuned.list_folder("cls-campaigns")] == ["lisbon-hero.jpg", "fares-table.pdf"]
    finally:
        await default.close()
        await tuned.close()
    assert fake.searches == [
        {"searchExpression": {"expression": "FullText = ?", "parameters": ["fares"]}},
        {"searchExpression": {"expression": "FieldName('DisplayTitle') = ?", "parameters": ["fares"]}},
        {"searchExpression": {"expression": "Classification.Id = ? AND Status = Released",
                              "parameters": ["cls-campaigns"]}}]


# --- sync ------------------------------------------------------------------------------------------------------------

def test_changed_since_picks_new_and_changed_assets_only():
    def asset(asset_id: str, version: str) -> Asset:
        return Asset("bynder", asset_id, version, asset_id, "image/jpeg", "", None)

    assets = [asset("same", "1"), asset("changed", "3"), asset("new", "1")]
    assert [a.id for a in changed_since(assets, {"same": "1", "changed": "2", "gone": "9"})] == ["changed", "new"]
    assert changed_since([], {"a": "1"}) == []
