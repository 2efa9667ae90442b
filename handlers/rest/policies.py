"""Campaigns' offer-selection policies over REST (to be completed)."""

from __future__ import annotations

from aiohttp import web

from app.campaigns.policies import PolicyService


class PoliciesApi:
    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies

    def register(self, router: web.UrlDispatcher) -> None:
        pass
