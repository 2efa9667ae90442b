"""What loyalty tells the other domains, on the bus, once a change is committed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StarsEarned:
    """A member earned stars for a purchase (once per transaction; replays publish nothing)."""
    user_id: str
    transaction_id: str
    stars: int
    tier: str
    tier_changed: bool
    at: float


@dataclass(frozen=True, slots=True)
class StarsReversed:
    """A purchase's stars were taken back (a refund; once per transaction)."""
    user_id: str
    transaction_id: str
    stars: int
    at: float


@dataclass(frozen=True, slots=True)
class RewardSignalled:
    """A member responded to an offer shown to them (POST /v1/loyalty/reward-signal), published for whoever learns
    from it (campaigns' offer-selection policies). `campaign_id` and `arm` say which campaign's offer or creative
    was shown (arm: `offer_id` when not given); `signal_id` is the signal's idempotency key (always set when
    `campaign_id` is). Every signal received is published, repeats included: learners keep their own memory of ids."""
    signal_id: str | None
    user_id: str
    offer_id: str
    signal_type: str
    reward: float
    tier: str | None
    campaign_id: str | None
    arm: str | None
    context: Mapping[str, str]
    at: float
