"""What loyalty tells the other domains, on the bus, once a change is committed."""

from __future__ import annotations

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
