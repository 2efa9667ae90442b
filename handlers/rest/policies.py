"""Campaigns' offer-selection policies over REST: configure and inspect a campaign's policy (admins), and ask it
which offer or creative to show (partners, admins). docs/policies.md."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.campaigns.policies import Decision, PolicyService, PolicyView
from handlers.rest.common import endpoint, json_response
from state.text import whole

ADMIN = ("admin",)
DECIDERS = ("partner", "admin")
ContextName = Annotated[str, msgspec.Meta(pattern=whole(r"[a-z][a-z0-9_]{0,31}"))]
ContextKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ContextValue = Annotated[str, msgspec.Meta(max_length=128)] | int | float | bool | None


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["thompson", "epsilon_greedy", "uniform"]
    arms: Literal["creatives", "offers"]
    context: Annotated[list[ContextName], msgspec.Meta(max_length=4)] = []  # e.g. ["tier"], ["device"]
    epsilon: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None       # epsilon_greedy only (default 0.1)
    remote: bool = True  # ask the decision service first, when one is configured


class DecideBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    context: Annotated[dict[ContextKey, ContextValue], msgspec.Meta(max_length=16)] = {}  # e.g. {"tier": "Gold"}


class PoliciesApi:
    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/admin/campaigns/{campaign_id}/policy", self.get_policy)
        router.add_put("/v1/admin/campaigns/{campaign_id}/policy", self.put_policy)
        router.add_post("/v1/campaigns/{campaign_id}/decide", self.decide)

    @endpoint("A campaign's offer-selection policy: each arm's posterior (mean, 90% interval, pulls), overall and per "
              "context bucket; 409 when the campaign has no policy", tags=("campaigns",), roles=ADMIN,
              response=PolicyView, errors=(404, 409))
    async def get_policy(self, request: web.Request, principal) -> web.Response:
        return json_response(await self._policies.view(request.match_info["campaign_id"]))

    @endpoint("Configure a campaign's policy over its creatives or offers (thompson, epsilon_greedy, uniform), "
              "optionally per context bucket; what it learned is kept when kind and arms are unchanged",
              tags=("campaigns",), roles=ADMIN, body=PolicyBody, response=PolicyView, errors=(404,))
    async def put_policy(self, request: web.Request, principal, body: PolicyBody) -> web.Response:
        view = await self._policies.configure(principal.scope, request.match_info["campaign_id"], body.kind,
                                              body.arms, list(body.context), body.epsilon, body.remote)
        return json_response(view)

    @endpoint("Which of a live campaign's offers or creatives to show this customer: the decision service's pick "
              "when it answers well and in time, else the local policy's (source: remote, local or fallback); "
              "409 when the campaign is not live or has no policy", tags=("campaigns",), roles=DECIDERS,
              body=DecideBody, response=Decision, errors=(404, 409))
    async def decide(self, request: web.Request, principal, body: DecideBody) -> web.Response:
        decision = await self._policies.decide(request.match_info["campaign_id"], body.user_id, body.context)
        return json_response(decision)
