"""Offer selection per campaign (to be completed): a policy over a campaign's offers or creatives."""

from __future__ import annotations

from typing import Any


class PolicyService:
    """Placeholder until the policy service lands; holds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def load(self) -> None:
        pass
