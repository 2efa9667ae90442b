"""Digital asset management: the campaign team's images, videos and documents, read from where they are kept so a
campaign can use them and a sync task can pick up what changed.

Three styles of DAM behind one interface, `AssetLibrary`: `list_folder(folder)`, `search(query)` and
`metadata(asset_id)`, all answering `Asset`s (state/integrations.py, where `changed_since` picks the assets a
sync must fetch again).

Adobe Experience Manager, Assets HTTP API (Basic auth, "Authorization: Basic base64(login:password)" from
integrations.aem_login and aem_password, or a Bearer access token on AEM as a Cloud Service, integrations.dam_token):
  GET /api/assets/{folder}.json?offset=0&limit=N  -> a Siren folder:
      {"class": ["assets/folder"], "properties": {"name", "srn:paging": {"offset", "limit", "total"}},
       "entities": [{"class": ["assets/asset"], "properties": {"name", "metadata": {"dc:format", ...},
                     "jcr:lastModified" | "dc:modified"}, "links": [{"rel": ["self"|"content"|...], "href"}]},
                    {"class": ["assets/folder"], ...}]}        (sub-folders are skipped)
  GET /api/assets/{path}.json                      -> one asset, the same "properties"
  Search goes through the QueryBuilder, which the Assets HTTP API does not replace:
  GET /bin/querybuilder.json?path=/content/dam&type=dam:Asset&fulltext=Q&p.limit=N&p.hits=full&p.nodedepth=2
      -> {"hits": [{"jcr:path": "/content/dam/a/b.jpg", "jcr:content": {"jcr:lastModified",
                                                                         "metadata": {...}}}]}
  An asset's id is its path under /content/dam; AEM keeps no version number here, so its version is the last
  modification time.

Bynder, API v4 (Bearer permanent token or OAuth2 access token):
  GET /api/v4/media/?keyword=Q&page=1&limit=N      -> [{"id", "name", "type", "extension": ["jpg"], "dateModified",
                                                        "original"?, "thumbnails": {"webimage", "thul"}, ...}]
  GET /api/v4/media/?collectionId=C&page=1&limit=N -> a collection's assets, the "folder"
  GET /api/v4/media/{id}/                          -> one asset
  Pages are read until one comes back short. version: "version" when the account returns it, else "dateModified".
  url: "original" when the asset is public, else the "webimage" thumbnail.

Aprimo DAM, REST API (Bearer access token; every call sends "API-VERSION: 1" and "select-record: title"):
  POST /api/core/search/records?page=1&pageSize=N  {"searchExpression": {"expression": "FullText = ?",
                                                                         "parameters": [Q]}}
       -> {"page", "pageSize", "_total", "items": [{"id", "title", "modifiedOn", "contentType", "status", ...}]}
  The folder is a classification: expression "Classification.Id = ?" with the classification's id. Parameters are
  passed apart from the expression, so a query is never spliced into it. Both expressions are settings
  (integrations.aprimo_fulltext_expression, aprimo_folder_expression): searchable fields differ between tenants.
  GET /api/core/record/{id}                        -> one record, the same fields
  version: "version" when present, else "modifiedOn"; url: {base_url}/dam/contentitems/{id}.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.http.retry import OnAttempt, RetryPolicy, Sleep, ToolClient
from state.integrations import Asset, IntegrationError


def _guess_mime(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class AemAssets(ToolClient):
    """Adobe Experience Manager's Assets HTTP API. `basic` is (login, password) for Basic auth; or give `token` for a
    Bearer access token."""

    tool = "aem"

    def __init__(self, base_url: str, *, basic: tuple[str, str] | None = None, token: str | None = None,
                 page_size: int = 100, max_pages: int = 50, policy: RetryPolicy | None = None,
                 on_attempt: OnAttempt | None = None, sleep: Sleep | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        self._basic = aiohttp.encode_basic_auth(*basic) if basic else None
        self._token = token
        self.page_size = page_size
        self.max_pages = max_pages

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._basic:
            headers["Authorization"] = self._basic
        return headers

    async def list_folder(self, folder: str) -> list[Asset]:
        folder = folder.strip("/")
        assets: list[Asset] = []
        offset = 0
        for _ in range(self.max_pages):
            answer = await self._call("GET", f"/api/assets/{quote(folder)}.json",
                                      params={"offset": str(offset), "limit": str(self.page_size)})
            body = answer.body if isinstance(answer.body, dict) else {}
            entities = body.get("entities") or []
            for entity in entities:
                if "assets/asset" in (entity.get("class") or []):
                    assets.append(self._from_siren(f"{folder}/{entity.get('properties', {}).get('name', '')}",
                                                   entity))
            paging = (body.get("properties") or {}).get("srn:paging") or {}
            offset += len(entities)
            if not entities or offset >= int(paging.get("total", offset)):
                break
        return assets

    async def search(self, query: str) -> list[Asset]:
        answer = await self._call("GET", "/bin/querybuilder.json", params={
            "path": "/content/dam", "type": "dam:Asset", "fulltext": query, "p.limit": str(self.page_size),
            "p.hits": "full", "p.nodedepth": "2"})
        hits = (answer.body or {}).get("hits") or []
        assets = []
        for hit in hits:
            path = str(hit.get("jcr:path") or "")
            content = hit.get("jcr:content") or {}
            metadata = dict(content.get("metadata") or {})
            asset_id = path.removeprefix("/content/dam/")
            name = asset_id.rsplit("/", 1)[-1]
            modified = content.get("jcr:lastModified") or metadata.get("dc:modified")
            assets.append(Asset(self.tool, asset_id, str(modified or ""), name,
                                str(metadata.get("dc:format") or _guess_mime(name)),
                                f"{self.base_url}{path}", str(modified) if modified else None, metadata))
        return assets

    async def metadata(self, asset_id: str) -> Asset:
        asset_id = asset_id.strip("/")
        answer = await self._call("GET", f"/api/assets/{quote(asset_id)}.json")
        body = answer.body if isinstance(answer.body, dict) else {}
        if "assets/asset" not in (body.get("class") or []):
            raise IntegrationError(self.tool, f"{asset_id} is not an asset (class {body.get('class')!r})",
                                   answer.status)
        return self._from_siren(asset_id, body)

    def _from_siren(self, asset_id: str, entity: dict[str, Any]) -> Asset:
        props = entity.get("properties") or {}
        metadata = dict(props.get("metadata") or {})
        name = str(props.get("name") or asset_id.rsplit("/", 1)[-1])
        modified = (props.get("jcr:lastModified") or props.get("dc:modified") or metadata.get("dc:modified")
                    or metadata.get("jcr:lastModified"))
        url = f"{self.base_url}/content/dam/{asset_id}"
        for link in entity.get("links") or []:
            if "content" in (link.get("rel") or []) and link.get("href"):
                url = str(link["href"])
        return Asset(self.tool, asset_id, str(modified or ""), name,
                     str(metadata.get("dc:format") or _guess_mime(name)), url,
                     str(modified) if modified else None, metadata)


_BYNDER_MIME_TYPES = {"image": "image", "video": "video", "audio": "audio", "document": "application"}


class BynderAssets(ToolClient):
    """Bynder's API v4. The "folder" is a collection id."""

    tool = "bynder"

    def __init__(self, base_url: str, token: str, *, page_size: int = 100, max_pages: int = 50,
                 policy: RetryPolicy | None = None, on_attempt: OnAttempt | None = None,
                 sleep: Sleep | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        self._token = token
        self.page_size = page_size
        self.max_pages = max_pages

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {self._token}"}

    async def list_folder(self, folder: str) -> list[Asset]:
        return await self._pages({"collectionId": folder})

    async def search(self, query: str) -> list[Asset]:
        return await self._pages({"keyword": query})

    async def metadata(self, asset_id: str) -> Asset:
        answer = await self._call("GET", f"/api/v4/media/{quote(asset_id, safe='')}/")
        if not isinstance(answer.body, dict) or not answer.body.get("id"):
            raise IntegrationError(self.tool, f"media {asset_id} answered no asset", answer.status)
        return self._asset(answer.body)

    async def _pages(self, params: dict[str, str]) -> list[Asset]:
        assets: list[Asset] = []
        for page in range(1, self.max_pages + 1):
            answer = await self._call("GET", "/api/v4/media/",
                                      params={**params, "page": str(page), "limit": str(self.page_size)})
            items = answer.body if isinstance(answer.body, list) else []
            assets += [self._asset(item) for item in items if isinstance(item, dict)]
            if len(items) < self.page_size:
                break
        return assets

    def _asset(self, item: dict[str, Any]) -> Asset:
        extensions = item.get("extension") or []
        extension = str(extensions[0] if isinstance(extensions, list) and extensions else extensions or "")
        name = str(item.get("name") or item.get("id"))
        mime = _guess_mime(f"x.{extension}") if extension else "application/octet-stream"
        if mime == "application/octet-stream" and item.get("type") in _BYNDER_MIME_TYPES:
            mime = f"{_BYNDER_MIME_TYPES[item['type']]}/{extension or 'octet-stream'}"
        thumbnails = item.get("thumbnails") or {}
        url = str(item.get("original") or thumbnails.get("webimage") or "")
        modified = item.get("dateModified")
        version = item.get("version") if item.get("version") is not None else modified
        return Asset(self.tool, str(item["id"]), str(version or ""), name, mime, url,
                     str(modified) if modified else None, item)


class AprimoAssets(ToolClient):
    """Aprimo DAM's REST API. The "folder" is a classification id."""

    tool = "aprimo"

    def __init__(self, base_url: str, token: str, *, fulltext_expression: str = "FullText = ?",
                 folder_expression: str = "Classification.Id = ?", page_size: int = 100, max_pages: int = 50,
                 policy: RetryPolicy | None = None, on_attempt: OnAttempt | None = None,
                 sleep: Sleep | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        self._token = token
        self.fulltext_expression = fulltext_expression
        self.folder_expression = folder_expression
        self.page_size = page_size
        self.max_pages = max_pages

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {self._token}", "API-VERSION": "1",
                "select-record": "title"}

    async def list_folder(self, folder: str) -> list[Asset]:
        return await self._search(self.folder_expression, folder)

    async def search(self, query: str) -> list[Asset]:
        return await self._search(self.fulltext_expression, query)

    async def metadata(self, asset_id: str) -> Asset:
        answer = await self._call("GET", f"/api/core/record/{quote(asset_id, safe='')}")
        if not isinstance(answer.body, dict) or not answer.body.get("id"):
            raise IntegrationError(self.tool, f"record {asset_id} answered no record", answer.status)
        return self._asset(answer.body)

    async def _search(self, expression: str, value: str) -> list[Asset]:
        assets: list[Asset] = []
        body = {"searchExpression": {"expression": expression, "parameters": [value]}}
        for page in range(1, self.max_pages + 1):
            answer = await self._call("POST", "/api/core/search/records", json=body,
                                      params={"page": str(page), "pageSize": str(self.page_size)})
            result = answer.body if isinstance(answer.body, dict) else {}
            items = result.get("items") or []
            assets += [self._asset(item) for item in items if isinstance(item, dict)]
            if len(items) < self.page_size or len(assets) >= int(result.get("_total", len(assets))):
                break
        return assets

    def _asset(self, item: dict[str, Any]) -> Asset:
        record_id = str(item["id"])
        name = str(item.get("title") or record_id)
        modified = item.get("modifiedOn")
        version = item.get("version") if item.get("version") is not None else modified
        return Asset(self.tool, record_id, str(version or ""), name, _guess_mime(name),
                     f"{self.base_url}/dam/contentitems/{record_id}", str(modified) if modified else None,
                     {k: v for k, v in item.items() if not k.startswith("_")})
