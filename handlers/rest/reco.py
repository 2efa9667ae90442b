"""Recommendations over REST: items, lists by strategy, popular items, item neighbours, retraining."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

import msgspec
from aiohttp import web

from app.errors import InvalidInput
from app.reco.service import RecoService, reader_or_staff
from handlers.rest.common import decode, endpoint, json_response
from state.reco import ITEM_ID_PATTERN, ITEM_ID_RULE, RecoItem, Token

STAFF = ("admin", "partner")
MEMBERS = ("customer", "admin", "partner")
ANYONE = ("guest", "customer", "admin", "partner")
Strategy = Literal["personalized", "cf", "content_based", "frequently_bought_together", "trending", "new_arrivals"]
Csv = Annotated[str, msgspec.Meta(max_length=2048)]
# The range is the configured reco.max_n, which the service checks (400 "n must be 1 to <reco.max_n>", whatever the
# number): the schema gives the widest it can be configured to, and the type holds no bound of its own, whose error
# would name 1,000 instead.
N = Annotated[int, msgspec.Meta(description="How many items: 1 to reco.max_n (100 unless configured otherwise; 1,000 "
                                            "is the most it can be set to)",
                                extra_json_schema={"minimum": 1, "maximum": 1000})]


class ItemFields(msgspec.Struct, forbid_unknown_fields=True):
    """An item's fields for PUT (the id is in the path; when given in the body it must match)."""
    item_id: str | None = None
    category: Token | None = None
    tags: Annotated[list[Token], msgspec.Meta(max_length=50)] = []
    features: Annotated[dict[Token, float], msgspec.Meta(max_length=50)] = {}
    created_at: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None  # epoch seconds, as RecoItem's
    hidden: bool = False


ItemsBody = Annotated[list[RecoItem], msgspec.Meta(min_length=1, max_length=5000)]
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


class ItemList(msgspec.Struct):
    items: list[RecoItem]


class RecoQuery(msgspec.Struct, forbid_unknown_fields=True):
    comma_lists: ClassVar[frozenset[str]] = frozenset({"category", "exclude"})  # also given repeated
    strategy: Strategy = "personalized"
    n: N = 10
    category: Csv = ""   # one category or several, comma-separated
    exclude: Csv = ""    # item ids, comma-separated, and/or the keyword `seen`
    include: Literal["", "bought"] = ""  # bought: what the user bought may come back (never what they dismissed)


class PopularQuery(msgspec.Struct, forbid_unknown_fields=True):
    comma_lists: ClassVar[frozenset[str]] = frozenset({"category"})
    n: N = 10
    category: Csv = ""


class SimilarQuery(msgspec.Struct, forbid_unknown_fields=True):
    n: N = 10


class Recommended(msgspec.Struct):
    item_id: str
    score: float
    reason: str


class Recommendations(msgspec.Struct):
    user_id: str
    strategy: str
    model: str  # personalized: "seed", "<version>:learned" / "<version>:seed" (the blend's weights); other
    # strategies: "<version>" or "features" (no training yet); "popular" for a user with no history
    items: list[Recommended]


class ActivityQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class UserEvent(msgspec.Struct):
    item_id: str
    kind: str
    at: float
    weight: float
    counts: bool  # among the recent items the lists are scored from now


class Activity(msgspec.Struct):
    user_id: str
    known: bool
    events: list[UserEvent]
    bought_or_dismissed: list[str]


class Popular(msgspec.Struct):
    strategy: str
    items: list[Recommended]


class Similar(msgspec.Struct):
    item_id: str
    source: str  # "embeddings" (the trained model) or "coview" (no model trained yet, or none covering the item)
    model: str
    items: list[Recommended]


class Evaluation(msgspec.Struct):
    users: int
    events: int
    hr_at_10: float = msgspec.field(name="hr@10")
    ndcg_at_10: float = msgspec.field(name="ndcg@10")
    serving_hr_at_10: float = msgspec.field(name="serving_hr@10")
    serving_ndcg_at_10: float = msgspec.field(name="serving_ndcg@10")


class Training(msgspec.Struct):
    live: bool
    reason: str
    model: str             # what personalized lists name now (the live version)
    version: str           # the trained version (the live one when nothing new was trained)
    weights: list[float]
    weights_kind: str
    evaluation: Evaluation
    seconds: float
    status: str = ""       # live, canary (out to canary.share of users), recorded, kept_out


def _csv(value: str, name: str) -> list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()] if value else []
    if len(parts) > 100:
        raise InvalidInput(f"{name} takes at most 100 comma-separated values", {"field": name})
    return parts


class RecoApi:
    """Items, recommendations by strategy, popular items, item neighbours and retraining."""

    def __init__(self, reco: RecoService) -> None:
        self._reco = reco

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_put("/v1/reco/items/{item_id}", self.put_item)
        router.add_get("/v1/reco/items/{item_id}", self.get_item)
        router.add_post("/v1/reco/items", self.put_items)
        router.add_get("/v1/recommendations/popular", self.popular)  # before /{user_id}: the first match wins
        router.add_get("/v1/recommendations/{user_id}", self.recommend)
        router.add_get("/v1/reco/users/{user_id}", self.activity)
        router.add_get("/v1/items/{item_id}/similar", self.similar)
        router.add_post("/v1/admin/reco/train", self.train)

    @endpoint("Create or replace an item that can be recommended (hidden items are never shown); a created_at further "
              "ahead of the server's clock than ingest.max_future_skew_s is 422 future_item", tags=("reco",),
              roles=STAFF, body=ItemFields, response=RecoItem, errors=(422,))
    async def put_item(self, request: web.Request, principal, body: ItemFields) -> web.Response:
        item_id = request.match_info["item_id"]
        if not (1 <= len(item_id) <= 128 and _ITEM_ID.match(item_id)):
            raise InvalidInput(f"item_id must be 1 to 128 characters {ITEM_ID_RULE}", {"field": "item_id"})
        if body.item_id is not None and body.item_id != item_id:
            raise InvalidInput("item_id in the body differs from the path", {"field": "item_id"})
        fields = msgspec.structs.asdict(body)
        fields["item_id"] = item_id
        try:
            item = msgspec.convert(fields, RecoItem)
        except msgspec.ValidationError as exc:  # not expected: ItemFields holds RecoItem's limits, the id is checked
            raise InvalidInput(f"invalid item: {exc}") from None
        return json_response((await self._reco.put_items([item], one=True))[0])

    @endpoint("Create or replace up to 5,000 items at once (all or none; a created_at further ahead of the server's "
              "clock than ingest.max_future_skew_s is 422 future_item, and nothing is written)", tags=("reco",),
              roles=STAFF, raw_body=ItemsBody, response=ItemList, errors=(422,))
    async def put_items(self, request: web.Request, principal) -> web.Response:
        items: list[RecoItem] = decode(await request.read(), ItemsBody)
        return json_response(ItemList(await self._reco.put_items(items)))

    @endpoint("One item", tags=("reco",), roles=STAFF, response=RecoItem, errors=(404,))
    async def get_item(self, request: web.Request, principal) -> web.Response:
        return json_response(self._reco.item(request.match_info["item_id"]))

    @endpoint("A user's recommendations by strategy (default personalized), with a reason each; never what they "
              "bought (unless include=bought) or dismissed; exclude=seen leaves out everything they interacted with; "
              "an unknown user gets popular items", tags=("reco",), roles=MEMBERS, query=RecoQuery,
              response=Recommendations, errors=(403, 422))
    async def recommend(self, request: web.Request, principal, query: RecoQuery) -> web.Response:
        user_id = request.match_info["user_id"]
        reader_or_staff(principal, user_id)
        body = await self._reco.recommend_json(user_id, query.strategy, query.n, _csv(query.category, "category"),
                                               _csv(query.exclude, "exclude"), query.include == "bought")
        return web.Response(body=body, content_type="application/json")

    @endpoint("A user's latest feedback events, newest first, each saying whether it counts in their lists now, and "
              "the items they bought or dismissed (never recommended to them)", tags=("reco",), roles=MEMBERS,
              query=ActivityQuery, response=Activity, errors=(403,))
    async def activity(self, request: web.Request, principal, query: ActivityQuery) -> web.Response:
        user_id = request.match_info["user_id"]
        reader_or_staff(principal, user_id)
        return json_response(await self._reco.activity(user_id, query.limit))

    @endpoint("The most popular items now (decayed on event time), optionally in one or several categories",
              tags=("reco",), roles=ANYONE, query=PopularQuery, response=Popular)
    async def popular(self, request: web.Request, principal, query: PopularQuery) -> web.Response:
        return json_response(self._reco.popular(query.n, _csv(query.category, "category")))

    @endpoint("An item's nearest neighbours: by the trained embeddings, or by co-view counts before a model is "
              "trained", tags=("reco",), roles=ANYONE, query=SimilarQuery, response=Similar, errors=(404,))
    async def similar(self, request: web.Request, principal, query: SimilarQuery) -> web.Response:
        return json_response(self._reco.similar(request.match_info["item_id"], query.n))

    @endpoint("Retrain now from the stored interactions, evaluate on held-out events and swap the model in when "
              "it is not worse than the one serving (or send it out as a canary, with canary.on_retrain); answers "
              "with the evaluation and whether it went live",
              tags=("reco",), roles=("admin",), response=Training)
    async def train(self, request: web.Request, principal) -> web.Response:
        return json_response(await self._reco.train(principal))
